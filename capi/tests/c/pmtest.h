/*
 * Helpers shared by the C conformance programs. Each program runs with
 * libpoolmalloc.so preloaded, returns 0 when every check passed, and
 * otherwise prints one "FAIL" line per failed check on stderr and exits 1.
 */
#ifndef PMTEST_H
#define PMTEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poolmalloc.h"

static int pmt_failures;

/* Records a failed check; the program carries on and exits 1 at the end.
 * Safe to use from any thread. */
#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "  [%s]\n", #cond);                               \
            __atomic_fetch_add(&pmt_failures, 1, __ATOMIC_RELAXED);           \
        }                                                                     \
    } while (0)

/* Like CHECK, but stops the program at once (for checks later code needs). */
#define REQUIRE(cond, ...)                                                    \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "  [%s]\n", #cond);                               \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* Hides a size from the optimizer, so that calls with constant sizes are
 * really made (GCC knows malloc and may fold or drop calls it can see). */
static inline size_t pmt_opaque(size_t x)
{
    __asm__ volatile("" : "+r"(x));
    return x;
}
#define OPAQUE(x) pmt_opaque(x)

/* The same for a pointer: GCC then cannot tell that a realloc of the
 * result concerns the original (no -Wuse-after-free after a failed one). */
static inline void *pmt_launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

/* Looks up a poolmalloc function in the preloaded library. */
static inline void *pmt_sym(const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    REQUIRE(f != NULL, "symbol %s not found: is libpoolmalloc.so preloaded?\n", name);
    return f;
}

/*
 * Fails unless the allocation functions of this process are poolmalloc's:
 * a test must never pass on the C library's allocator by accident. The
 * definitions the dynamic linker binds (the first in the global scope) must
 * be those of the library that defines pm_version.
 */
static inline void pmt_require_poolmalloc(void)
{
    static const char *const names[] = {
        "malloc",        "free",    "calloc",  "realloc", "reallocarray",       "posix_memalign",
        "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
    };
    const char *(*version)(void) = (const char *(*)(void))pmt_sym("pm_version");
    const char *v = version();
    REQUIRE(v != NULL && v[0] >= '0' && v[0] <= '9', "pm_version() returned a bad string\n");

    Dl_info info;
    REQUIRE(dladdr((void *)version, &info) != 0 && info.dli_fname != NULL,
            "dladdr(pm_version) failed\n");
    void *lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    REQUIRE(lib != NULL, "dlopen(%s, RTLD_NOLOAD) failed: %s\n", info.dli_fname, dlerror());
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *bound = dlsym(RTLD_DEFAULT, names[i]);
        void *ours = dlsym(lib, names[i]);
        REQUIRE(ours != NULL && bound == ours, "%s is not poolmalloc's (library %s)\n", names[i],
                info.dli_fname);
    }
    dlclose(lib);
}

/* Fills n bytes at p with a pattern derived from seed. */
static inline void pmt_fill(void *p, size_t n, unsigned seed)
{
    unsigned char *b = (unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed + i * 7 + (i >> 8));
}

/* Returns the index of the first byte that differs from pmt_fill's pattern,
 * or SIZE_MAX if all n bytes match. */
static inline size_t pmt_verify(const void *p, size_t n, unsigned seed)
{
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed + i * 7 + (i >> 8)))
            return i;
    return SIZE_MAX;
}

/* Ends main: prints a summary line and returns the exit status. */
/* Two double frees of the block p (of n bytes), announced on stdout as
 * "block 0x...": interleaved with the free of another block, and delayed by
 * 100 allocations and frees of the same size. Each returns only if the
 * allocator let the second free through. */
static inline void pmt_double_interleaved(void *p, size_t n)
{
    void *q = pmt_launder(malloc(n));
    printf("block %p\n", p);
    fflush(stdout);
    free(pmt_launder(p));
    free(pmt_launder(q));
    free(pmt_launder(p));
}

static inline void pmt_double_delayed(void *p, size_t n)
{
    printf("block %p\n", p);
    fflush(stdout);
    free(pmt_launder(p));
    for (int i = 0; i < 100; i++)
        free(pmt_launder(malloc(n)));
    free(pmt_launder(p));
}

static inline int pmt_finish(const char *name)
{
    if (pmt_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, pmt_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

#endif /* PMTEST_H */
