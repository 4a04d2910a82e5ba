import os
import subprocess
import sys
import textwrap

import pytest


def run_python(args, code=None, env=None, input=None, timeout=120):
    """Runs the interpreter under test with ``args`` (and ``-c code``)."""
    full_env = dict(os.environ)
    for key in ("LD_PRELOAD", "PYTHONMALLOC", "POOLMALLOC_PYTHON", "POOLMALLOC_SHOW_STATS"):
        full_env.pop(key, None)
    full_env.update(env or {})
    cmd = [sys.executable] + list(args)
    if code is not None:
        cmd += ["-c", textwrap.dedent(code)]
    return subprocess.run(cmd, env=full_env, input=input, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def python():
    return run_python
