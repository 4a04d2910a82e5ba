/*
 * calloc returns zeroed memory for every size, including memory that was
 * dirtied and freed just before (the allocator reuses it), and fails cleanly
 * on multiplication overflow.
 */
#include "pmtest.h"

#include <malloc.h>

#define BATCH 64

/* Returns the index of the first non-zero byte, or SIZE_MAX. */
static size_t first_nonzero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return i;
    return SIZE_MAX;
}

/* calloc(nmemb, size) is zeroed over its whole usable size, not only the
 * requested part C promises: programs that treat malloc_usable_size as
 * capacity rely on it (glibc, mimalloc and jemalloc do the same). */
static void check_zeroed(void *p, size_t nmemb, size_t size, const char *when)
{
    CHECK(p != NULL, "calloc(%zu, %zu) returned NULL (%s)\n", nmemb, size, when);
    if (p == NULL)
        return;
    size_t n = malloc_usable_size(p);
    CHECK(n >= nmemb * size, "calloc(%zu, %zu) usable size %zu (%s)\n", nmemb, size, n, when);
    size_t bad = first_nonzero(p, n);
    CHECK(bad == SIZE_MAX, "calloc(%zu, %zu) byte %zu is not zero (%s)\n", nmemb, size, bad, when);
}

/* Dirty a batch of blocks of one size, free them, and calloc the same
 * number again: the allocator hands the dirty blocks back. */
static void reuse_batch(size_t n)
{
    void *blocks[BATCH];
    size_t count = n >= (1u << 20) ? 4 : BATCH;
    for (size_t i = 0; i < count; i++) {
        blocks[i] = malloc(OPAQUE(n));
        REQUIRE(blocks[i] != NULL, "malloc(%zu) failed\n", n);
        memset(blocks[i], 0xff, malloc_usable_size(blocks[i]));
    }
    for (size_t i = 0; i < count; i++)
        free(blocks[i]);
    for (size_t i = 0; i < count; i++) {
        blocks[i] = calloc(1, OPAQUE(n));
        check_zeroed(blocks[i], 1, n, "reusing dirtied blocks");
    }
    for (size_t i = 0; i < count; i++)
        free(blocks[i]);
}

int main(void)
{
    pmt_require_poolmalloc();

    /* Every size up to 4 KiB, then sizes around each power of two up to
     * 8 MiB: each class, the largest class and the large spans. */
    for (size_t n = 1; n <= 4096; n++) {
        unsigned char *d = malloc(OPAQUE(n));
        REQUIRE(d != NULL, "malloc(%zu) failed\n", n);
        memset(d, 0xff, n);
        free(d);
        void *z = calloc(OPAQUE(n), 1);
        check_zeroed(z, n, 1, "after freeing a dirty block of the same size");
        free(z);
    }
    for (size_t shift = 12; shift <= 23; shift++) {
        for (int delta = -17; delta <= 17; delta += 17) {
            size_t n = ((size_t)1 << shift) + (size_t)delta;
            unsigned char *d = malloc(OPAQUE(n));
            REQUIRE(d != NULL, "malloc(%zu) failed\n", n);
            memset(d, 0xff, malloc_usable_size(d));
            free(d);
            void *z = calloc(1, OPAQUE(n));
            check_zeroed(z, 1, n, "after freeing a dirty block of the same size");
            free(z);
            reuse_batch(n);
        }
    }
    for (size_t n = 16; n <= 32768; n += n / 4)
        reuse_batch(n);

    /* Large spans, dirtied (also through in-place resizing), freed and
     * reused for calloc's of other sizes. */
    static const size_t large[] = {40000, 65536, 100000, 262144, 500000, 1 << 20, 3 << 20, 9 << 20};
    enum { NLARGE = sizeof large / sizeof large[0] };
    for (int a = 0; a < NLARGE; a++) {
        for (int b = 0; b < NLARGE; b++) {
            unsigned char *d = malloc(OPAQUE(large[a]));
            REQUIRE(d != NULL, "malloc(%zu) failed\n", large[a]);
            memset(d, 0xff, malloc_usable_size(d));
            if (b % 2) {
                d = realloc(d, large[a] / 4);
                REQUIRE(d != NULL, "realloc(%zu) failed\n", large[a] / 4);
                d = realloc(d, large[a]);
                REQUIRE(d != NULL, "realloc(%zu) failed\n", large[a]);
                memset(d, 0xee, malloc_usable_size(d));
            }
            free(d);
            void *z = calloc(OPAQUE(large[b]), 1);
            check_zeroed(z, large[b], 1, "after freeing a dirty large block of another size");
            free(z);
        }
    }

    /* The product, not each factor, is the size. */
    static const size_t splits[][2] = {
        {1, 1}, {3, 5}, {100, 100}, {7, 4681}, {4096, 16}, {16, 4096}, {1000, 1000}, {3, 1398101},
    };
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        size_t a = splits[i][0], b = splits[i][1];
        unsigned char *d = malloc(OPAQUE(a * b));
        REQUIRE(d != NULL, "malloc(%zu) failed\n", a * b);
        memset(d, 0xff, a * b);
        free(d);
        void *z = calloc(OPAQUE(a), OPAQUE(b));
        check_zeroed(z, a, b, "product of the factors");
        CHECK(z == NULL || malloc_usable_size(z) >= a * b,
              "calloc(%zu, %zu) usable size %zu is too small\n", a, b, malloc_usable_size(z));
        free(z);
    }

    /* A grown and shrunk block, dirtied, freed, then calloc'ed. */
    unsigned char *r = malloc(100);
    REQUIRE(r != NULL, "malloc(100) failed\n");
    for (size_t n = 200; n <= (4u << 20); n *= 3) {
        r = realloc(r, OPAQUE(n));
        REQUIRE(r != NULL, "realloc(%zu) failed\n", n);
        memset(r, 0xff, n);
    }
    size_t rn = malloc_usable_size(r);
    free(r);
    void *z = calloc(rn, 1);
    check_zeroed(z, rn, 1, "after freeing a dirty realloc'ed block");
    free(z);

    /* Zero elements or zero size: a unique, freeable pointer, like glibc. */
    void *z1 = calloc(OPAQUE(0), 1), *z2 = calloc(1, OPAQUE(0)), *z3 = calloc(OPAQUE(0), OPAQUE(0));
    CHECK(z1 != NULL && z2 != NULL && z3 != NULL, "calloc with a zero factor returned NULL\n");
    CHECK(z1 != z2 && z2 != z3 && z1 != z3, "calloc with a zero factor returned a shared pointer\n");
    free(z1);
    free(z2);
    free(z3);

    /* Overflow of the product: NULL and ENOMEM, never a short block. */
    static const size_t over[][2] = {
        {SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 33, (size_t)1 << 31},
        {SIZE_MAX / 16 + 1, 16}, {SIZE_MAX, SIZE_MAX},
    };
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        errno = 0;
        void *p = calloc(OPAQUE(over[i][0]), OPAQUE(over[i][1]));
        int e = errno;
        CHECK(p == NULL, "calloc(%#zx, %#zx) overflowed and returned %p\n", over[i][0], over[i][1], p);
        CHECK(e == ENOMEM, "calloc(%#zx, %#zx) set errno %d, expected ENOMEM\n", over[i][0],
              over[i][1], e);
        free(p);
    }

    return pmt_finish("calloc");
}
