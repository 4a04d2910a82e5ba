"""Build of the poolmalloc Python package (configuration in pyproject.toml).

setuptools-rust builds two libraries into the package: the extension module
``poolmalloc._native`` (python/native), and ``libpoolmalloc.so`` (capi), the
preload library the launcher uses. This file adds what pyproject.toml cannot
say: those two builds, and the ``.pth`` start-up hook at the top of
site-packages.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools_rust import Binding, RustExtension


class BuildPyWithStartupHook(build_py):
    """Copies ``poolmalloc-autoinstall.pth`` next to the package."""

    def run(self):
        super().run()
        self.copy_file(
            os.path.join("python", "poolmalloc-autoinstall.pth"),
            os.path.join(self.build_lib, "poolmalloc-autoinstall.pth"),
        )


setup(
    rust_extensions=[
        RustExtension(
            "poolmalloc._native",
            path="python/native/Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api=False,
        ),
        RustExtension(
            "poolmalloc.libpoolmalloc",
            path="capi/Cargo.toml",
            binding=Binding.NoBinding,
        ),
    ],
    cmdclass={"build_py": BuildPyWithStartupHook},
)
