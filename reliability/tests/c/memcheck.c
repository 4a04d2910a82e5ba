/*
 * The workload that tests/memcheck.rs runs under Valgrind's memcheck with
 * libpoolmalloc.so preloaded. It goes through the C allocation API (malloc,
 * calloc, realloc, free, posix_memalign, aligned_alloc, malloc_usable_size)
 * over small sizes, every size-class boundary, large blocks (above the 32 KiB
 * largest class, up to several MiB), realloc growth and shrinking, aligned
 * requests, and two threads that free each other's blocks. It checks every
 * result itself: contents kept, alignment, usable sizes, zeroed memory.
 *
 * It first reports which allocator it runs on:
 *
 *     pm_version: <version or "(not found)">
 *     malloc defined in: <file of the malloc the dynamic linker binds>
 *     malloc_usable_size(malloc(1)): <n>
 *     allocator: poolmalloc | other
 *
 * "allocator: poolmalloc" means that pm_version resolves, that the malloc
 * the program calls is defined in the library that defines pm_version, and
 * that a 1-byte block has poolmalloc's 16-byte usable size. The last part
 * is the one that tells whether a tool intercepts the calls: dlsym and
 * dladdr see the symbols the dynamic linker binds, not a redirection done
 * at run time, whereas an intercepting malloc reports the exact requested
 * size. A wrong allocator counts as a failure.
 *
 * Exit status: 0 when every check passed; 1 otherwise, after one "FAIL"
 * line per failed check on stderr.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CHECK, REQUIRE, OPAQUE, pmt_launder, pmt_fill, pmt_verify, pmt_finish:
 * the helpers the C conformance programs share (capi/tests/c). */
#include "pmtest.h"

/* Index of the first non-zero byte, or SIZE_MAX. */
static size_t first_nonzero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return i;
    return SIZE_MAX;
}

static int aligned(const void *p, size_t align)
{
    return ((uintptr_t)p & (align - 1)) == 0;
}

/* ---- which allocator ------------------------------------------------- */

static void check_allocator(void)
{
    const char *(*version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "pm_version");
    const char *v = version ? version() : NULL;
    printf("pm_version: %s\n", v ? v : "(not found)");

    Dl_info mine = {0}, bound = {0};
    int have_mine = version && dladdr((void *)version, &mine) && mine.dli_fname;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    int have_bound = m && dladdr(m, &bound) && bound.dli_fname;
    printf("malloc defined in: %s\n", have_bound ? bound.dli_fname : "(unknown)");

    void *p = malloc(OPAQUE(1));
    REQUIRE(p != NULL, "malloc(1) failed\n");
    size_t usable = malloc_usable_size(p);
    free(p);
    printf("malloc_usable_size(malloc(1)): %zu\n", usable);

    int same_lib = have_mine && have_bound && strcmp(mine.dli_fname, bound.dli_fname) == 0;
    int ours = v != NULL && same_lib && usable == 16;
    printf("allocator: %s\n", ours ? "poolmalloc" : "other");
    fflush(stdout);
    CHECK(ours, "the allocation functions are not poolmalloc's\n");
}

/* ---- small sizes ----------------------------------------------------- */

#define SMALL_MAX 1024

static void small_sizes(void)
{
    static unsigned char *blocks[SMALL_MAX + 1];
    for (size_t n = 0; n <= SMALL_MAX; n++) {
        blocks[n] = malloc(OPAQUE(n));
        REQUIRE(blocks[n] != NULL, "malloc(%zu) failed\n", n);
        CHECK(aligned(blocks[n], 16), "malloc(%zu) = %p is not 16-aligned\n", n, (void *)blocks[n]);
        CHECK(malloc_usable_size(blocks[n]) >= n, "malloc_usable_size of a %zu-byte block is %zu\n", n,
              malloc_usable_size(blocks[n]));
        pmt_fill(blocks[n], n, (unsigned)n);
    }
    for (size_t n = 0; n <= SMALL_MAX; n++) {
        size_t bad = pmt_verify(blocks[n], n, (unsigned)n);
        CHECK(bad == SIZE_MAX, "a %zu-byte block was changed at byte %zu\n", n, bad);
        free(blocks[n]);
    }

    /* calloc over freed, dirty blocks of the same sizes must still zero. */
    for (size_t n = 1; n <= SMALL_MAX; n++) {
        unsigned char *d = malloc(OPAQUE(n));
        REQUIRE(d != NULL, "malloc(%zu) failed\n", n);
        memset(d, 0xA5, n);
        free(pmt_launder(d));
        unsigned char *z = calloc(OPAQUE(n), 1);
        REQUIRE(z != NULL, "calloc(%zu, 1) failed\n", n);
        size_t bad = first_nonzero(z, n);
        CHECK(bad == SIZE_MAX, "calloc(%zu, 1) left byte %zu non-zero\n", n, bad);
        free(z);
    }
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) is not 0\n");
    errno = 0;
    CHECK(calloc(OPAQUE(SIZE_MAX / 2), 3) == NULL && errno == ENOMEM,
          "calloc with an overflowing size did not fail with ENOMEM\n");
}

