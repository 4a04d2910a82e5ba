/*
 * fork from a multithreaded process: 4 threads allocate and free without
 * pause while the main thread forks 100 times. Each child allocates and
 * frees (also a block inherited from the parent, and from a new thread now
 * and then), sometimes trims, and exits with _exit(0). A lock held across fork would hang a
 * child; each child has an alarm, so a hang becomes a failure.
 */
#include "pmtest.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 4
#define FORKS 100
#define CHILD_TIMEOUT_S 20

static volatile int stop;
static unsigned long rounds[THREADS];

static void *churn(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    void *held[64] = {0};
    unsigned i = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        unsigned k = i % 64;
        free(held[k]);
        size_t n = (i % 97 == 0) ? 100000 + (size_t)(i % 7) * 4096 : 1 + (size_t)((i * 131u + t) % 3000u);
        held[k] = (i % 5 == 0) ? aligned_alloc(64, n) : malloc(n);
        REQUIRE(held[k] != NULL, "thread %u: allocation of %zu bytes failed\n", t, n);
        memset(held[k], (int)t, n < 64 ? n : 64);
        i++;
        __atomic_store_n(&rounds[t], i, __ATOMIC_RELAXED);
    }
    for (unsigned k = 0; k < 64; k++)
        free(held[k]);
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        void *p = malloc(16 + (size_t)i * 3);
        if (p == NULL)
            return (void *)1;
        free(p);
    }
    return NULL;
}

/* What a child does; returns its exit status. Only async-signal-safe
 * calls besides the allocator (and pthreads now and then). */
static int child(int index, unsigned char *inherited, size_t inherited_n)
{
    alarm(CHILD_TIMEOUT_S);
    if (pmt_verify(inherited, inherited_n, 77) != SIZE_MAX)
        return 2;
    free(inherited);
    void *blocks[100];
    for (int i = 0; i < 100; i++) {
        size_t n = (i % 10 == 9) ? 200000 : 1 + (size_t)i * 41;
        blocks[i] = malloc(n);
        if (blocks[i] == NULL)
            return 3;
        memset(blocks[i], i, n);
    }
    for (int i = 0; i < 100; i++)
        free(blocks[i]);
    void *c = calloc(100, 100);
    if (c == NULL)
        return 4;
    free(c);
    if (index % 7 == 0)
        malloc_trim(0);
    if (index % 10 == 0) {
        pthread_t t;
        void *ret = NULL;
        if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, &ret) != 0 ||
            ret != NULL)
            return 5;
    }
    return 0;
}

int main(void)
{
    pmt_require_poolmalloc();

    pthread_t th[THREADS];
    for (unsigned t = 0; t < THREADS; t++)
        REQUIRE(pthread_create(&th[t], NULL, churn, (void *)(uintptr_t)t) == 0,
                "pthread_create failed\n");

    int failed_children = 0;
    for (int f = 0; f < FORKS; f++) {
        size_t n = 100 + (size_t)f * 997;
        unsigned char *inherited = malloc(n);
        REQUIRE(inherited != NULL, "malloc(%zu) failed\n", n);
        pmt_fill(inherited, n, 77);

        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork number %d failed: %s\n", f, strerror(errno));
        if (pid == 0)
            _exit(child(f, inherited, n));

        free(inherited);
        int status = 0;
        pid_t w;
        do {
            w = waitpid(pid, &status, 0);
        } while (w < 0 && errno == EINTR);
        REQUIRE(w == pid, "waitpid failed: %s\n", strerror(errno));
        if (WIFSIGNALED(status)) {
            CHECK(!WIFSIGNALED(status), "child %d was killed by signal %d%s\n", f, WTERMSIG(status),
                  WTERMSIG(status) == SIGALRM ? " (hung)" : "");
            failed_children++;
        } else {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d exited with status %d\n", f,
                  WEXITSTATUS(status));
            failed_children += WEXITSTATUS(status) != 0;
        }
        if (failed_children >= 5)
            break;
    }

    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (unsigned t = 0; t < THREADS; t++)
        REQUIRE(pthread_join(th[t], NULL) == 0, "pthread_join failed\n");
    for (unsigned t = 0; t < THREADS; t++)
        CHECK(rounds[t] > 0, "thread %u never ran\n", t);

    return pmt_finish("fork_threads");
}
