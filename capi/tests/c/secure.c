/*
 * Secure mode (POOLMALLOC_SECURE=1), one behaviour per run, selected by
 * argv[1]. Cases that misuse a block print "block 0x..." first and must
 * end in poolmalloc's report and an abort; reaching the end is a failure.
 *
 *   reuse              100 blocks live, 20,000 times a random one freed
 *                      and replaced: how many allocations pass before a
 *                      freed address comes back; prints "reuse steps=S
 *                      immediate=N median=M" and exits 0
 *   double_interleaved free(a), free(b), free(a)
 *   double_delayed     free(a), 100 allocations and frees, free(a)
 *   near_start         free of a pointer 16 bytes into a block
 *   zero_read          a read through malloc(0): must fault (SIGSEGV)
 *   zero_write         a write through calloc(1, 0): must fault (SIGSEGV)
 *   zero_double        malloc(0) freed twice: reported
 *   zero_ok            zero-size blocks are distinct, free and realloc
 *                      work on them; exits 0
 *   poison_store       the links of 200 freed blocks overwritten with a
 *                      static address; then 400 allocations, none of which
 *                      may return it ("FORGED" otherwise)
 */
#include "pmtest.h"

#include <malloc.h>
#include <stdint.h>

#define SIZE 48
#define WORK 100
#define STEPS 20000
#define RECENT 2048

static _Alignas(64) unsigned char target[256];

static void say(const void *p)
{
    printf("block %p\n", p);
    fflush(stdout);
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

int main(int argc, char **argv)
{
    pmt_require_poolmalloc();
    REQUIRE(argc == 2, "usage: secure CASE\n");
    const char *c = argv[1];

    if (strcmp(c, "reuse") == 0) {
        /* Churn: WORK blocks live; each step frees a random one and
         * allocates a replacement. For every freed address that comes
         * back, the allocations since its free (1: the very next one). */
        static void *slot[WORK];
        static void *recent[RECENT];
        static int recent_at[RECENT];
        static int dist[STEPS];
        int ndist = 0, immediate = 0;
        unsigned seed = 12345;
        for (int i = 0; i < WORK; i++)
            slot[i] = pmt_launder(malloc(SIZE));
        for (int s = 1; s <= STEPS; s++) {
            seed = seed * 1103515245u + 12345u;
            int i = (int)((seed >> 8) % WORK);
            free(slot[i]);
            recent[s % RECENT] = slot[i];
            recent_at[s % RECENT] = s;
            void *q = pmt_launder(malloc(SIZE));
            REQUIRE(q != NULL, "malloc failed\n");
            slot[i] = q;
            for (int k = 0; k < RECENT; k++) {
                if (recent[k] == q) {
                    int d = s - recent_at[k] + 1;
                    dist[ndist++] = d;
                    immediate += d == 1;
                    recent[k] = NULL;
                }
            }
        }
        REQUIRE(ndist > STEPS / 2, "only %d of %d freed blocks came back\n", ndist, STEPS);
        qsort(dist, (size_t)ndist, sizeof dist[0], cmp_int);
        printf("reuse steps=%d immediate=%d median=%d\n", STEPS, immediate, dist[ndist / 2]);
        for (int i = 0; i < WORK; i++)
            free(slot[i]);
        return pmt_finish("secure reuse");
    }

    if (strcmp(c, "zero_ok") == 0) {
        unsigned char *a = pmt_launder(malloc(0)), *b = pmt_launder(malloc(0));
        CHECK(a != NULL && b != NULL && a != b, "zero-size blocks are distinct\n");
        CHECK(malloc_usable_size(a) == 0, "a zero-size block has no usable byte\n");
        unsigned char *r = pmt_launder(realloc(a, 100));
        CHECK(r != NULL, "realloc of a zero-size block\n");
        memset(r, 7, 100);
        free(r);
        free(b);
        free(pmt_launder(calloc(0, 8)));
        return pmt_finish("secure zero_ok");
    }

    unsigned char *p = pmt_launder(malloc(SIZE));
    REQUIRE(p != NULL, "malloc failed\n");
    if (strcmp(c, "zero_read") == 0) {
        volatile unsigned char *z = pmt_launder(malloc(0));
        say((void *)z);
        printf("read %d\n", z[0]);
    } else if (strcmp(c, "zero_write") == 0) {
        volatile unsigned char *z = pmt_launder(calloc(1, 0));
        say((void *)z);
        z[0] = 1;
    } else if (strcmp(c, "zero_double") == 0) {
        unsigned char *z = pmt_launder(malloc(0));
        say(z);
        free(z);
        free(pmt_launder(z));
    } else if (strcmp(c, "double_interleaved") == 0) {
        pmt_double_interleaved(p, SIZE);
    } else if (strcmp(c, "double_delayed") == 0) {
        pmt_double_delayed(p, SIZE);
    } else if (strcmp(c, "near_start") == 0) {
        say(p + 16);
        free(pmt_launder(p + 16));
    } else if (strcmp(c, "poison_store") == 0) {
        static void *blocks[200];
        for (int i = 0; i < 200; i++)
            blocks[i] = pmt_launder(malloc(SIZE));
        for (int i = 0; i < 200; i++)
            free(blocks[i]);
        /* Use after free: every freed block's first word. */
        for (int i = 0; i < 200; i++)
            *(void *volatile *)blocks[i] = target;
        say(target);
        for (int i = 0; i < 400; i++) {
            if (pmt_launder(malloc(SIZE)) == (void *)target) {
                printf("FORGED\n");
                fflush(stdout);
            }
        }
    } else {
        REQUIRE(0, "unknown case %s\n", c);
    }
    printf("survived\n");
    fflush(stdout);
    return 1;
}
