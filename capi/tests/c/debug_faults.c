/*
 * One memory bug per run, selected by argv[1], for debug mode
 * (POOLMALLOC_DEBUG=1). The program prints the address of the block it is
 * about to misuse ("block 0x..."), then commits the bug; poolmalloc must
 * report it and abort. Reaching the end is a failure.
 */
#include "pmtest.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

/* free_sized through the symbol the preloaded library exports, so the
 * program needs no link-time dependency on it. */
static void call_free_sized(void *p, size_t n)
{
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    REQUIRE(fs != NULL, "free_sized not found\n");
    fs(p, n);
}

static void say(const void *p)
{
    printf("block %p\n", p);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    pmt_require_poolmalloc();
    REQUIRE(argc == 2 || argc == 3, "usage: debug_faults CASE [small|medium|huge]\n");
    const char *c = argv[1];
    /* The block size: small by default, else from a pool of a medium class,
     * or a huge block of its own. */
    size_t n = 24;
    if (argc == 3 && strcmp(argv[2], "medium") == 0)
        n = 100000;
    else if (argc == 3 && strcmp(argv[2], "huge") == 0)
        n = 3 << 20;
    /* Laundered so the compiler cannot see the block's bounds. */
    unsigned char *p = pmt_launder(malloc(n));
    REQUIRE(p != NULL, "malloc failed\n");
    /* New memory carries the clean pattern. */
    CHECK(p[0] == 0xCD && p[n - 1] == 0xCD, "new block not filled with 0xCD\n");

    if (strcmp(c, "overflow1") == 0) {
        say(p);
        p[n] = 'A';
        free(pmt_launder(p));
    } else if (strcmp(c, "overflow8") == 0) {
        say(p);
        memset(p + n, 'A', 8);
        free(pmt_launder(p));
    } else if (strcmp(c, "overflow32") == 0) {
        say(p);
        memset(p + n, 'A', 32);
        free(pmt_launder(p));
    } else if (strcmp(c, "underflow1") == 0) {
        say(p);
        p[-1] = 'A';
        free(pmt_launder(p));
    } else if (strcmp(c, "underflow32") == 0) {
        say(p);
        memset(p - 32, 'A', 32);
        free(pmt_launder(p));
    } else if (strcmp(c, "zero_write") == 0) {
        unsigned char *z = pmt_launder(malloc(0));
        REQUIRE(z != NULL, "malloc(0) failed\n");
        say(z);
        z[0] = 'A';
        free(pmt_launder(z));
    } else if (strcmp(c, "double_interleaved") == 0) {
        pmt_double_interleaved(p, n);
    } else if (strcmp(c, "double_delayed") == 0) {
        /* Needs a quarantine longer than the 100 blocks in between. */
        pmt_double_delayed(p, n);
    } else if (strcmp(c, "use_after_free_reuse") == 0) {
        /* No quarantine: the next malloc of the size takes the block back. */
        say(p);
        free(pmt_launder(p));
        p[5] = 'X';
        free(pmt_launder(malloc(n)));
    } else if (strcmp(c, "double") == 0) {
        say(p);
        free(pmt_launder(p));
        free(pmt_launder(p));
    } else if (strcmp(c, "mmap") == 0) {
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(m != MAP_FAILED, "mmap failed\n");
        say(m);
        free(pmt_launder(m));
    } else if (strcmp(c, "middle") == 0) {
        say(p + 16);
        free(pmt_launder(p + 16));
    } else if (strcmp(c, "free_sized") == 0) {
        say(p);
        call_free_sized(pmt_launder(p), 23);
    } else if (strcmp(c, "use_after_free") == 0) {
        /* Needs POOLMALLOC_DEBUG_QUARANTINE >= 1 and < 64. */
        say(p);
        free(pmt_launder(p));
        CHECK(p[5] == 0xDD, "freed block not filled with 0xDD\n");
        p[5] = 'X';
        for (int i = 0; i < 64; i++)
            free(pmt_launder(malloc(24)));
    } else if (strcmp(c, "clean") == 0) {
        /* No bug: every check passes. */
        unsigned char *q = calloc(10, 10);
        CHECK(q[0] == 0 && q[99] == 0, "calloc in debug mode is not zeroed\n");
        q = realloc(q, 1000);
        CHECK(q[99] == 0 && q[100] == 0xCD, "realloc kept data and filled the rest\n");
        CHECK(malloc_usable_size(q) == 1000, "usable size is the requested size\n");
        free(q);
        call_free_sized(p, 24);
        void *a = aligned_alloc(4096, 100);
        CHECK(((uintptr_t)a & 4095) == 0, "aligned debug block\n");
        free(a);
        void *big = malloc(3 << 20);
        free(big);
        return pmt_finish("debug_faults clean");
    } else {
        REQUIRE(0, "unknown case %s\n", c);
    }
    printf("survived\n");
    return 1;
}
