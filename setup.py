"""Build of the poolmalloc Python package (configuration in pyproject.toml).

setuptools-rust builds three libraries into the package: the extension
module twice from python/native, as ``poolmalloc._native_ie`` (the
allocator's heap slot in initial-exec TLS: fastest, but loadable only while
the static TLS block has room) and ``poolmalloc._native`` (the ``dlopen``
feature: general-dynamic TLS, always loadable), which the package falls back
to; and ``libpoolmalloc.so`` (capi), the preload library the launcher uses.
This file adds what pyproject.toml cannot say: those builds, and the
``.pth`` start-up hook at the top of site-packages.
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
            "poolmalloc._native_ie",
            path="python/native/Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api=False,
        ),
        RustExtension(
            "poolmalloc._native",
            path="python/native/Cargo.toml",
            binding=Binding.PyO3,
            py_limited_api=False,
            features=["dlopen"],
        ),
        RustExtension(
            "poolmalloc.libpoolmalloc",
            path="capi/Cargo.toml",
            binding=Binding.NoBinding,
        ),
    ],
    cmdclass={"build_py": BuildPyWithStartupHook},
)
