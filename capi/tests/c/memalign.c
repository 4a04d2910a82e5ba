/*
 * Aligned allocation: posix_memalign, aligned_alloc and memalign for every
 * power-of-two alignment from 1 (where the function allows it) up to 1 MiB
 * and sizes from 0 to several MiB, plus valloc and pvalloc. Every block
 * must be aligned, writable over its whole size, disjoint from the others
 * and freeable; invalid alignments must be refused with EINVAL.
 */
#include "pmtest.h"

#include <malloc.h>
#include <unistd.h>

#define MAX_ALIGN ((size_t)1 << 20)

static const size_t sizes[] = {
    0,     1,     7,     8,     15,    16,     17,     31,      100,     255,     256,         1000,
    4095,  4096,  4097,  10000, 32767, 32768,  32769,  65536,   100000,  1 << 20, (1 << 20) + 1,
    3 << 20,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

enum { F_POSIX, F_ALIGNED, F_MEMALIGN, NFUNCS };
static const char *const fname[NFUNCS] = {"posix_memalign", "aligned_alloc", "memalign"};

struct block {
    unsigned char *p;
    size_t n;
    unsigned seed;
};

static struct block live[NFUNCS * NSIZES];

/* Allocates with function f; NULL if the function refused (reported). */
static void *alloc_with(int f, size_t align, size_t n)
{
    void *p = NULL;
    errno = 0;
    switch (f) {
    case F_POSIX: {
        int rc = posix_memalign(&p, OPAQUE(align), OPAQUE(n));
        CHECK(rc == 0, "posix_memalign(%zu, %zu) returned %d\n", align, n, rc);
        if (rc != 0)
            return NULL;
        break;
    }
    case F_ALIGNED:
        p = aligned_alloc(OPAQUE(align), OPAQUE(n));
        break;
    default:
        p = memalign(OPAQUE(align), OPAQUE(n));
        break;
    }
    CHECK(p != NULL, "%s(%zu, %zu) returned NULL (errno %d)\n", fname[f], align, n, errno);
    return p;
}

static void check_block(void *p, size_t align, size_t n, const char *what)
{
    CHECK(((uintptr_t)p & (align - 1)) == 0, "%s(%zu, %zu) returned %p, misaligned\n", what, align, n,
          p);
    CHECK(malloc_usable_size(p) >= n, "%s(%zu, %zu): usable size %zu < size\n", what, align, n,
          malloc_usable_size(p));
}

int main(void)
{
    pmt_require_poolmalloc();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned seed = 7;

    for (size_t align = 1; align <= MAX_ALIGN; align *= 2) {
        size_t count = 0;
        for (int f = 0; f < NFUNCS; f++) {
            if (f == F_POSIX && align % sizeof(void *) != 0)
                continue;
            for (size_t i = 0; i < NSIZES; i++) {
                size_t n = sizes[i];
                unsigned char *p = alloc_with(f, align, n);
                if (p == NULL)
                    continue;
                check_block(p, align, n, fname[f]);
                /* Writable from the first to the last usable byte. */
                size_t usable = malloc_usable_size(p);
                if (usable > 0) {
                    p[0] = 1;
                    p[usable - 1] = 2;
                }
                pmt_fill(p, n, ++seed);
                live[count++] = (struct block){p, n, seed};
            }
        }
        /* No block overlaps another: every pattern is still there. */
        for (size_t i = 0; i < count; i++) {
            size_t bad = pmt_verify(live[i].p, live[i].n, live[i].seed);
            CHECK(bad == SIZE_MAX, "alignment %zu: a %zu-byte block was overwritten at byte %zu\n",
                  align, live[i].n, bad);
        }
        /* Free the odd ones first, then the even ones. */
        for (size_t i = 1; i < count; i += 2)
            free(live[i].p);
        for (size_t i = 0; i < count; i += 2)
            free(live[i].p);
    }

    /* Reallocating an aligned block keeps the contents. */
    unsigned char *a = aligned_alloc(4096, 5000);
    REQUIRE(a != NULL, "aligned_alloc(4096, 5000) failed\n");
    pmt_fill(a, 5000, 99);
    a = realloc(a, 100000);
    REQUIRE(a != NULL, "realloc of an aligned block failed\n");
    CHECK(pmt_verify(a, 5000, 99) == SIZE_MAX, "realloc of an aligned block lost its contents\n");
    free(a);

    /* posix_memalign: EINVAL for alignments that are not a power of two or
     * not a multiple of sizeof(void *); *memptr and errno untouched. */
    static const size_t bad_posix[] = {0, 1, 2, 4, 3, 12, 24, 48, 96, 4097, SIZE_MAX, SIZE_MAX / 2};
    for (size_t i = 0; i < sizeof bad_posix / sizeof bad_posix[0]; i++) {
        size_t al = bad_posix[i];
        if (al % sizeof(void *) == 0 && (al & (al - 1)) == 0 && al != 0)
            continue;
        void *sentinel = (void *)(uintptr_t)0x1234560;
        void *p = sentinel;
        errno = 777;
        int rc = posix_memalign(&p, OPAQUE(al), 64);
        CHECK(rc == EINVAL, "posix_memalign(%zu, 64) returned %d, expected EINVAL\n", al, rc);
        CHECK(p == sentinel, "posix_memalign(%zu, 64) changed *memptr on failure\n", al);
        CHECK(errno == 777, "posix_memalign(%zu, 64) changed errno to %d\n", al, errno);
        if (rc == 0)
            free(p);
    }

    /* aligned_alloc: EINVAL for an alignment that is not a power of two. */
    static const size_t bad_aligned[] = {0, 3, 6, 24, 100, 4097, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_aligned / sizeof bad_aligned[0]; i++) {
        errno = 0;
        void *p = aligned_alloc(OPAQUE(bad_aligned[i]), 64);
        CHECK(p == NULL, "aligned_alloc(%zu, 64) returned %p, expected NULL\n", bad_aligned[i], p);
        CHECK(errno == EINVAL, "aligned_alloc(%zu, 64) set errno %d, expected EINVAL\n",
              bad_aligned[i], errno);
        free(p);
    }

    /* memalign, like glibc, rounds an alignment up to a power of two. */
    static const size_t odd_aligns[] = {0, 3, 5, 24, 48, 100, 1000, 3000, 5000, 40000, 600000};
    for (size_t i = 0; i < sizeof odd_aligns / sizeof odd_aligns[0]; i++) {
        size_t al = odd_aligns[i], want = 1;
        while (want < al)
            want *= 2;
        void *p = memalign(OPAQUE(al), 100);
        CHECK(p != NULL, "memalign(%zu, 100) returned NULL\n", al);
        if (p != NULL)
            check_block(p, want, 100, "memalign");
        free(p);
    }
    errno = 0;
    void *m = memalign(OPAQUE(SIZE_MAX), 100);
    CHECK(m == NULL && errno == EINVAL, "memalign(SIZE_MAX, 100) returned %p errno %d, expected EINVAL\n",
          m, errno);

    /* valloc: page-aligned; pvalloc: page-aligned, whole pages. */
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *v = valloc(OPAQUE(n));
        CHECK(v != NULL, "valloc(%zu) returned NULL\n", n);
        if (v != NULL) {
            check_block(v, page, n, "valloc");
            memset(v, 0x5a, n);
        }
        unsigned char *pv = pvalloc(OPAQUE(n));
        CHECK(pv != NULL, "pvalloc(%zu) returned NULL\n", n);
        if (pv != NULL) {
            size_t whole = n == 0 ? page : (n + page - 1) / page * page;
            check_block(pv, page, whole, "pvalloc");
            memset(pv, 0xa5, whole);
        }
        free(v);
        free(pv);
    }

    return pmt_finish("memalign");
}
