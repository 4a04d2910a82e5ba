"""In-process mode (``poolmalloc.install()``) and introspection, each case
in a fresh interpreter: the switch cannot be undone."""

import json
import os
import shutil
import subprocess
import textwrap

import pytest

from conftest import run_python

import poolmalloc

# Builds and drops large dicts, lists and strings, checks every result, and
# prints the figures `stats()` gave along the way as JSON.
WORKLOAD = """
import gc, json, sys, poolmalloc
def live():
    gc.collect()
    return poolmalloc.stats()["bytes_in_blocks"]
figures = {"active": poolmalloc.active()}
base = live()
d = {i: (str(i) * 3, float(i)) for i in range(200_000)}
l = [[j, str(j)] for j in range(100_000)]
s = "-".join(str(i) for i in range(100_000))
assert len(d) == 200_000 and d[12345] == ("123451234512345", 12345.0)
assert l[99_999] == [99_999, "99999"] and sum(x[0] for x in l) == 4_999_950_000
assert s.count("-") == 99_999 and s.endswith("-99999")
full = live()
del d, l, s
emptied = live()
figures.update(base=base, full=full, emptied=emptied, report=poolmalloc.report().splitlines()[0])
print(json.dumps(figures))
"""


def check_figures(out):
    f = json.loads(out.strip().splitlines()[-1])
    assert f["active"] is True
    # The objects lived in poolmalloc's blocks (more than 30 MB of them),
    # and went back when dropped.
    assert f["full"] - f["base"] > 30_000_000, f
    assert f["emptied"] - f["base"] < (f["full"] - f["base"]) / 10, f
    assert f["report"] == "poolmalloc %s statistics" % poolmalloc.__version__


def test_workload_under_the_launcher():
    r = run_python(["-m", "poolmalloc", "-c", WORKLOAD])
    assert r.returncode == 0, r.stderr
    check_figures(r.stdout)


def test_workload_after_install():
    r = run_python([], "import poolmalloc\nassert poolmalloc.install() is True\n" + WORKLOAD)
    assert r.returncode == 0, r.stderr
    check_figures(r.stdout)


