/*
 * A program built the way a C user builds against an installed poolmalloc:
 * with the flags of `pkg-config --cflags --libs poolmalloc` (the shared
 * library) or `poolmalloc-static` (the static one), and run with nothing
 * preloaded. It checks that poolmalloc is the malloc it calls, and, for
 * the static build, that malloc lives in the program itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poolmalloc.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    int failures = 0;
    const char *want = argc > 1 ? argv[1] : "shared";
    char *p = malloc(100);
    if (p == NULL || !pm_owns(p)) {
        fprintf(stderr, "FAIL: malloc(100) = %p is not poolmalloc's\n", (void *)p);
        failures++;
    }
    struct pm_counters c;
    if (pm_counters(&c) != PM_OK || c.mapped == 0 || c.allocated == 0) {
        fprintf(stderr, "FAIL: pm_counters says nothing is allocated\n");
        failures++;
    }
    free(p);
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    if (sym == NULL || dladdr(sym, &info) == 0 || info.dli_fname == NULL) {
        fprintf(stderr, "FAIL: cannot find where malloc is\n");
        return 1;
    }
    int in_lib = strstr(info.dli_fname, "/install/lib/libpoolmalloc.so") != NULL;
    int in_program = strcmp(want, "static") == 0 && strstr(info.dli_fname, "installed") != NULL;
    if (!(strcmp(want, "shared") == 0 ? in_lib : in_program)) {
        fprintf(stderr, "FAIL: %s build: malloc is in %s\n", want, info.dli_fname);
        failures++;
    }
    printf("poolmalloc %s (%s): malloc from %s\n", pm_version(), want, info.dli_fname);
    return failures != 0;
}
