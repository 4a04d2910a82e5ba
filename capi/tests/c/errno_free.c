/*
 * free leaves errno alone (POSIX 2024), whatever it frees: NULL, pool
 * blocks, blocks whose freeing empties a pool or an arena, large spans that
 * are cached or unmapped, and blocks freed by another thread.
 */
#include "pmtest.h"

#include <malloc.h>
#include <pthread.h>

#define SENTINEL 0x5eed

/* Frees p with errno set to the sentinel and checks it afterwards. */
static void free_checked(void *p, const char *what, size_t n)
{
    errno = SENTINEL;
    free(p);
    int e = errno;
    CHECK(e == SENTINEL, "free of %s (%zu bytes) changed errno to %d (%s)\n", what, n, e,
          strerror(e));
}

struct batch {
    void **blocks;
    size_t count;
    size_t size;
};

static void *free_batch(void *arg)
{
    struct batch *b = arg;
    for (size_t i = 0; i < b->count; i++)
        free_checked(b->blocks[i], "a block of another thread", b->size);
    return NULL;
}

int main(void)
{
    pmt_require_poolmalloc();

    free_checked(NULL, "NULL", 0);

    /* Single blocks of every kind of size. */
    for (size_t n = 0; n <= ((size_t)64 << 20); n = n < 64 ? n + 1 : n * 3 / 2) {
        void *p = malloc(OPAQUE(n));
        REQUIRE(p != NULL, "malloc(%zu) failed\n", n);
        memset(p, 0x77, n);
        free_checked(p, "a fresh block", n);
    }

    /* Many blocks: freeing them empties pools and arenas, which go back. */
    enum { MANY = 40000 };
    static void *many[MANY];
    for (size_t n = 16; n <= 4096; n *= 4) {
        for (size_t i = 0; i < MANY; i++) {
            many[i] = malloc(OPAQUE(n));
            REQUIRE(many[i] != NULL, "malloc(%zu) failed\n", n);
        }
        for (size_t i = 0; i < MANY; i++)
            free_checked(many[i], "one of many blocks", n);
    }

    /* Large spans freed back to back: cached, then released. */
    void *large[32];
    for (int i = 0; i < 32; i++) {
        large[i] = malloc(((size_t)i + 1) * 200000);
        REQUIRE(large[i] != NULL, "malloc(%zu) failed\n", ((size_t)i + 1) * 200000);
    }
    for (int i = 0; i < 32; i++)
        free_checked(large[i], "a large span", ((size_t)i + 1) * 200000);
    errno = SENTINEL;
    malloc_trim(0);
    for (int i = 0; i < 32; i++) {
        void *p = malloc(((size_t)i + 1) * 300000);
        REQUIRE(p != NULL, "malloc failed\n");
        free_checked(p, "a large span after trim", ((size_t)i + 1) * 300000);
    }

    /* Aligned and calloc'ed blocks. */
    for (size_t align = 16; align <= ((size_t)1 << 20); align *= 4) {
        void *p = aligned_alloc(align, 3000);
        REQUIRE(p != NULL, "aligned_alloc(%zu) failed\n", align);
        free_checked(p, "an aligned block", 3000);
    }
    void *c = calloc(1000, 1000);
    REQUIRE(c != NULL, "calloc(1000, 1000) failed\n");
    free_checked(c, "a calloc'ed block", 1000000);

    /* Blocks freed by a thread that did not allocate them. */
    for (size_t n = 32; n <= 65536; n *= 8) {
        struct batch b = {many, 4096, n};
        for (size_t i = 0; i < b.count; i++) {
            many[i] = malloc(n);
            REQUIRE(many[i] != NULL, "malloc(%zu) failed\n", n);
        }
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, free_batch, &b) == 0, "pthread_create failed\n");
        REQUIRE(pthread_join(t, NULL) == 0, "pthread_join failed\n");
    }

    return pmt_finish("errno_free");
}
