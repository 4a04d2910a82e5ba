/*
 * malloc(0), like glibc's, returns a unique non-null pointer each time,
 * distinct from every other live block, which free and realloc accept.
 */
#include "pmtest.h"

#include <malloc.h>

#define COUNT 20000

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    pmt_require_poolmalloc();
    static void *ptrs[2 * COUNT];

    /* Zero-size blocks interleaved with 1-byte ones: all distinct. */
    for (size_t i = 0; i < COUNT; i++) {
        ptrs[2 * i] = malloc(OPAQUE((size_t)0));
        REQUIRE(ptrs[2 * i] != NULL, "malloc(0) number %zu returned NULL\n", i);
        ptrs[2 * i + 1] = malloc(OPAQUE((size_t)1));
        REQUIRE(ptrs[2 * i + 1] != NULL, "malloc(1) failed\n");
        *(unsigned char *)ptrs[2 * i + 1] = 0xab;
    }
    static void *sorted[2 * COUNT];
    memcpy(sorted, ptrs, sizeof ptrs);
    qsort(sorted, 2 * COUNT, sizeof sorted[0], cmp_ptr);
    size_t dups = 0;
    for (size_t i = 1; i < 2 * COUNT; i++)
        dups += sorted[i] == sorted[i - 1];
    CHECK(dups == 0, "%zu pointers from malloc(0)/malloc(1) were handed out twice\n", dups);
    for (size_t i = 0; i < COUNT; i++)
        CHECK(*(unsigned char *)ptrs[2 * i + 1] == 0xab, "a 1-byte block next to malloc(0) changed\n");

    /* Each is freeable; free them in an interleaved order. */
    for (size_t i = 0; i < 2 * COUNT; i += 2)
        free(ptrs[i]);
    for (size_t i = 1; i < 2 * COUNT; i += 2)
        free(ptrs[i]);

    /* Two live malloc(0) results are never equal, even right after a free. */
    void *a = malloc(OPAQUE((size_t)0));
    void *b = malloc(OPAQUE((size_t)0));
    CHECK(a != NULL && b != NULL && a != b, "two live malloc(0) results are %p and %p\n", a, b);
    free(a);
    a = malloc(OPAQUE((size_t)0));
    CHECK(a != NULL && a != b, "malloc(0) after a free returned %p, equal to a live block\n", a);

    /* realloc grows a zero-size block into a usable one. */
    unsigned char *g = realloc(a, 100);
    REQUIRE(g != NULL, "realloc(malloc(0), 100) returned NULL\n");
    memset(g, 0x42, 100);
    CHECK(malloc_usable_size(g) >= 100, "realloc(malloc(0), 100): usable size %zu\n",
          malloc_usable_size(g));
    free(g);
    free(b);

    /* The other zero-size requests also give unique pointers. */
    void *z[6];
    z[0] = calloc(0, 0);
    z[1] = aligned_alloc(64, OPAQUE((size_t)0));
    z[2] = memalign(4096, OPAQUE((size_t)0));
    z[3] = valloc(OPAQUE((size_t)0));
    z[4] = NULL;
    CHECK(posix_memalign(&z[4], 32, OPAQUE((size_t)0)) == 0, "posix_memalign(32, 0) failed\n");
    z[5] = realloc(NULL, OPAQUE((size_t)0));
    for (int i = 0; i < 6; i++) {
        CHECK(z[i] != NULL, "zero-size request %d returned NULL\n", i);
        for (int j = 0; j < i; j++)
            CHECK(z[i] != z[j], "zero-size requests %d and %d returned the same pointer\n", j, i);
    }
    for (int i = 0; i < 6; i++)
        free(z[i]);

    return pmt_finish("malloc_zero");
}
