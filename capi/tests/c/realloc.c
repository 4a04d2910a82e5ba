/*
 * realloc keeps the contents (the smaller of the old and new sizes) when a
 * block grows or shrinks, within a size class, across classes, between the
 * pools and the large spans and among large spans; a failed realloc leaves
 * the block as it was; realloc(NULL, n) allocates and realloc(p, 0) frees.
 */
#include "pmtest.h"

#include <malloc.h>

#define MIB ((size_t)1 << 20)

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A size spread evenly on a log scale between 1 byte and 6 MiB. */
static size_t random_size(void)
{
    unsigned shift = (unsigned)(rng() % 23);
    size_t base = (size_t)1 << shift;
    size_t n = base + (size_t)(rng() % base);
    return n > 6 * MIB ? 6 * MIB : n;
}

/* Resizes *pp from old_n to new_n bytes, checks the kept bytes and the
 * alignment, and refills the block with a new pattern. */
static void resize(unsigned char **pp, size_t old_n, size_t new_n, unsigned *seed, const char *phase)
{
    unsigned char *q = realloc(*pp, OPAQUE(new_n));
    REQUIRE(q != NULL, "%s: realloc(%zu -> %zu) returned NULL\n", phase, old_n, new_n);
    size_t keep = old_n < new_n ? old_n : new_n;
    size_t bad = pmt_verify(q, keep, *seed);
    CHECK(bad == SIZE_MAX, "%s: realloc(%zu -> %zu) lost byte %zu\n", phase, old_n, new_n, bad);
    CHECK(((uintptr_t)q & 15) == 0, "%s: realloc(%zu -> %zu) returned %p, not 16-aligned\n", phase,
          old_n, new_n, (void *)q);
    CHECK(malloc_usable_size(q) >= new_n, "%s: realloc(%zu -> %zu): usable size %zu\n", phase, old_n,
          new_n, malloc_usable_size(q));
    *seed += 1;
    pmt_fill(q, new_n, *seed);
    *pp = q;
}

int main(void)
{
    pmt_require_poolmalloc();
    unsigned seed = 1;

    /* Grow one byte at a time through the small sizes, then shrink back. */
    unsigned char *p = malloc(1);
    REQUIRE(p != NULL, "malloc(1) failed\n");
    pmt_fill(p, 1, seed);
    size_t n = 1;
    for (size_t m = 2; m <= 2048; m++, n++)
        resize(&p, n, m, &seed, "grow by one");
    for (size_t m = 2047; m >= 1; m--, n--)
        resize(&p, n, m, &seed, "shrink by one");

    /* Geometric growth to 12 MiB and back, by several factors. */
    static const double factors[] = {1.1, 1.5, 2.0, 3.7};
    for (size_t f = 0; f < sizeof factors / sizeof factors[0]; f++) {
        while (n < 12 * MIB) {
            size_t m = (size_t)((double)n * factors[f]) + 1;
            resize(&p, n, m, &seed, "geometric growth");
            n = m;
        }
        while (n > 1) {
            size_t m = (size_t)((double)n / factors[f]);
            if (m == 0)
                m = 1;
            resize(&p, n, m, &seed, "geometric shrink");
            n = m;
        }
    }

    /* Around the pool/large boundary and the page boundaries. */
    static const size_t edges[] = {
        32768, 32767, 32769, 4096, 65536, 65535, 65537, 32768, 131072, 1,
        262144, 262143, 4095, 1048576, 1048577, 2097152, 16, 8388608, 8388607, 33,
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        resize(&p, n, edges[i], &seed, "edge sizes");
        n = edges[i];
    }

    /* A random walk over several live blocks, so that neighbours exist. */
    enum { LIVE = 16 };
    unsigned char *blocks[LIVE];
    size_t sizes[LIVE];
    unsigned seeds[LIVE];
    for (int i = 0; i < LIVE; i++) {
        sizes[i] = random_size();
        seeds[i] = 1000u * (unsigned)i;
        blocks[i] = malloc(sizes[i]);
        REQUIRE(blocks[i] != NULL, "malloc(%zu) failed\n", sizes[i]);
        pmt_fill(blocks[i], sizes[i], seeds[i]);
    }
    for (int step = 0; step < 3000; step++) {
        int i = (int)(rng() % LIVE);
        size_t m = random_size();
        resize(&blocks[i], sizes[i], m, &seeds[i], "random walk");
        sizes[i] = m;
    }

    /* Failed reallocations leave every block intact and usable. */
    static const size_t impossible[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1,
                                        (size_t)PTRDIFF_MAX, (size_t)1 << 62};
    for (int i = 0; i < LIVE; i++) {
        for (size_t k = 0; k < sizeof impossible / sizeof impossible[0]; k++) {
            errno = 0;
            void *q = realloc(pmt_launder(blocks[i]), OPAQUE(impossible[k]));
            CHECK(q == NULL, "realloc(%zu -> %#zx) returned %p\n", sizes[i], impossible[k], q);
            CHECK(errno == ENOMEM, "realloc(%zu -> %#zx) set errno %d, expected ENOMEM\n", sizes[i],
                  impossible[k], errno);
        }
        size_t bad = pmt_verify(blocks[i], sizes[i], seeds[i]);
        CHECK(bad == SIZE_MAX, "failed realloc changed a %zu-byte block at byte %zu\n", sizes[i], bad);
        resize(&blocks[i], sizes[i], sizes[i] + 1000, &seeds[i], "after failed realloc");
        free(blocks[i]);
    }

    /* realloc(NULL, n) is malloc(n). */
    unsigned char *a = realloc(NULL, OPAQUE((size_t)100));
    CHECK(a != NULL && malloc_usable_size(a) >= 100, "realloc(NULL, 100) did not allocate\n");
    void *a0 = realloc(NULL, OPAQUE((size_t)0));
    CHECK(a0 != NULL, "realloc(NULL, 0) returned NULL, expected malloc(0)'s unique pointer\n");
    free(a0);

    /* realloc(p, 0) frees p and returns NULL, leaving errno alone. */
    errno = 4242;
    void *r0 = realloc(a, OPAQUE((size_t)0));
    CHECK(r0 == NULL, "realloc(p, 0) returned %p, expected NULL\n", r0);
    CHECK(errno == 4242, "realloc(p, 0) changed errno to %d\n", errno);
    unsigned char *large = malloc(5 * MIB);
    REQUIRE(large != NULL, "malloc(5 MiB) failed\n");
    r0 = realloc(large, OPAQUE((size_t)0));
    CHECK(r0 == NULL, "realloc(large, 0) returned %p, expected NULL\n", r0);

    free(p);
    return pmt_finish("realloc");
}
