/*
 * Medium blocks (above 32 KiB, up to 1 MiB) and aligned blocks come from
 * arenas, not from a mapping each: holding many of them adds few mappings
 * to the process. Every block is writable over its whole usable size and
 * keeps its contents; after it all, malloc(100) still works.
 *
 * Then, with POOLMALLOC_INVALID_FREE=warn, three bad frees are reported and
 * survived: an interior pointer into a medium block, a pointer into a later
 * 64 KiB slice of a medium block's run, and a second free of a medium
 * block. The program prints "bad frees done" after them.
 */
#include "pmtest.h"

#include <malloc.h>

/* Lines of /proc/self/maps: the process's mapping count. */
static size_t mapping_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    REQUIRE(f != NULL, "cannot open /proc/self/maps\n");
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        if (c == '\n')
            n++;
    fclose(f);
    return n;
}

#define MEDIUM 20000
#define ALIGNED 20000

static unsigned char *blocks[MEDIUM];
static void *aligned[ALIGNED];

int main(void)
{
    pmt_require_poolmalloc();
    size_t before = mapping_count();

    /* 20,000 live blocks of 40,000 B to 1 MiB (a mapping each would add as
     * many mappings), each tagged at both ends. */
    for (size_t i = 0; i < MEDIUM; i++) {
        size_t n = i % 100 == 0 ? (size_t)200000 + i * 37 % 800000 : 40000;
        blocks[i] = malloc(OPAQUE(n));
        REQUIRE(blocks[i] != NULL, "malloc(%zu) #%zu failed\n", n, i);
        size_t u = malloc_usable_size(blocks[i]);
        CHECK(u >= n, "usable size %zu below %zu\n", u, n);
        blocks[i][0] = (unsigned char)i;
        blocks[i][u - 1] = (unsigned char)(i >> 3);
    }
    size_t with_medium = mapping_count();
    CHECK(with_medium - before < 1000, "%d medium blocks added %zu mappings\n", MEDIUM, with_medium - before);

    /* memalign(8192, 64) and larger alignments, up to 1 MiB. */
    for (size_t i = 0; i < ALIGNED; i++) {
        size_t align = (size_t)8192 << (i % 100 == 0 ? i / 100 % 8 : 0);
        aligned[i] = memalign(OPAQUE(align), 64);
        REQUIRE(aligned[i] != NULL, "memalign(%zu, 64) #%zu failed\n", align, i);
        CHECK((uintptr_t)aligned[i] % align == 0, "memalign(%zu, 64) gave %p\n", align, aligned[i]);
        memset(aligned[i], 0x3c, 64);
    }
    size_t with_aligned = mapping_count();
    CHECK(with_aligned - with_medium < 1000, "%d aligned blocks added %zu mappings\n", ALIGNED,
          with_aligned - with_medium);

    for (size_t i = 0; i < MEDIUM; i++) {
        size_t u = malloc_usable_size(blocks[i]);
        CHECK(blocks[i][0] == (unsigned char)i && blocks[i][u - 1] == (unsigned char)(i >> 3),
              "medium block %zu lost its contents\n", i);
        /* Freed in an order unlike the allocation order. */
    }
    for (size_t k = 0; k < MEDIUM; k++)
        free(blocks[k * 7919 % MEDIUM]);
    for (size_t i = 0; i < ALIGNED; i++)
        free(aligned[i]);

    void *small = malloc(OPAQUE(100));
    CHECK(small != NULL, "malloc(100) failed after the medium blocks\n");
    free(small);

    /* Bad frees: reported (warn mode), not acted on. */
    unsigned char *m = malloc(OPAQUE(300000));
    REQUIRE(m != NULL, "malloc(300000) failed\n");
    memset(m, 0x77, 300000);
    printf("interior %p\n", (void *)(m + 4096));
    fflush(stdout);
    free(pmt_launder(m + 4096));
    printf("follower %p\n", (void *)(m + 200000));
    fflush(stdout);
    free(pmt_launder(m + 200000));
    CHECK(m[4096] == 0x77 && m[299999] == 0x77, "a rejected free changed the block\n");
    unsigned char *again = malloc(OPAQUE(300000));
    CHECK(again != m, "the block came back while still live\n");
    free(m);
    printf("double %p\n", (void *)m);
    fflush(stdout);
    free(pmt_launder(m));
    free(again);
    printf("bad frees done\n");
    return pmt_finish("medium");
}
