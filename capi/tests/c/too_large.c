/*
 * Impossible sizes through every allocation entry point: each must return
 * NULL (or ENOMEM from posix_memalign) and set errno to ENOMEM, and must
 * leave any existing block alone.
 */
#include "pmtest.h"

#include <malloc.h>
#include <unistd.h>

_Static_assert(sizeof(size_t) == 8, "these sizes assume a 64-bit size_t");

static const size_t sizes[] = {
    SIZE_MAX,
    SIZE_MAX - 1,
    SIZE_MAX - 15,
    SIZE_MAX - 16,
    SIZE_MAX - 4095,
    SIZE_MAX - 4096,
    SIZE_MAX - (1u << 20),
    (size_t)PTRDIFF_MAX + 1,
    (size_t)PTRDIFF_MAX + 2,
    (size_t)PTRDIFF_MAX + 4096,
    (size_t)PTRDIFF_MAX,
    (size_t)PTRDIFF_MAX - 1,
    (size_t)PTRDIFF_MAX - 4096,
    (size_t)PTRDIFF_MAX - (1u << 20),
    (size_t)PTRDIFF_MAX / 2 + 1,
    (size_t)1 << 62,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static const size_t aligns[] = {1, 8, 16, 32, 64, 4096, 65536, 1u << 20};
#define NALIGNS (sizeof aligns / sizeof aligns[0])

/* Checks a pointer result: NULL with errno ENOMEM. `what` names the call
 * in terms of n, whose value is printed with it. */
#define CHECK_NOMEM(call, what, n)                                                                \
    do {                                                                                          \
        errno = 0;                                                                                \
        void *r_ = (call);                                                                        \
        int e_ = errno;                                                                           \
        CHECK(r_ == NULL, "%s with n = %#zx returned %p, expected NULL\n", what, (size_t)(n), r_); \
        CHECK(e_ == ENOMEM, "%s with n = %#zx set errno %d (%s), expected ENOMEM\n", what,        \
              (size_t)(n), e_, strerror(e_));                                                     \
        if (r_ != NULL)                                                                           \
            free(r_);                                                                             \
    } while (0)

int main(void)
{
    pmt_require_poolmalloc();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    /* A live block that failed reallocations must leave intact. */
    size_t old_n = 100;
    unsigned char *old = malloc(old_n);
    REQUIRE(old != NULL, "malloc(100) failed\n");
    pmt_fill(old, old_n, 42);

    /* And a large one (above the largest size class). */
    size_t big_n = 300000;
    unsigned char *big = malloc(big_n);
    REQUIRE(big != NULL, "malloc(300000) failed\n");
    pmt_fill(big, big_n, 43);

    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = OPAQUE(sizes[i]);

        CHECK_NOMEM(malloc(n), "malloc(n)", n);
        CHECK_NOMEM(calloc(n, 1), "calloc(n, 1)", n);
        CHECK_NOMEM(calloc(1, n), "calloc(1, n)", n);
        CHECK_NOMEM(calloc(n, OPAQUE((size_t)3)), "calloc(n, 3)", n);
        CHECK_NOMEM(realloc(NULL, n), "realloc(NULL, n)", n);
        CHECK_NOMEM(realloc(pmt_launder(old), n), "realloc(small, n)", n);
        CHECK_NOMEM(realloc(pmt_launder(big), n), "realloc(large, n)", n);
        CHECK_NOMEM(reallocarray(NULL, n, 1), "reallocarray(NULL, n, 1)", n);
        CHECK_NOMEM(reallocarray(NULL, 1, n), "reallocarray(NULL, 1, n)", n);
        CHECK_NOMEM(reallocarray(pmt_launder(old), n, 1), "reallocarray(small, n, 1)", n);
        CHECK_NOMEM(reallocarray(pmt_launder(big), 1, n), "reallocarray(large, 1, n)", n);
        CHECK_NOMEM(reallocarray(pmt_launder(old), n, OPAQUE((size_t)5)), "reallocarray(small, n, 5)",
                    n);
        CHECK_NOMEM(valloc(n), "valloc(n)", n);
        CHECK_NOMEM(pvalloc(n), "pvalloc(n)", n);

        for (size_t j = 0; j < NALIGNS; j++) {
            size_t a = OPAQUE(aligns[j]);
            char what[64];

            snprintf(what, sizeof what, "aligned_alloc(%zu, n)", a);
            CHECK_NOMEM(aligned_alloc(a, n), what, n);
            snprintf(what, sizeof what, "memalign(%zu, n)", a);
            CHECK_NOMEM(memalign(a, n), what, n);

            if (a % sizeof(void *) == 0) {
                void *sentinel = (void *)(uintptr_t)0x5a5a5a50;
                void *p = sentinel;
                errno = 12345;
                int rc = posix_memalign(&p, a, n);
                CHECK(rc == ENOMEM, "posix_memalign(%zu, %#zx) returned %d, expected ENOMEM\n", a, n,
                      rc);
                CHECK(p == sentinel, "posix_memalign(%zu, %#zx) changed *memptr on failure\n", a, n);
                CHECK(errno == 12345, "posix_memalign(%zu, %#zx) changed errno to %d\n", a, n, errno);
                if (rc == 0)
                    free(p);
            }
        }
    }

    /* pvalloc rounds up to whole pages: that rounding must not wrap. */
    size_t wraps = SIZE_MAX - page + 2;
    CHECK_NOMEM(pvalloc(OPAQUE(wraps)), "pvalloc(n), n rounding up past SIZE_MAX,", wraps);

    /* Alignments no address space can satisfy, with small sizes. */
    static const size_t huge_aligns[] = {(size_t)1 << 62, (size_t)1 << 63};
    for (size_t j = 0; j < 2; j++) {
        size_t a = OPAQUE(huge_aligns[j]);
        CHECK_NOMEM(aligned_alloc(a, 16), "aligned_alloc(n, 16)", a);
        CHECK_NOMEM(memalign(a, 16), "memalign(n, 16)", a);
        void *sentinel = (void *)(uintptr_t)0x5a5a5a50;
        void *p = sentinel;
        int rc = posix_memalign(&p, a, 16);
        CHECK(rc == ENOMEM, "posix_memalign(%#zx, 16) returned %d, expected ENOMEM\n", a, rc);
        CHECK(p == sentinel, "posix_memalign(%#zx, 16) changed *memptr on failure\n", a);
    }

    /* Products that overflow size_t, or come to exactly SIZE_MAX. */
    static const size_t factors[][2] = {
        {SIZE_MAX, SIZE_MAX},
        {SIZE_MAX / 2 + 1, 2},
        {2, SIZE_MAX / 2 + 1},
        {(size_t)1 << 32, (size_t)1 << 32},
        {((size_t)1 << 32) + 1, ((size_t)1 << 32) - 1},
        {SIZE_MAX / 3 + 1, 3},
        {65536, ((size_t)1 << 48) + 1},
    };
    for (size_t i = 0; i < sizeof factors / sizeof factors[0]; i++) {
        size_t a = OPAQUE(factors[i][0]), b = OPAQUE(factors[i][1]);
        char what[64];
        snprintf(what, sizeof what, "calloc(n, %#zx)", b);
        CHECK_NOMEM(calloc(a, b), what, a);
        snprintf(what, sizeof what, "reallocarray(NULL, n, %#zx)", b);
        CHECK_NOMEM(reallocarray(NULL, a, b), what, a);
        snprintf(what, sizeof what, "reallocarray(small, n, %#zx)", b);
        CHECK_NOMEM(reallocarray(pmt_launder(old), a, b), what, a);
        snprintf(what, sizeof what, "reallocarray(large, n, %#zx)", b);
        CHECK_NOMEM(reallocarray(pmt_launder(big), a, b), what, a);
    }

    /* The blocks passed to the failed reallocations are unchanged and live. */
    size_t bad = pmt_verify(old, old_n, 42);
    CHECK(bad == SIZE_MAX, "small block changed by failed realloc at byte %zu\n", bad);
    bad = pmt_verify(big, big_n, 43);
    CHECK(bad == SIZE_MAX, "large block changed by failed realloc at byte %zu\n", bad);
    CHECK(malloc_usable_size(old) >= old_n, "small block's usable size shrank\n");
    CHECK(malloc_usable_size(big) >= big_n, "large block's usable size shrank\n");
    unsigned char *grown = realloc(old, 5000);
    REQUIRE(grown != NULL, "realloc(old, 5000) failed after the failed ones\n");
    bad = pmt_verify(grown, old_n, 42);
    CHECK(bad == SIZE_MAX, "small block's contents lost on a later realloc at byte %zu\n", bad);
    free(grown);
    free(big);

    /* The allocator still works. */
    void *p = malloc(64);
    CHECK(p != NULL, "malloc(64) failed after the impossible requests\n");
    free(p);

    return pmt_finish("too_large");
}