/* ---- size-class boundaries ------------------------------------------- */

/* The class sizes: 16-byte steps up to 512, then 8 geometric steps per
 * power of two up to 32 KiB. Returns how many were written. */
static size_t class_sizes(size_t *out, size_t cap)
{
    size_t k = 0;
    for (size_t s = 16; s <= 512 && k < cap; s += 16)
        out[k++] = s;
    for (size_t base = 512; base < 32768; base *= 2)
        for (size_t j = 1; j <= 8 && k < cap; j++)
            out[k++] = base + j * (base / 8);
    return k;
}

static void class_boundaries(void)
{
    size_t classes[128];
    size_t nclasses = class_sizes(classes, 128);
    enum { PER = 3 };
    static unsigned char *blocks[128][PER];
    static size_t sizes[128][PER];
    for (size_t c = 0; c < nclasses; c++) {
        for (size_t k = 0; k < PER; k++) {
            size_t n = classes[c] - 1 + k; /* one below, at, one above */
            unsigned char *p = malloc(OPAQUE(n));
            REQUIRE(p != NULL, "malloc(%zu) failed\n", n);
            size_t usable = malloc_usable_size(p);
            CHECK(usable >= n, "malloc_usable_size of a %zu-byte block is %zu\n", n, usable);
            /* The whole usable size is the caller's to write. */
            pmt_fill(p, usable, (unsigned)(c * PER + k));
            blocks[c][k] = p;
            sizes[c][k] = usable;
        }
    }
    for (size_t c = 0; c < nclasses; c++) {
        for (size_t k = 0; k < PER; k++) {
            size_t bad = pmt_verify(blocks[c][k], sizes[c][k], (unsigned)(c * PER + k));
            CHECK(bad == SIZE_MAX, "a block of usable size %zu (class %zu) was changed at byte %zu\n",
                  sizes[c][k], classes[c], bad);
            free(blocks[c][k]);
        }
    }
}

/* ---- large blocks ---------------------------------------------------- */

static void large_blocks(void)
{
    static const size_t sizes[] = {
        32768 + 1, 40000, 65536, 100000, 262144 + 3, 1 << 20, (3 << 20) + 17, 8 << 20,
    };
    enum { N = sizeof sizes / sizeof sizes[0] };
    unsigned char *blocks[N];
    for (size_t i = 0; i < N; i++) {
        blocks[i] = malloc(OPAQUE(sizes[i]));
        REQUIRE(blocks[i] != NULL, "malloc(%zu) failed\n", sizes[i]);
        CHECK(aligned(blocks[i], 16), "malloc(%zu) = %p is not 16-aligned\n", sizes[i], (void *)blocks[i]);
        size_t usable = malloc_usable_size(blocks[i]);
        CHECK(usable >= sizes[i], "malloc_usable_size of a %zu-byte block is %zu\n", sizes[i], usable);
        /* The whole usable size is the caller's to write. */
        pmt_fill(blocks[i], usable, (unsigned)i + 100);
    }
    for (size_t i = 0; i < N; i++) {
        size_t usable = malloc_usable_size(blocks[i]);
        size_t bad = pmt_verify(blocks[i], usable, (unsigned)i + 100);
        CHECK(bad == SIZE_MAX, "a %zu-byte block (usable size %zu) was changed at byte %zu\n", sizes[i], usable, bad);
        free(blocks[i]);
    }
    /* calloc of the sizes just freed (a cache may hand the same dirty
     * memory back) must be zero throughout. */
    for (size_t i = 0; i < N; i++) {
        unsigned char *z = calloc(1, OPAQUE(sizes[i]));
        REQUIRE(z != NULL, "calloc(1, %zu) failed\n", sizes[i]);
        size_t bad = first_nonzero(z, sizes[i]);
        CHECK(bad == SIZE_MAX, "calloc(1, %zu) left byte %zu non-zero\n", sizes[i], bad);
        free(z);
    }
}

/* ---- realloc --------------------------------------------------------- */

