/*
 * poolmalloc.h: the C interface of libpoolmalloc.so beyond the standard
 * allocation functions.
 *
 * libpoolmalloc.so exports the whole C and glibc allocation API (malloc,
 * free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc,
 * memalign, valloc, pvalloc, malloc_usable_size, malloc_trim, malloc_stats),
 * declared by <stdlib.h> and <malloc.h>. This header declares the rest.
 *
 * Use it either by linking with -lpoolmalloc or by preloading the library
 * (LD_PRELOAD=libpoolmalloc.so); in the second case look the pm_* functions
 * up with dlsym(RTLD_DEFAULT, "pm_version") and so on.
 */
#ifndef POOLMALLOC_H
#define POOLMALLOC_H

#include <stddef.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Prints the statistics report (arenas, pools, size classes, large spans)
 * to stderr. The same report is printed at exit when POOLMALLOC_SHOW_STATS=1. */
void pm_stats_print(void);

/* Returns as much free memory to the operating system as possible, now. */
void pm_trim(void);

/* The library version, e.g. "0.1.0"; a static string, never freed. */
const char *pm_version(void);

/* Writes the statistics as JSON (the keys of the JSON report) into buf, which
 * has cap bytes, NUL-terminated. Returns the length of the whole text without
 * the NUL: when it is cap or more, buf holds a prefix; call again with a
 * buffer that large plus one. buf may be NULL when cap is 0. */
size_t pm_stats_json(char *buf, size_t cap);

/* Writes the text report that pm_stats_print prints into buf, in the same
 * way as pm_stats_json. */
size_t pm_stats_report(char *buf, size_t cap);

/* Byte counters of the whole process, read by pm_counters. */
struct pm_counters {
    size_t allocated; /* bytes of live blocks */
    size_t active;    /* bytes of the pages that hold live blocks */
    size_t mapped;    /* bytes mapped from the operating system */
    size_t resident;  /* mapped bytes less those given back while mapped */
};

/* Fills *out: O(1), takes no lock, allocates nothing, so it can be called on
 * every request. mapped is exact; active and resident are exact at page
 * granularity (resident counts pages in use or once used, so it is an upper
 * bound of the resident set poolmalloc causes); allocated counts each pool's
 * blocks as its thread last counted them on a slow path: never below the
 * bytes of live blocks, above them by the free blocks of each thread's
 * current pools and by blocks freed since a pool was last counted (the
 * README's "Cheap counters" section). pm_stats_json gives exact figures at a
 * higher cost.
 * Returns PM_OK, or PM_EINVAL when out is NULL. */
int pm_counters(struct pm_counters *out);

/* Return codes of pm_counters, pm_option_set and pm_option_get. */
#define PM_OK 0
#define PM_EUNKNOWN (-1) /* no option of that name */
#define PM_EVALUE (-2)   /* the value does not parse for that option */
#define PM_EFIXED (-3)   /* the option cannot change at run time */
#define PM_EINVAL (-4)   /* a NULL argument, or a name or value not UTF-8 */

/* Sets an option while the program runs. name is the environment variable
 * ("POOLMALLOC_PURGE_DELAY") or its lower-case suffix ("purge_delay"); value
 * is the text the variable would hold ("0"). The options that can change at
 * run time: PURGE_DELAY, SHOW_STATS, DEBUG_QUARANTINE, INVALID_FREE and THP
 * (the README's options table). Returns PM_OK or a negative code; a refused
 * call changes nothing. */
int pm_option_set(const char *name, const char *value);

/* Writes the text of an option's value now into buf, which has cap bytes,
 * NUL-terminated, as pm_stats_json does. Returns the length of the text
 * without the NUL, or a negative code (and writes nothing). buf may be NULL
 * when cap is 0. */
long pm_option_get(const char *name, char *buf, size_t cap);

/* 1 if p points into memory poolmalloc handed out (a live block, or a bad
 * pointer into its memory, which its free reports), 0 for memory of any
 * other allocator and for NULL. Never dereferences another allocator's
 * pointer. */
int pm_owns(const void *p);

/*
 * C23 free_sized and free_aligned_sized. poolmalloc exports both whatever the
 * C library; glibc declares them itself from 2.43 on (in C23 or GNU mode), so
 * they are declared here only when <stdlib.h> has not done so. With another
 * C library that declares them, define POOLMALLOC_LIBC_HAS_FREE_SIZED before
 * including this header.
 */
#if !defined(POOLMALLOC_LIBC_HAS_FREE_SIZED) && defined(__GLIBC__) && defined(__GLIBC_MINOR__)
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 43)
#if __GLIBC_USE(ISOC23)
#define POOLMALLOC_LIBC_HAS_FREE_SIZED 1
#endif
#endif
#endif

#ifndef POOLMALLOC_LIBC_HAS_FREE_SIZED
/* Frees p, a block of size bytes from malloc, calloc or realloc. */
void free_sized(void *p, size_t size);

/* Frees p, a block of size bytes from aligned_alloc with alignment align. */
void free_aligned_sized(void *p, size_t align, size_t size);
#endif

#ifdef __cplusplus
}
#endif

#endif /* POOLMALLOC_H */