def test_install_wraps_the_blocks_made_before():
    """Objects made before the switch are freed and resized by pymalloc
    after it; the new ones are poolmalloc's; everything frees cleanly."""
    code = """
    import gc, poolmalloc
    assert not poolmalloc.active()
    old = [str(i) * 5 for i in range(300_000)]
    old_lists = [[i] for i in range(50_000)]
    old_dict = {i: i for i in range(100_000)}
    assert poolmalloc.install() is True
    assert poolmalloc.install() is False
    assert poolmalloc.active()
    n = poolmalloc._native
    assert not n.owns(id(old[-1])) and not n.owns(id(old_lists[0]))
    new = [str(i) * 5 for i in range(300_000)]
    assert n.owns(id(new[-1]))
    # Grow the old containers (realloc of pymalloc's blocks) and the new.
    for x in old_lists:
        x.extend(range(20))
    for i in range(100_000, 300_000):
        old_dict[i] = i
    assert sum(len(x) for x in old_lists) == 50_000 * 21 and len(old_dict) == 300_000
    assert old == new
    before = poolmalloc.stats()["bytes_in_blocks"]
    del old, old_lists, old_dict, new
    gc.collect()
    after = poolmalloc.stats()["bytes_in_blocks"]
    assert after < before / 2, (before, after)
    print("ok")
    """
    r = run_python([], code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"


def test_threads_after_install():
    """Threads allocate, pass objects to each other (freed by another thread
    than the one that made them) and finish, with results checked."""
    code = """
    import queue, threading, poolmalloc
    poolmalloc.install()
    q = queue.Queue(maxsize=64)
    totals = []
    def producer(k):
        for i in range(20_000):
            q.put({"k": k, "i": i, "s": str(i) * 4})
        q.put(None)
    def consumer():
        done, total = 0, 0
        while done < 4:
            item = q.get()
            if item is None:
                done += 1
                continue
            assert item["s"] == str(item["i"]) * 4
            total += item["i"]
        totals.append(total)
    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=consumer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert totals == [4 * sum(range(20_000))], totals
    assert poolmalloc.stats()["remote_frees"] > 0
    print("ok")
    """
    r = run_python([], code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"


@pytest.mark.parametrize("args,env", [(["-X", "dev"], {}), ([], {"PYTHONMALLOC": "debug"})])
def test_install_with_debug_hooks(args, env):
    code = """
    import warnings, poolmalloc
    before = [str(i) for i in range(10_000)]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert poolmalloc.install() is True
    assert any("debug memory hooks" in str(x.message) for x in w), [str(x.message) for x in w]
    assert poolmalloc.active()
    after = {i: str(i) for i in range(50_000)}
    del before, after
    print("ok")
    """
    r = run_python(args, code, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"


def test_refusals_change_nothing():
    code = """
    import tracemalloc, poolmalloc
    tracemalloc.start()
    try:
        poolmalloc.install()
    except RuntimeError as e:
        assert "tracemalloc" in str(e)
    else:
        raise AssertionError("installed under tracemalloc")
    tracemalloc.stop()
    assert not poolmalloc.active()
    real = poolmalloc._free_threaded
    poolmalloc._free_threaded = lambda: True
    try:
        poolmalloc.install()
    except RuntimeError as e:
        assert "free-threaded" in str(e)
    else:
        raise AssertionError("installed on a free-threaded build")
    poolmalloc._free_threaded = real
    assert not poolmalloc.active() and not poolmalloc._native.installed()
    assert poolmalloc.install() is True and poolmalloc.active()
    print("ok")
    """
    r = run_python([], code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"


def test_startup_hook():
    code = "import poolmalloc; print(poolmalloc.active(), poolmalloc._native.installed())"
    r = run_python([], code, env={"POOLMALLOC_PYTHON": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "True True\n"
    r = run_python([], code)
    assert r.stdout == "False False\n"


def test_stats_and_trim():
    s = poolmalloc.stats()
    for key in ("bytes_mapped", "bytes_in_blocks", "arenas_current", "pools_used", "classes", "mapped_parts_match"):
        assert key in s
    assert s["mapped_parts_match"] is True
    poolmalloc.trim()
    assert poolmalloc.report().startswith("poolmalloc %s statistics" % poolmalloc.__version__)


def test_fallback_extension_needs_no_static_tls():
    """The fallback build of the extension loads with dlopen whatever room
    is left: it must not ask for room in the static TLS block (no STATIC_TLS
    flag, no initial-exec TLS relocation)."""
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf is not installed")
    import importlib.util

    path = importlib.util.find_spec("poolmalloc._native").origin
    dynamic = subprocess.run([readelf, "-d", path], capture_output=True, text=True, check=True).stdout
    assert "STATIC_TLS" not in dynamic, dynamic
    relocs = subprocess.run([readelf, "-r", path], capture_output=True, text=True, check=True).stdout
    assert "TPOFF" not in relocs, [line for line in relocs.splitlines() if "TPOFF" in line]


def test_install_over_a_preloaded_library():
    """With libpoolmalloc.so preloaded but pymalloc still serving objects,
    install() moves the domains onto the preloaded library (no second
    copy): stats() and owns() then speak of that library."""
    from poolmalloc import _launcher

    code = """
    import poolmalloc
    assert poolmalloc._native.preloaded_library()
    assert not poolmalloc.active()
    keep = [str(i) * 4 for i in range(100_000)]
    assert poolmalloc.install() is True and poolmalloc.active()
    before = poolmalloc.stats()["bytes_in_blocks"]
    new = [str(i) * 4 for i in range(100_000)]
    assert new == keep
    assert poolmalloc.stats()["bytes_in_blocks"] - before > 3_000_000
    del keep, new
    print("ok")
    """
    r = run_python([], code, env={"LD_PRELOAD": _launcher.library_path()})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"


def test_extension_falls_back_when_static_tls_is_full(tmp_path):
    """With the static TLS block filled (by libraries with initial-exec TLS,
    loaded until one fails), the package loads its general-dynamic build and
    works; otherwise it loads the initial-exec one."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    source = tmp_path / "filler.c"
    source.write_text(
        'static __thread char filler[64] __attribute__((tls_model("initial-exec")));\n'
        "char *touch(void) { filler[0] = 1; return filler; }\n"
    )
    first = tmp_path / "filler0.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(first), str(source)], check=True)
    for i in range(1, 400):
        shutil.copy(first, tmp_path / ("filler%d.so" % i))
    code = """
    import ctypes, sys
    loaded = 0
    try:
        for i in range(400):
            ctypes.CDLL(sys.argv[1] + "/filler%d.so" % i)
            loaded += 1
    except OSError as e:
        assert "static TLS" in str(e), e
    else:
        raise AssertionError("400 fillers loaded: static TLS never full")
    import poolmalloc
    assert poolmalloc._native.__name__ == "poolmalloc._native", poolmalloc._native.__name__
    assert poolmalloc.install() is True and poolmalloc.active()
    d = {i: str(i) for i in range(100_000)}
    assert poolmalloc.stats()["bytes_in_blocks"] > 1_000_000
    del d
    print("ok", loaded)
    """
    r = run_python(["-c", textwrap.dedent(code), str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok ")
    r = run_python([], "import poolmalloc; print(poolmalloc._native.__name__)")
    assert r.stdout == "poolmalloc._native_ie\n", r.stderr
