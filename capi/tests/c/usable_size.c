/*
 * malloc_usable_size: 0 for NULL; at least the requested size for blocks
 * from every allocation function; stable; and the whole usable size may be
 * written without touching neighbouring blocks.
 */
#include "pmtest.h"

#include <malloc.h>

static void check_usable(void *p, size_t n, const char *what)
{
    size_t u = malloc_usable_size(p);
    CHECK(u >= n, "%s(%zu): malloc_usable_size %zu < requested\n", what, n, u);
    CHECK(u <= 2 * n + 4096, "%s(%zu): malloc_usable_size %zu is implausibly large\n", what, n, u);
    CHECK(malloc_usable_size(p) == u, "%s(%zu): malloc_usable_size changed between calls\n", what, n);
}

int main(void)
{
    pmt_require_poolmalloc();

    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu, expected 0\n",
          malloc_usable_size(NULL));

    /* Every small size, and a spread of large ones. */
    for (size_t n = 0; n <= 40000; n += (n < 1024 ? 1 : 37)) {
        void *p = malloc(OPAQUE(n));
        REQUIRE(p != NULL, "malloc(%zu) failed\n", n);
        check_usable(p, n, "malloc");
        free(p);
    }
    for (size_t n = 40000; n <= ((size_t)9 << 20); n = n * 5 / 4 + 4093) {
        void *p = malloc(OPAQUE(n));
        REQUIRE(p != NULL, "malloc(%zu) failed\n", n);
        check_usable(p, n, "malloc");
        free(p);
    }

    /* Writing all usable bytes of a block leaves its neighbours alone. */
    static const size_t sizes[] = {1, 13, 16, 24, 100, 500, 1000, 3000, 10000, 32000, 40000, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        enum { K = 9 };
        unsigned char *b[K];
        for (int k = 0; k < K; k++) {
            b[k] = malloc(OPAQUE(n));
            REQUIRE(b[k] != NULL, "malloc(%zu) failed\n", n);
            pmt_fill(b[k], malloc_usable_size(b[k]), (unsigned)k);
        }
        for (int k = 0; k < K; k += 2)
            memset(b[k], 0xee, malloc_usable_size(b[k]));
        for (int k = 1; k < K; k += 2) {
            size_t bad = pmt_verify(b[k], malloc_usable_size(b[k]), (unsigned)k);
            CHECK(bad == SIZE_MAX,
                  "size %zu: writing a neighbour's usable bytes changed this block at byte %zu\n", n,
                  bad);
        }
        for (int k = 0; k < K; k++)
            free(b[k]);
    }

    /* Other allocation functions. */
    for (size_t n = 1; n <= 70000; n = n * 3 + 1) {
        void *c = calloc(n, 1);
        REQUIRE(c != NULL, "calloc(%zu) failed\n", n);
        check_usable(c, n, "calloc");
        void *r = realloc(c, OPAQUE(n * 2));
        REQUIRE(r != NULL, "realloc(%zu) failed\n", n * 2);
        check_usable(r, n * 2, "realloc");
        r = realloc(r, OPAQUE(n / 2 + 1));
        REQUIRE(r != NULL, "realloc(%zu) failed\n", n / 2 + 1);
        CHECK(malloc_usable_size(r) >= n / 2 + 1, "realloc shrink to %zu: usable size %zu\n",
              n / 2 + 1, malloc_usable_size(r));
        free(r);
        void *a = aligned_alloc(256, n);
        REQUIRE(a != NULL, "aligned_alloc(256, %zu) failed\n", n);
        CHECK(malloc_usable_size(a) >= n, "aligned_alloc(256, %zu): usable size %zu\n", n,
              malloc_usable_size(a));
        free(a);
    }

    return pmt_finish("usable_size");
}
