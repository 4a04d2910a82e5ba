/*
 * The heap profiler's end-to-end program (run with POOLMALLOC_PROF=1 and
 * frame pointers): one function allocates 50 MB in 1 KiB blocks, another
 * 5 MB, a third leaks 10 MB, and a fourth keeps four 3 MiB (huge) blocks.
 * It prints each function's address, so the test can tell the stacks
 * apart without a symboliser. With "fork" it forks first, and the child
 * does the same work (its profile goes to a file of its own).
 */
#include "pmtest.h"

#include <sys/wait.h>
#include <unistd.h>

static void *volatile sink;

__attribute__((noinline)) void allocates_50mb(void) {
    for (int i = 0; i < 50 * 1000; i++) {
        sink = malloc(1024);
        free(sink);
    }
}

__attribute__((noinline)) void allocates_5mb(void) {
    for (int i = 0; i < 5 * 1000; i++) {
        sink = malloc(1024);
        free(sink);
    }
}

__attribute__((noinline)) void leaks_10mb(void) {
    for (int i = 0; i < 10 * 1000 / 4; i++) {
        sink = malloc(4096);
        memset(sink, 1, 8);
    }
}

static void *kept[4];

__attribute__((noinline)) void keeps_huge(void) {
    for (int i = 0; i < 4; i++) {
        kept[i] = malloc(3 << 20);
        CHECK(kept[i] != NULL, "3 MiB block\n");
    }
}

int main(int argc, char **argv) {
    printf("allocates_50mb %p\nallocates_5mb %p\nleaks_10mb %p\nkeeps_huge %p\n",
           (void *)allocates_50mb, (void *)allocates_5mb, (void *)leaks_10mb, (void *)keeps_huge);
    fflush(stdout);
    pid_t child = -1;
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
        child = fork();
        CHECK(child >= 0, "fork\n");
    }
    allocates_50mb();
    allocates_5mb();
    leaks_10mb();
    keeps_huge();
    if (child > 0) {
        int status = 0;
        CHECK(waitpid(child, &status, 0) == child, "waitpid\n");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d\n", status);
        printf("child %d\n", (int)child);
    }
    return pmt_failures ? 1 : 0;
}
