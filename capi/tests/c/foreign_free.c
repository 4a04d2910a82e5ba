/*
 * free of memory poolmalloc does not own: a page from mmap. The program
 * prints the page's address on stdout first; poolmalloc must then report
 * "poolmalloc: invalid free of 0x<address> (not allocated by poolmalloc)"
 * on stderr and abort (by default). With POOLMALLOC_INVALID_FREE=warn or
 * ignore it carries on: the program then frees a global and a stack
 * address too, and exits 0.
 */
#include "pmtest.h"

#include <sys/mman.h>
#include <unistd.h>

static char global_buffer[64];

int main(void)
{
    pmt_require_poolmalloc();

    long page = sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap failed: %s\n", strerror(errno));
    memset(p, 0x5c, (size_t)page);
    printf("mapped %p\n", p);
    fflush(stdout);

    free(pmt_launder(p));

    /* Only reached when invalid frees are not fatal. */
    printf("survived\n");
    fflush(stdout);
    char on_stack[32];
    free(pmt_launder(global_buffer));
    free(pmt_launder(on_stack));
    CHECK(((unsigned char *)p)[100] == 0x5c, "the foreign page was written to\n");
    munmap(p, (size_t)page);
    void *q = malloc(100);
    CHECK(q != NULL, "malloc after an ignored invalid free failed\n");
    free(q);
    return pmt_finish("foreign_free");
}