static void realloc_chain(void)
{
    /* Grow from 1 byte to 6 MiB by ~1.5x steps, through every layer
     * (small classes, medium classes, large spans), then shrink back. */
    size_t n = 1;
    unsigned char *p = realloc(NULL, OPAQUE(n));
    REQUIRE(p != NULL, "realloc(NULL, 1) failed\n");
    pmt_fill(p, n, 7);
    while (n < (6u << 20)) {
        size_t m = n + n / 2 + 1;
        unsigned char *q = realloc(p, OPAQUE(m));
        REQUIRE(q != NULL, "realloc(%zu -> %zu) failed\n", n, m);
        size_t bad = pmt_verify(q, n, 7);
        CHECK(bad == SIZE_MAX, "realloc(%zu -> %zu) lost byte %zu\n", n, m, bad);
        CHECK(malloc_usable_size(q) >= m, "after realloc to %zu the usable size is %zu\n", m, malloc_usable_size(q));
        pmt_fill(q, m, 7);
        p = q;
        n = m;
    }
    while (n > 1) {
        size_t m = n / 3 + 1;
        if (m >= n)
            m = n - 1;
        unsigned char *q = realloc(p, OPAQUE(m));
        REQUIRE(q != NULL, "realloc(%zu -> %zu) failed\n", n, m);
        size_t bad = pmt_verify(q, m, 7);
        CHECK(bad == SIZE_MAX, "realloc(%zu -> %zu) lost byte %zu\n", n, m, bad);
        CHECK(malloc_usable_size(q) >= m, "after realloc to %zu the usable size is %zu\n", m, malloc_usable_size(q));
        p = q;
        n = m;
    }
    free(p);

    /* Resizes within and across the class boundaries, both ways. */
    size_t classes[128];
    size_t nclasses = class_sizes(classes, 128);
    for (size_t c = 0; c + 1 < nclasses; c++) {
        size_t a = classes[c], b = classes[c + 1] + 1;
        unsigned char *q = malloc(OPAQUE(a));
        REQUIRE(q != NULL, "malloc(%zu) failed\n", a);
        pmt_fill(q, a, (unsigned)c);
        q = realloc(q, OPAQUE(b));
        REQUIRE(q != NULL, "realloc(%zu -> %zu) failed\n", a, b);
        size_t bad = pmt_verify(q, a, (unsigned)c);
        CHECK(bad == SIZE_MAX, "realloc(%zu -> %zu) lost byte %zu\n", a, b, bad);
        q = realloc(q, OPAQUE(a - 1));
        REQUIRE(q != NULL, "realloc(%zu -> %zu) failed\n", b, a - 1);
        bad = pmt_verify(q, a - 1, (unsigned)c);
        CHECK(bad == SIZE_MAX, "realloc(%zu -> %zu) lost byte %zu\n", b, a - 1, bad);
        free(q);
    }
}

/* ---- aligned allocations --------------------------------------------- */

static void aligned_blocks(void)
{
    static const size_t sizes[] = {1, 100, 5000, 70000};
    for (size_t align = sizeof(void *); align <= (size_t)1 << 21; align *= 2) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            void *p = NULL;
            int r = posix_memalign(&p, OPAQUE(align), OPAQUE(n));
            REQUIRE(r == 0 && p != NULL, "posix_memalign(%zu, %zu) failed: %d\n", align, n, r);
            CHECK(aligned(p, align), "posix_memalign(%zu, %zu) = %p is misaligned\n", align, n, p);
            CHECK(malloc_usable_size(p) >= n, "usable size of posix_memalign(%zu, %zu) is %zu\n", align, n,
                  malloc_usable_size(p));
            pmt_fill(p, n, (unsigned)(align + i));

            void *q = aligned_alloc(OPAQUE(align), OPAQUE(n));
            REQUIRE(q != NULL, "aligned_alloc(%zu, %zu) failed\n", align, n);
            CHECK(aligned(q, align), "aligned_alloc(%zu, %zu) = %p is misaligned\n", align, n, q);
            CHECK(malloc_usable_size(q) >= n, "usable size of aligned_alloc(%zu, %zu) is %zu\n", align, n,
                  malloc_usable_size(q));
            pmt_fill(q, n, (unsigned)(align + i + 1));

            size_t bad = pmt_verify(p, n, (unsigned)(align + i));
            CHECK(bad == SIZE_MAX, "posix_memalign(%zu, %zu) block changed at byte %zu\n", align, n, bad);
            bad = pmt_verify(q, n, (unsigned)(align + i + 1));
            CHECK(bad == SIZE_MAX, "aligned_alloc(%zu, %zu) block changed at byte %zu\n", align, n, bad);
            free(p);
            free(q);
        }
    }
    void *p = (void *)&pmt_failures;
    CHECK(posix_memalign(&p, OPAQUE(24), 8) == EINVAL, "posix_memalign(24) did not fail with EINVAL\n");
    CHECK(p == (void *)&pmt_failures, "a failed posix_memalign changed *memptr\n");
}

/* ---- two threads freeing each other's blocks ------------------------- */

