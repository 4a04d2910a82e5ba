"""Run a Python program on poolmalloc, as ``python -m cProfile`` runs one
under the profiler.

``python -m poolmalloc [--stats] SCRIPT|-m MODULE|-c CODE [ARGS...]``

The launcher re-executes the interpreter (``execve``: same process, so
standard input, signals and the exit status are the program's own) with the
bundled ``libpoolmalloc.so`` added to ``LD_PRELOAD`` and
``PYTHONMALLOC=malloc``, the interpreter's own options (``-X``, ``-W``,
``-O``...) kept, and everything after the launcher's options handed to the
interpreter unchanged: ``sys.argv``, and the errors and exit status for a
missing script or module, are exactly what ``python`` gives.
"""

import glob
import os
import subprocess
import sys

USAGE = """\
usage: python -m poolmalloc [--stats] (SCRIPT | -m MODULE | -c CODE) [ARGS...]

Runs a Python program with poolmalloc as the interpreter's allocator.

options:
  --stats     print poolmalloc's statistics report to stderr at exit
  --version   print poolmalloc's version and exit
  -h, --help  show this help and exit
"""


def library_path():
    """The bundled ``libpoolmalloc.so``."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = sorted(glob.glob(os.path.join(here, "libpoolmalloc*.so")))
    if not found:
        raise FileNotFoundError("libpoolmalloc.so is missing from %s: reinstall poolmalloc" % here)
    return found[0]


def preload_value(existing, library):
    """``LD_PRELOAD`` with ``library`` added after what it already names."""
    entries = existing.replace(":", " ").split() if existing else []
    if library not in entries:
        entries.append(library)
    return " ".join(entries)


def command(args, environ, show_stats=False):
    """The argument vector and environment that run ``args`` (what follows
    the launcher's options) on poolmalloc."""
    argv0 = sys.orig_argv[0] if getattr(sys, "orig_argv", None) else sys.executable
    # The interpreter's options, as the running interpreter was given them.
    flags = subprocess._args_from_interpreter_flags()
    env = dict(environ)
    env["LD_PRELOAD"] = preload_value(env.get("LD_PRELOAD", ""), library_path())
    # Keep CPython's debug hooks if they were asked for.
    debug = env.get("PYTHONMALLOC", "").endswith("debug")
    env["PYTHONMALLOC"] = "malloc_debug" if debug else "malloc"
    if show_stats:
        env["POOLMALLOC_SHOW_STATS"] = "1"
    return [argv0] + flags + list(args), env


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    show_stats = False
    while args:
        if args[0] == "--stats":
            show_stats = True
        elif args[0] in ("-h", "--help"):
            sys.stdout.write(USAGE)
            sys.exit(0)
        elif args[0] == "--version":
            from . import __version__

            print("poolmalloc", __version__)
            sys.exit(0)
        elif args[0] == "--":
            args.pop(0)
            break
        else:
            break
        args.pop(0)
    if not args:
        sys.stderr.write(USAGE)
        sys.exit(2)
    argv, env = command(args, os.environ, show_stats)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
