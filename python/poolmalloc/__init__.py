"""poolmalloc for CPython.

Two ways to run Python code on poolmalloc:

* ``python -m poolmalloc SCRIPT [ARGS...]`` (or ``-m MODULE``, ``-c CODE``)
  runs a program with the bundled ``libpoolmalloc.so`` preloaded and
  ``PYTHONMALLOC=malloc``: every allocation of the interpreter goes to
  poolmalloc. The console script ``poolmalloc-python`` does the same.
* ``poolmalloc.install()`` switches the running interpreter's object and
  memory domains onto poolmalloc (PEP 445), without a preload. Setting
  ``POOLMALLOC_PYTHON=1`` in the environment does it at start-up.

In both modes :func:`active`, :func:`stats`, :func:`report` and :func:`trim`
describe and drive the allocator the interpreter is using.
"""

# Only the extension and `sys`: importing the package (as the start-up hook
# does) must cost next to nothing. Other modules are imported where needed.
import sys

# Two builds of the extension: `_native_ie` keeps the allocator's heap slot
# in initial-exec TLS (one load per allocation), which dlopen can place only
# while the static TLS block has room; `_native` uses general-dynamic TLS,
# which always loads. The first that loads is used.
try:
    from . import _native_ie as _native
except ImportError:
    from . import _native

__all__ = ["active", "install", "report", "stats", "trim", "__version__"]

__version__ = _native.version()

_DEBUG_ALLOCATORS = ("debug", "pymalloc_debug", "malloc_debug", "mimalloc_debug")


def active():
    """Whether the interpreter allocates its objects through poolmalloc.

    Answered by experiment: a new object is made and poolmalloc's ownership
    map is asked whether its memory is poolmalloc's.
    """
    probe = object()
    return _native.owns(id(probe))


def _free_threaded():
    """Whether this is a free-threaded CPython build (its ABI flags say so)."""
    return "t" in getattr(sys, "abiflags", "")


def _tracing():
    """Whether tracemalloc is tracing (asked of its C module, which is cheap
    to import)."""
    import _tracemalloc

    return _tracemalloc.is_tracing()


def _debug_hooks():
    """Whether CPython's debug hooks are on the memory allocators."""
    import os

    return sys.flags.dev_mode or os.environ.get("PYTHONMALLOC", "") in _DEBUG_ALLOCATORS


def install():
    """Switch the interpreter's object and memory domains onto poolmalloc.

    Blocks allocated before the switch are still freed and resized by the
    allocator that made them: poolmalloc's ownership map tells its own
    blocks apart, and the previous allocator stays underneath. Returns
    ``True`` if this call made the switch, ``False`` if the interpreter
    already allocated through poolmalloc (an earlier call, or the launcher's
    preload); calling it twice is safe.

    Raises ``RuntimeError``, changing nothing, on an interpreter it cannot
    support: another implementation than CPython, a free-threaded build, or
    an allocator state it cannot wrap (tracemalloc tracing).
    """
    if sys.implementation.name != "cpython":
        raise RuntimeError("poolmalloc.install() needs CPython, not %s" % sys.implementation.name)
    if _free_threaded():
        raise RuntimeError(
            "poolmalloc.install() does not support free-threaded CPython builds; "
            "use the launcher (python -m poolmalloc) instead"
        )
    if _native.installed() or active():
        return False
    if _tracing():
        raise RuntimeError(
            "poolmalloc.install(): tracemalloc is tracing, and its hooks sit on the allocators "
            "that install() would replace; call tracemalloc.stop() first"
        )
    if _debug_hooks():
        import warnings

        warnings.warn(
            "poolmalloc.install(): CPython's debug memory hooks are active (-X dev or "
            "PYTHONMALLOC=...debug); blocks allocated from now on come from poolmalloc "
            "without those checks (blocks allocated before keep them)",
            RuntimeWarning,
            stacklevel=2,
        )
    return _native.install()


def stats():
    """The allocator's statistics as a dict, with the keys of the JSON report
    (``poolmalloc bench --json``, ``pm_stats_json``): ``bytes_mapped``,
    ``bytes_in_blocks``, ``arenas_current``, ``pools_used``, ``classes`` (one
    entry per size class in use) and the rest."""
    import json

    return json.loads(_native.stats_json())


def report():
    """The statistics report as text, laid out like ``sys._debugmallocstats()``."""
    return _native.report()


def trim():
    """Return free memory to the operating system now."""
    _native.trim()


def _autoinstall():
    """Start-up hook of the package's ``.pth`` file (``POOLMALLOC_PYTHON=1``):
    installs, and reports a refusal as a warning rather than stopping the
    interpreter."""
    try:
        install()
    except RuntimeError as e:
        import warnings

        warnings.warn(str(e), RuntimeWarning, stacklevel=2)