#define PER_THREAD 1500
#define ROUNDS 6

struct block {
    unsigned char *p;
    size_t n;
    unsigned seed;
};

static struct block slots[2][PER_THREAD];
static pthread_barrier_t barrier;

static size_t thread_size(unsigned t, unsigned i)
{
    if (i % 211 == 0)
        return 40000 + 3000 * (size_t)t; /* a large span now and then */
    return 1 + (size_t)((i * 37u + t * 101u + i / 7) % 3000u);
}

static void *two_threads_main(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    for (unsigned round = 0; round < ROUNDS; round++) {
        for (unsigned i = 0; i < PER_THREAD; i++) {
            struct block *b = &slots[t][i];
            b->n = thread_size(t, i + round);
            b->seed = t * 1000003u + round * 7919u + i;
            b->p = (i % 5 == 0) ? calloc(1, b->n) : malloc(b->n);
            REQUIRE(b->p != NULL, "thread %u: allocating %zu bytes failed\n", t, b->n);
            if (i % 5 == 0) {
                size_t bad = first_nonzero(b->p, b->n);
                CHECK(bad == SIZE_MAX, "thread %u: calloc(1, %zu) left byte %zu non-zero\n", t, b->n, bad);
            }
            pmt_fill(b->p, b->n, b->seed);
        }
        pthread_barrier_wait(&barrier);
        /* Check and free the other thread's blocks; resize some first. */
        unsigned other = 1 - t;
        for (unsigned i = 0; i < PER_THREAD; i++) {
            struct block *b = &slots[other][i];
            size_t bad = pmt_verify(b->p, b->n, b->seed);
            CHECK(bad == SIZE_MAX, "thread %u: a %zu-byte block of thread %u changed at byte %zu\n", t, b->n,
                  other, bad);
            if (i % 4 == 0) {
                size_t m = (i % 8 == 0) ? b->n * 2 + 1 : b->n / 2 + 1;
                unsigned char *q = realloc(b->p, m);
                REQUIRE(q != NULL, "thread %u: realloc(%zu -> %zu) failed\n", t, b->n, m);
                size_t keep = m < b->n ? m : b->n;
                bad = pmt_verify(q, keep, b->seed);
                CHECK(bad == SIZE_MAX, "thread %u: realloc(%zu -> %zu) of thread %u's block lost byte %zu\n", t,
                      b->n, m, other, bad);
                b->p = q;
            }
            free(b->p);
            b->p = NULL;
        }
        pthread_barrier_wait(&barrier);
    }
    /* Exit holding blocks: the main thread frees them after the thread has
     * gone. */
    for (unsigned i = 0; i < PER_THREAD; i += 3) {
        struct block *b = &slots[t][i];
        b->n = thread_size(t, i);
        b->seed = t + i;
        b->p = malloc(b->n);
        REQUIRE(b->p != NULL, "thread %u: malloc(%zu) failed\n", t, b->n);
        pmt_fill(b->p, b->n, b->seed);
    }
    return NULL;
}

static void two_threads(void)
{
    pthread_t th[2];
    REQUIRE(pthread_barrier_init(&barrier, NULL, 2) == 0, "pthread_barrier_init failed\n");
    for (unsigned t = 0; t < 2; t++)
        REQUIRE(pthread_create(&th[t], NULL, two_threads_main, (void *)(uintptr_t)t) == 0,
                "pthread_create failed\n");
    for (unsigned t = 0; t < 2; t++)
        REQUIRE(pthread_join(th[t], NULL) == 0, "pthread_join failed\n");
    pthread_barrier_destroy(&barrier);
    for (unsigned t = 0; t < 2; t++) {
        for (unsigned i = 0; i < PER_THREAD; i += 3) {
            struct block *b = &slots[t][i];
            size_t bad = pmt_verify(b->p, b->n, b->seed);
            CHECK(bad == SIZE_MAX, "a %zu-byte block of exited thread %u changed at byte %zu\n", b->n, t, bad);
            free(b->p);
            b->p = NULL;
        }
    }
    /* The pools the threads left behind serve new blocks correctly. */
    for (unsigned i = 0; i < PER_THREAD; i++) {
        size_t n = thread_size(0, i);
        unsigned char *p = malloc(n);
        REQUIRE(p != NULL, "malloc(%zu) failed\n", n);
        pmt_fill(p, n, i);
        size_t bad = pmt_verify(p, n, i);
        CHECK(bad == SIZE_MAX, "a %zu-byte block changed at byte %zu\n", n, bad);
        free(p);
    }
}

int main(void)
{
    check_allocator();
    small_sizes();
    class_boundaries();
    large_blocks();
    realloc_chain();
    aligned_blocks();
    two_threads();
    return pmt_finish("memcheck workload");
}
