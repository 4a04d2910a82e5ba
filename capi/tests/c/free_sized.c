/*
 * The C23 sized deallocation functions and poolmalloc's own extras, called
 * directly through poolmalloc.h: this program is linked with -lpoolmalloc,
 * so it also checks that the header's declarations match the library.
 */
#include "pmtest.h"

#include <malloc.h>
#include <unistd.h>

/* Runs pm_stats_print with stderr sent to a file; returns the report. */
static char *capture_stats(void)
{
    static char buf[1 << 16];
    FILE *tmp = tmpfile();
    REQUIRE(tmp != NULL, "tmpfile failed\n");
    fflush(stderr);
    int saved = dup(2);
    REQUIRE(saved >= 0 && dup2(fileno(tmp), 2) == 2, "redirecting stderr failed\n");
    pm_stats_print();
    REQUIRE(dup2(saved, 2) == 2, "restoring stderr failed\n");
    close(saved);
    rewind(tmp);
    size_t len = fread(buf, 1, sizeof buf - 1, tmp);
    buf[len] = '\0';
    fclose(tmp);
    return buf;
}

int main(void)
{
    pmt_require_poolmalloc();
    Dl_info info;
    REQUIRE(dladdr((void *)pmt_sym("free_sized"), &info) != 0 && info.dli_fname != NULL &&
                strstr(info.dli_fname, "libpoolmalloc") != NULL,
            "free_sized is not poolmalloc's\n");

    /* free_sized with the exact size, for pool blocks and large spans. */
    for (size_t n = 1; n <= ((size_t)4 << 20); n = n * 2 + 3) {
        for (int k = 0; k < 4; k++) {
            unsigned char *p = malloc(n);
            REQUIRE(p != NULL, "malloc(%zu) failed\n", n);
            memset(p, 0x11, n);
            errno = 31337;
            free_sized(p, n);
            CHECK(errno == 31337, "free_sized(%zu) changed errno to %d\n", n, errno);
        }
        unsigned char *c = calloc(n, 1);
        REQUIRE(c != NULL, "calloc(%zu) failed\n", n);
        free_sized(c, n);
        unsigned char *r = realloc(NULL, n);
        REQUIRE(r != NULL, "realloc(NULL, %zu) failed\n", n);
        r = realloc(r, n + 100);
        REQUIRE(r != NULL, "realloc(%zu) failed\n", n + 100);
        free_sized(r, n + 100);
    }
    free_sized(NULL, 0);
    free_sized(NULL, 100);

    /* free_aligned_sized with the alignment and size given to
     * aligned_alloc, for every alignment up to 1 MiB. */
    for (size_t align = 1; align <= ((size_t)1 << 20); align *= 2) {
        static const size_t sizes[] = {1, 16, 100, 4096, 40000, 300000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            unsigned char *p = aligned_alloc(align, n);
            REQUIRE(p != NULL, "aligned_alloc(%zu, %zu) failed\n", align, n);
            CHECK(((uintptr_t)p & (align - 1)) == 0, "aligned_alloc(%zu, %zu) misaligned\n", align, n);
            memset(p, 0x22, n);
            errno = 2718;
            free_aligned_sized(p, align, n);
            CHECK(errno == 2718, "free_aligned_sized(%zu, %zu) changed errno to %d\n", align, n,
                  errno);
        }
    }
    free_aligned_sized(NULL, 64, 0);

    /* The extras. */
    const char *v = pm_version();
    REQUIRE(v != NULL, "pm_version() returned NULL\n");
    CHECK(strlen(v) >= 5 && strchr(v, '.') != NULL, "pm_version() = \"%s\" is not a version\n", v);

    void *keep = malloc(1000);
    REQUIRE(keep != NULL, "malloc(1000) failed\n");
    pm_trim();
    CHECK(malloc_trim(0) == 1, "malloc_trim(0) did not return 1\n");
    memset(keep, 0x33, 1000);
    free(keep);

    char *report = capture_stats();
    char title[64];
    snprintf(title, sizeof title, "poolmalloc %s statistics", v);
    CHECK(strstr(report, title) != NULL, "pm_stats_print's report lacks \"%s\"\n", title);
    CHECK(strstr(report, "(matches the parts)") != NULL,
          "pm_stats_print's report does not say its total matches the parts\n");

    /* The report and the JSON into a buffer: the length is the whole
     * text's, a short buffer gets a NUL-terminated prefix. */
    char small[16];
    size_t need = pm_stats_report(small, sizeof small);
    CHECK(need > 1000 && strlen(small) == sizeof small - 1 && strncmp(small, "poolmalloc ", 11) == 0,
          "pm_stats_report into 16 bytes: length %zu, prefix \"%s\"\n", need, small);
    /* (No allocation between the calls: the figures would change.) */
    static char text[1 << 16];
    size_t again = pm_stats_report(text, sizeof text);
    CHECK(again == need && strlen(text) == need && strstr(text, title) != NULL,
          "pm_stats_report: %zu bytes then %zu, strlen %zu\n", need, again, strlen(text));
    size_t jlen = pm_stats_json(NULL, 0);
    CHECK(jlen > 100, "pm_stats_json(NULL, 0) gave no length\n");
    static char json[1 << 16];
    CHECK(pm_stats_json(json, sizeof json) == jlen && strlen(json) == jlen && json[0] == '{' &&
              json[jlen - 1] == '}' && strstr(json, "\"bytes_mapped\":") != NULL &&
              strstr(json, "\"mapped_parts_match\":true") != NULL,
          "pm_stats_json: %zu bytes: %.80s...\n", jlen, json);

    /* pm_owns: our blocks (small, medium, huge), not the stack, a static or
     * NULL. */
    static int a_static;
    int on_stack = 0;
    size_t owned_sizes[] = {24, 100000, (size_t)3 << 20};
    for (size_t i = 0; i < 3; i++) {
        void *b = malloc(owned_sizes[i]);
        REQUIRE(b != NULL, "malloc(%zu) failed\n", owned_sizes[i]);
        CHECK(pm_owns(b) == 1, "pm_owns(malloc(%zu)) is not 1\n", owned_sizes[i]);
        free(b);
    }
    CHECK(pm_owns(&a_static) == 0 && pm_owns(&on_stack) == 0 && pm_owns(NULL) == 0,
          "pm_owns claims a static, the stack or NULL\n");

    /* The allocator still works after all that. */
    void *p = malloc(77);
    CHECK(p != NULL, "malloc after pm_trim failed\n");
    free(p);

    return pmt_finish("free_sized");
}
