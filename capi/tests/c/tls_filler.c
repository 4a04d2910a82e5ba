/*
 * A shared library with initial-exec TLS: each copy that dlopen loads takes
 * room in the static TLS block (dlopen_host.c loads copies until it is full).
 */
static __thread char filler[64] __attribute__((tls_model("initial-exec")));

char *tls_filler_touch(void)
{
    filler[0] = 1;
    return filler;
}
