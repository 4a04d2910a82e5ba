/*
 * 8 threads each make 2048 aligned allocations per round, and every block
 * is checked (a quarter of them also resized) and freed by another thread,
 * while that thread allocates its next round. Then threads allocate and exit, and their blocks are freed
 * after they have gone (abandoned pools).
 */
#include "pmtest.h"

#include <malloc.h>
#include <pthread.h>

#define THREADS 8
#define PER_THREAD 2048
#define ROUNDS 12

struct block {
    unsigned char *p;
    size_t n;
    size_t align;
    unsigned seed;
};

/* slots[round % 2][thread][i] */
static struct block slots[2][THREADS][PER_THREAD];
static pthread_barrier_t barrier;

static size_t size_of(unsigned t, unsigned i)
{
    if (i % 257 == 0)
        return 70000 + 1000 * (size_t)t; /* a large span now and then */
    return 1 + (size_t)((i * 37u + t * 101u) % 5000u);
}

static size_t align_of(unsigned t, unsigned i)
{
    return (size_t)1 << (3 + (i + t) % 14); /* 8 bytes to 64 KiB */
}

static void *alloc_aligned(unsigned i, size_t align, size_t n)
{
    void *p = NULL;
    switch (i % 3) {
    case 0:
        if (posix_memalign(&p, align, n) != 0)
            p = NULL;
        break;
    case 1:
        p = aligned_alloc(align, n);
        break;
    default:
        p = memalign(align, n);
        break;
    }
    return p;
}

static void check_and_free(struct block *b, unsigned freer, unsigned owner)
{
    CHECK(((uintptr_t)b->p & (b->align - 1)) == 0,
          "block %p of thread %u (align %zu) is misaligned\n", (void *)b->p, owner, b->align);
    CHECK(malloc_usable_size(b->p) >= b->n,
          "thread %u: usable size of a %zu-byte block of thread %u is %zu\n", freer, b->n, owner,
          malloc_usable_size(b->p));
    size_t bad = pmt_verify(b->p, b->n, b->seed);
    CHECK(bad == SIZE_MAX, "thread %u: a %zu-byte block of thread %u was changed at byte %zu\n", freer,
          b->n, owner, bad);
    if (b->seed % 4 == 0) {
        /* Resize another thread's block before freeing it. */
        size_t m = b->seed % 8 == 0 ? b->n * 2 + 1 : b->n / 2 + 1;
        unsigned char *q = realloc(b->p, m);
        REQUIRE(q != NULL, "thread %u: realloc(%zu -> %zu) failed\n", freer, b->n, m);
        size_t keep = m < b->n ? m : b->n;
        bad = pmt_verify(q, keep, b->seed);
        CHECK(bad == SIZE_MAX, "thread %u: realloc(%zu -> %zu) of thread %u's block lost byte %zu\n", freer,
              b->n, m, owner, bad);
        b->p = q;
    }
    free(b->p);
    b->p = NULL;
}

static void *worker(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    unsigned victim = (t + 1) % THREADS;
    for (unsigned r = 0; r < ROUNDS; r++) {
        struct block *mine = slots[r % 2][t];
        struct block *theirs = slots[(r + 1) % 2][victim]; /* last round's */
        for (unsigned i = 0; i < PER_THREAD; i++) {
            size_t n = size_of(t, i), align = align_of(t, i);
            unsigned char *p = alloc_aligned(i, align, n);
            REQUIRE(p != NULL, "thread %u: aligned allocation (%zu, %zu) failed\n", t, align, n);
            unsigned seed = r * 7919u + t * 131u + i;
            pmt_fill(p, n, seed);
            mine[i] = (struct block){p, n, align, seed};
            if (r > 0)
                check_and_free(&theirs[i], t, victim);
        }
        pthread_barrier_wait(&barrier);
    }
    /* Free the blocks of the last round, the neighbour's again. */
    struct block *theirs = slots[(ROUNDS - 1) % 2][victim];
    for (unsigned i = 0; i < PER_THREAD; i++)
        check_and_free(&theirs[i], t, victim);
    return NULL;
}

/* Allocates a round of blocks and exits without freeing them. */
static void *allocate_and_exit(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < PER_THREAD; i++) {
        size_t n = size_of(t, i), align = align_of(t, i);
        unsigned char *p = alloc_aligned(i, align, n);
        REQUIRE(p != NULL, "thread %u: aligned allocation (%zu, %zu) failed\n", t, align, n);
        pmt_fill(p, n, t + i);
        slots[0][t][i] = (struct block){p, n, align, t + i};
    }
    return NULL;
}

/* Frees the blocks of a thread that has exited. */
static void *free_orphans(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    unsigned owner = (t + 3) % THREADS;
    for (unsigned i = 0; i < PER_THREAD; i++)
        check_and_free(&slots[0][owner][i], t, owner);
    return NULL;
}

static void run_threads(void *(*fn)(void *))
{
    pthread_t th[THREADS];
    for (unsigned t = 0; t < THREADS; t++)
        REQUIRE(pthread_create(&th[t], NULL, fn, (void *)(uintptr_t)t) == 0, "pthread_create failed\n");
    for (unsigned t = 0; t < THREADS; t++)
        REQUIRE(pthread_join(th[t], NULL) == 0, "pthread_join failed\n");
}

int main(void)
{
    pmt_require_poolmalloc();
    REQUIRE(pthread_barrier_init(&barrier, NULL, THREADS) == 0, "pthread_barrier_init failed\n");

    run_threads(worker);

    /* Abandoned blocks: allocate, exit, then others free them; twice, so
     * that the second round reuses (adopts) what the first left behind. */
    for (int k = 0; k < 2; k++) {
        run_threads(allocate_and_exit);
        run_threads(free_orphans);
    }

    pthread_barrier_destroy(&barrier);
    return pmt_finish("threads");
}
