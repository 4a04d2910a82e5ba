/*
 * Threads whose first allocation happens in the last round of TLS
 * destructors, when it is too late for poolmalloc's own thread-exit
 * destructor to run. Their heaps must not pile up: 2,000 such threads,
 * one after another, leave the count of live heaps near where it started.
 */
#include "pmtest.h"

#include <limits.h>
#include <pthread.h>

#define THREADS 2000

static pthread_key_t key;

/* Keeps its key set for as many rounds as the C library runs, then
 * allocates in the last one. */
static void destructor(void *value)
{
    uintptr_t round = (uintptr_t)value;
    if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
        pthread_setspecific(key, (void *)(round + 1));
        return;
    }
    char *p = malloc(OPAQUE(100));
    CHECK(p != NULL, "malloc in the last destructor round\n");
    if (p) {
        memset(p, 7, 100);
        free(p);
    }
}

static void *body(void *arg)
{
    (void)arg;
    /* No allocation here: the destructors make the thread's first one. */
    pthread_setspecific(key, (void *)1);
    return NULL;
}

/* The "heaps_live" figure of the statistics. */
static long live_heaps(void)
{
    static char buf[1 << 16];
    size_t (*stats_json)(char *, size_t) = (size_t(*)(char *, size_t))pmt_sym("pm_stats_json");
    size_t n = stats_json(buf, sizeof buf);
    REQUIRE(n < sizeof buf, "statistics too long: %zu\n", n);
    const char *at = strstr(buf, "\"heaps_live\":");
    REQUIRE(at != NULL, "no heaps_live in the statistics\n");
    return strtol(at + strlen("\"heaps_live\":"), NULL, 10);
}

int main(void)
{
    pmt_require_poolmalloc();
    REQUIRE(pthread_key_create(&key, destructor) == 0, "pthread_key_create\n");
    long before = live_heaps();
    for (int i = 0; i < THREADS; i++) {
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, body, NULL) == 0, "pthread_create %d\n", i);
        REQUIRE(pthread_join(t, NULL) == 0, "pthread_join %d\n", i);
    }
    long after = live_heaps();
    CHECK(after - before <= 16, "%d threads that first allocate in the last TLS destructor round left %ld heaps (%ld before)\n",
          THREADS, after, before);
    return pmt_failures ? 1 : 0;
}
