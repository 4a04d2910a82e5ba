/*
 * A host program (not preloaded: its malloc is the C library's) that loads a
 * plugin whose Rust global allocator is PoolMalloc with dlopen, while its own
 * threads allocate, then calls into the plugin from several threads at once.
 *
 * usage: dlopen_host PLUGIN.so [FILLER.so...]
 * The fillers are libraries with initial-exec TLS, loaded first until one
 * fails to load: the static TLS block then has no room left, as in a process
 * that has loaded many such libraries already.
 * Exits 0 when everything checked out, 3 when the plugin's dlopen failed
 * (the reason on stderr), 4 when fillers were given but never ran out of
 * room, 1 on a failed check.
 */
#include "pmtest.h"

#include <pthread.h>

typedef size_t (*work_fn)(size_t);

static volatile int stop;
static work_fn work, expected;

/* The host's own allocation traffic, through the C library's malloc. */
static void *host_churn(void *arg)
{
    (void)arg;
    size_t n = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        char *p = malloc(OPAQUE(64 + n % 4000));
        REQUIRE(p != NULL, "host malloc failed\n");
        memset(p, 0x5a, 64);
        free(p);
        n++;
    }
    return NULL;
}

static void *plugin_calls(void *arg)
{
    size_t rounds = (size_t)(uintptr_t)arg;
    for (int k = 0; k < 20; k++) {
        size_t got = work(rounds), want = expected(rounds);
        CHECK(got == want, "plugin_work(%zu) = %zu, expected %zu\n", rounds, got, want);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    REQUIRE(argc >= 2, "usage: dlopen_host PLUGIN.so [FILLER.so...]\n");
    if (argc > 2) {
        int loaded = 0;
        while (loaded < argc - 2 && dlopen(argv[2 + loaded], RTLD_NOW | RTLD_LOCAL) != NULL)
            loaded++;
        if (loaded == argc - 2) {
            fprintf(stderr, "all %d fillers loaded: the static TLS block never ran out of room\n", loaded);
            return 4;
        }
        fprintf(stderr, "static TLS full after %d fillers: %s\n", loaded, dlerror());
    }
    pthread_t churn[3];
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&churn[i], NULL, host_churn, NULL) == 0, "pthread_create failed\n");

    void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (plugin == NULL) {
        fprintf(stderr, "dlopen failed: %s\n", dlerror());
        __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
        for (int i = 0; i < 3; i++)
            pthread_join(churn[i], NULL);
        return 3;
    }
    work = (work_fn)dlsym(plugin, "plugin_work");
    expected = (work_fn)dlsym(plugin, "plugin_expected");
    size_t (*blocks)(void) = (size_t (*)(void))dlsym(plugin, "plugin_blocks_in_use");
    REQUIRE(work != NULL && expected != NULL && blocks != NULL, "plugin symbols missing\n");

    pthread_t callers[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&callers[i], NULL, plugin_calls, (void *)(uintptr_t)(50 + i)) == 0,
                "pthread_create failed\n");
    for (int i = 0; i < 4; i++)
        pthread_join(callers[i], NULL);
    /* The plugin's boxes are counted by poolmalloc's statistics: its
     * allocator really is poolmalloc. */
    CHECK(blocks() >= 1000, "the plugin's 1000 live boxes are not in poolmalloc's statistics\n");

    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        pthread_join(churn[i], NULL);
    return pmt_finish("dlopen_host");
}
