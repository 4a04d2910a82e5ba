/*
 * Instruction counts per malloc/free through the C ABI, under callgrind.
 *
 * Usage: pairs BATCHES WARMUP SIZE...
 *
 * For each size: WARMUP batches first, then BATCHES batches of "allocate
 * 100 blocks, free the 100 blocks", with collection switched on only
 * around the malloc phase (dumped as "malloc-SIZE") and then only around
 * the free phase ("free-SIZE"). The same loops with the calls left out
 * give the loop's own cost ("loop-malloc-SIZE", "loop-free-SIZE"), which
 * the caller subtracts. Run with --collect-atstart=no --combine-dumps=yes.
 *
 * Built with -fno-builtin so the compiler keeps every malloc/free call,
 * and without vectorising or unrolling so the loops stay the same shape
 * with and without the calls. Prints the library that malloc resolved to.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <valgrind/callgrind.h>

#define BATCH 100

static void *slots[BATCH];
static char dummy[16];

__attribute__((noinline)) static void malloc_phase(size_t size) {
    for (int i = 0; i < BATCH; i++)
        slots[i] = malloc(size);
}

__attribute__((noinline)) static void free_phase(void) {
    for (int i = 0; i < BATCH; i++)
        free(slots[i]);
}

__attribute__((noinline)) static void loop_malloc_phase(size_t size) {
    for (int i = 0; i < BATCH; i++) {
        void *p = dummy;
        __asm__ volatile("" : "+r"(p) : "r"(size));
        slots[i] = p;
    }
}

__attribute__((noinline)) static void loop_free_phase(void) {
    for (int i = 0; i < BATCH; i++) {
        void *p = slots[i];
        __asm__ volatile("" : : "r"(p) : "memory");
    }
}

static void check(void) {
    for (int i = 0; i < BATCH; i++) {
        if (!slots[i]) {
            fprintf(stderr, "malloc returned NULL\n");
            exit(2);
        }
    }
}

static void measure(const char *what, size_t size, long batches, int loop_only) {
    char name[64];
    /* Collect the malloc phase, then the free phase, each in its own part. */
    for (int phase = 0; phase < 2; phase++) {
        for (long b = 0; b < batches; b++) {
            if (phase == 0) CALLGRIND_TOGGLE_COLLECT;
            if (loop_only) loop_malloc_phase(size); else malloc_phase(size);
            if (phase == 0) CALLGRIND_TOGGLE_COLLECT;
            if (!loop_only) check();
            if (phase == 1) CALLGRIND_TOGGLE_COLLECT;
            if (loop_only) loop_free_phase(); else free_phase();
            if (phase == 1) CALLGRIND_TOGGLE_COLLECT;
        }
        snprintf(name, sizeof name, "%s%s-%zu", what, phase == 0 ? "malloc" : "free", size);
        CALLGRIND_DUMP_STATS_AT(name);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s BATCHES WARMUP SIZE...\n", argv[0]);
        return 2;
    }
    long batches = atol(argv[1]);
    long warmup = atol(argv[2]);

    Dl_info info;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    printf("malloc: %s\n", m && dladdr(m, &info) && info.dli_fname ? info.dli_fname : "?");
    fflush(stdout);

    CALLGRIND_START_INSTRUMENTATION;
    for (int a = 3; a < argc; a++) {
        size_t size = (size_t)atol(argv[a]);
        for (long b = 0; b < warmup; b++) {
            malloc_phase(size);
            check();
            free_phase();
        }
        measure("", size, batches, 0);
        measure("loop-", size, batches, 1);
    }
    CALLGRIND_STOP_INSTRUMENTATION;
    return 0;
}
