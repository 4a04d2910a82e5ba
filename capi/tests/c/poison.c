/*
 * Free-list poisoning: a write into a freed block replaces its link with an
 * address the attacker chose, and the program then allocates. poolmalloc
 * must report "poolmalloc: corrupted free list ..." and abort before it
 * hands out the forged address. Each mode prints the forged address as
 * "target 0x..." first; a malloc that returns it prints "FORGED".
 *
 *   local   the static buffer, through a block freed by its owner;
 *   live    another live block of the same pool, likewise;
 *   remote  the static buffer, through a block freed by another thread
 *           (the link sits in that thread's batch, then on the remote list).
 */
#include "pmtest.h"

#include <pthread.h>
#include <stdint.h>

#define SIZE 48
#define MANY 4000

static _Alignas(64) unsigned char target[256];
static void *blocks[MANY];

/* The result is laundered: a compiler may assume that a fresh block never
 * equals the address of a static object and drop the compare, and then the
 * unused malloc. */
static void check_not_forged(void *p, void *forged)
{
    if (pmt_launder(p) == forged) {
        printf("FORGED %p\n", p);
        fflush(stdout);
    }
}

static void *remote_freer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++)
        free(blocks[i]);
    /* Use after free: the link of a block this thread just freed. */
    *(void *volatile *)blocks[5] = target;
    /* A free into another pool sends the held-back chain to its pool. */
    free(blocks[MANY - 1]);
    return NULL;
}

int main(int argc, char **argv)
{
    pmt_require_poolmalloc();
    REQUIRE(argc == 2, "usage: poison local|live|remote\n");
    const char *mode = argv[1];

    if (strcmp(mode, "local") == 0 || strcmp(mode, "live") == 0) {
        void *a = malloc(SIZE), *b = malloc(SIZE), *c = malloc(SIZE);
        REQUIRE(a && b && c, "malloc failed\n");
        void *forged = strcmp(mode, "local") == 0 ? (void *)target : c;
        printf("target %p\n", forged);
        fflush(stdout);
        void *b_alias = pmt_launder(b);
        free(a);
        free(b);
        /* Use after free: b is the head of the list and links to a. */
        *(void *volatile *)b_alias = forged;
        void *x = malloc(SIZE);
        check_not_forged(x, forged);
        void *y = malloc(SIZE);
        check_not_forged(y, forged);
        void *z = malloc(SIZE);
        check_not_forged(z, forged);
    } else if (strcmp(mode, "remote") == 0) {
        printf("target %p\n", (void *)target);
        fflush(stdout);
        for (int i = 0; i < MANY; i++) {
            blocks[i] = pmt_launder(malloc(SIZE));
            REQUIRE(blocks[i] != NULL, "malloc failed\n");
        }
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, remote_freer, NULL) == 0, "pthread_create failed\n");
        REQUIRE(pthread_join(t, NULL) == 0, "pthread_join failed\n");
        /* Allocate until the owner takes the remote frees back. */
        for (int i = 0; i < 3 * MANY; i++)
            check_not_forged(malloc(SIZE), target);
    } else {
        REQUIRE(0, "unknown mode %s\n", mode);
    }
    printf("survived\n");
    fflush(stdout);
    return pmt_finish("poison");
}
