"""The launcher: ``python -m poolmalloc`` and ``poolmalloc-python``."""

import os
import shutil
import signal
import sys
import sysconfig

import pytest

from conftest import run_python

import poolmalloc
from poolmalloc import _launcher

SHOW = "import sys, os, poolmalloc; print(repr(sys.argv)); print(poolmalloc.active()); print(os.environ['PYTHONMALLOC'])"


def test_script_arguments_and_allocator(tmp_path):
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    r = run_python(["-m", "poolmalloc", str(script), "a", "--stats", "-c"])
    assert r.returncode == 0, r.stderr
    argv, active, pymalloc = r.stdout.splitlines()
    assert argv == repr([str(script), "a", "--stats", "-c"])
    assert active == "True"
    assert pymalloc == "malloc"


def test_module_and_code_and_stdin():
    r = run_python(["-m", "poolmalloc", "-m", "json.tool"], input='{"b": [1, 2]}')
    assert r.returncode == 0, r.stderr
    assert '"b": [' in r.stdout
    r = run_python(["-m", "poolmalloc", "-c", SHOW, "x", "y"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [repr(["-c", "x", "y"]), "True"]
    r = run_python(["-m", "poolmalloc", "-c", "import sys; print(sys.stdin.read().upper())"], input="hello")
    assert r.stdout == "HELLO\n"


def test_exit_status_and_signals():
    r = run_python(["-m", "poolmalloc", "-c", "import sys; sys.exit(7)"])
    assert r.returncode == 7
    r = run_python(["-m", "poolmalloc", "-c", "raise ValueError('boom')"])
    assert r.returncode == 1 and "ValueError: boom" in r.stderr
    r = run_python(["-m", "poolmalloc", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
    assert r.returncode == -signal.SIGTERM


def test_errors_match_the_interpreter(tmp_path):
    """A missing script or module, or a missing argument, fails exactly as
    ``python`` fails."""
    missing = str(tmp_path / "missing.py")
    for args in ([missing], ["-m", "no_such_module_here"], ["-m"], ["-c"]):
        plain = run_python(args)
        launched = run_python(["-m", "poolmalloc"] + args)
        assert plain.returncode != 0
        assert (launched.returncode, launched.stdout, launched.stderr) == (plain.returncode, plain.stdout, plain.stderr)


def test_usage():
    r = run_python(["-m", "poolmalloc"])
    assert r.returncode == 2 and r.stderr.startswith("usage: python -m poolmalloc")
    r = run_python(["-m", "poolmalloc", "--help"])
    assert r.returncode == 0 and "--stats" in r.stdout
    r = run_python(["-m", "poolmalloc", "--version"])
    assert r.returncode == 0 and r.stdout == "poolmalloc %s\n" % poolmalloc.__version__


def test_stats_report_at_exit():
    r = run_python(["-m", "poolmalloc", "--stats", "-c", "x = [str(i) for i in range(10000)]"])
    assert r.returncode == 0
    assert "poolmalloc %s statistics" % poolmalloc.__version__ in r.stderr
    assert "(matches the parts)" in r.stderr


def test_interpreter_options_are_kept():
    r = run_python(["-X", "utf8", "-O", "-m", "poolmalloc", "-c", "import sys; print(sys.flags.utf8_mode, sys.flags.optimize)"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1 1\n"


def test_preload_is_added_not_replaced():
    lib = _launcher.library_path()
    assert _launcher.preload_value("", lib) == lib
    assert _launcher.preload_value("libm.so.6", lib) == "libm.so.6 " + lib
    assert _launcher.preload_value("a.so:" + lib, lib) == "a.so " + lib
    code = "import os; print(os.environ['LD_PRELOAD'])"
    r = run_python(["-m", "poolmalloc", "-c", code], env={"LD_PRELOAD": "libm.so.6"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["libm.so.6", lib]


def test_debug_allocator_request_is_kept():
    r = run_python(["-m", "poolmalloc", "-c", SHOW], env={"PYTHONMALLOC": "debug"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == ["True", "malloc_debug"]


def test_console_script(tmp_path):
    scripts = sysconfig.get_path("scripts")
    exe = shutil.which("poolmalloc-python", path=scripts) or shutil.which("poolmalloc-python")
    if exe is None:
        pytest.skip("poolmalloc-python is not on this interpreter's scripts path")
    script = tmp_path / "show.py"
    script.write_text(SHOW)
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC")}
    r = subprocess.run([exe, str(script), "z"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [repr([str(script), "z"]), "True", "malloc"]
