/*
 * The control API of poolmalloc.h: pm_counters, pm_option_set and
 * pm_option_get, and what each does with bad input; pm_stats_json with a
 * buffer that is too small. Linked with -lpoolmalloc, so it also checks
 * that the header's declarations match the library.
 */
#include "pmtest.h"

#define N 20000
#define SIZE 1000

/* Fills a buffer with a guard byte, to see what a call wrote. */
static void fill(char *buf, size_t len)
{
    memset(buf, '#', len);
}

static int untouched_from(const char *buf, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++)
        if (buf[i] != '#')
            return 0;
    return 1;
}

int main(void)
{
    pmt_require_poolmalloc();
    char buf[64];

    /* Counters: they move with a known pattern and nest. */
    CHECK(pm_counters(NULL) == PM_EINVAL, "pm_counters(NULL) accepted\n");
    struct pm_counters c0, c1, c2;
    REQUIRE(pm_counters(&c0) == PM_OK, "pm_counters failed\n");
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(SIZE);
        REQUIRE(blocks[i] != NULL, "malloc failed\n");
        memset(blocks[i], 0x5a, SIZE);
    }
    REQUIRE(pm_counters(&c1) == PM_OK, "pm_counters failed\n");
    size_t grew = c1.allocated - c0.allocated, want = (size_t)N * SIZE;
    /* One current pool of lag, and the class's rounding (at most 12.5 %). */
    CHECK(grew + (64 << 10) >= want && grew <= want + want / 8 + (64 << 10),
          "allocated grew by %zu for %zu bytes of blocks\n", grew, want);
    CHECK(c1.mapped >= c1.resident && c1.resident >= c1.active && c1.active + (64 << 10) >= c1.allocated,
          "counters do not nest: allocated %zu active %zu resident %zu mapped %zu\n", c1.allocated, c1.active,
          c1.resident, c1.mapped);
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    pm_trim();
    REQUIRE(pm_counters(&c2) == PM_OK, "pm_counters failed\n");
    CHECK(c2.allocated <= c1.allocated - want + (64 << 10) && c2.active < c1.active,
          "after the frees: allocated %zu (was %zu), active %zu (was %zu)\n", c2.allocated, c1.allocated, c2.active,
          c1.active);

    /* Reading options, with each spelling of a name. */
    fill(buf, sizeof buf);
    CHECK(pm_option_get("POOLMALLOC_PURGE_DELAY", buf, sizeof buf) == 3 && strcmp(buf, "100") == 0,
          "purge delay reads %s\n", buf);
    CHECK(pm_option_get("purge_delay", NULL, 0) == 3, "the length alone is not returned\n");
    fill(buf, sizeof buf);
    CHECK(pm_option_get("invalid_free", buf, 3) == 5 && strcmp(buf, "ab") == 0 && untouched_from(buf, 3, sizeof buf),
          "a short buffer gets a NUL-terminated prefix and nothing past it\n");
    fill(buf, sizeof buf);
    CHECK(pm_option_get("no_such_option", buf, sizeof buf) == PM_EUNKNOWN && untouched_from(buf, 0, sizeof buf),
          "an unknown name is refused and nothing written\n");
    CHECK(pm_option_get(NULL, buf, sizeof buf) == PM_EINVAL, "a NULL name is refused\n");
    CHECK(pm_option_get("purge_delay", NULL, 8) == PM_EINVAL, "a NULL buffer with room is refused\n");

    /* Setting them: what takes, and what is refused and changes nothing. */
    CHECK(pm_option_set("purge_delay", "0") == PM_OK, "purge_delay=0 refused\n");
    pm_option_get("purge_delay", buf, sizeof buf);
    CHECK(strcmp(buf, "0") == 0, "purge delay reads %s after setting 0\n", buf);
    CHECK(pm_option_set("purge_delay", "later") == PM_EVALUE, "a bad number accepted\n");
    CHECK(pm_option_set("POOLMALLOC_INVALID_FREE", "explode") == PM_EVALUE, "a bad word accepted\n");
    CHECK(pm_option_set("threads", "locked") == PM_EFIXED, "the threading mode changed at run time\n");
    CHECK(pm_option_set("no_such_option", "1") == PM_EUNKNOWN, "an unknown name accepted\n");
    CHECK(pm_option_set(NULL, "1") == PM_EINVAL && pm_option_set("purge_delay", NULL) == PM_EINVAL,
          "a NULL argument accepted\n");
    CHECK(pm_option_set("purge_delay", "\xff") == PM_EINVAL, "a value that is not UTF-8 accepted\n");
    pm_option_get("purge_delay", buf, sizeof buf);
    CHECK(strcmp(buf, "0") == 0, "a refused call changed the purge delay to %s\n", buf);
    pm_option_get("threads", buf, sizeof buf);
    CHECK(strcmp(buf, "perthread") == 0, "a refused call changed the threading mode to %s\n", buf);
    pm_option_get("invalid_free", buf, sizeof buf);
    CHECK(strcmp(buf, "abort") == 0, "a refused call changed invalid_free to %s\n", buf);

    /* With the purge delay at 0, freed pools go back at once. */
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(SIZE);
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    struct pm_counters c3;
    pm_counters(&c3);
    CHECK(c3.resident + (1 << 20) < c1.resident, "with no purge delay, resident %zu (was %zu at the peak)\n",
          c3.resident, c1.resident);

    /* pm_stats_json with a short buffer: the whole length, nothing past cap. */
    char json[32];
    fill(json, sizeof json);
    size_t need = pm_stats_json(json, 16);
    CHECK(need > 100 && strlen(json) == 15 && untouched_from(json, 16, sizeof json),
          "pm_stats_json(16) returned %zu and wrote past its buffer\n", need);

    return pmt_failures != 0;
}
