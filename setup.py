"""Build recipe: setuptools drives CMake to build the C++ core ``recompiler._native``.

The same shape as pybind11's cmake_example; package metadata lives in pyproject.toml.
"""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: str = ""):
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


class CMakeBuild(build_ext):
    def build_extension(self, ext: CMakeExtension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_dir = Path(self.build_temp) / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = "Debug" if self.debug else "Release"
        cmake_args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
        ]
        jobs = f"-j{os.cpu_count() or 2}"
        subprocess.run(["cmake", ext.sourcedir, *cmake_args], cwd=build_dir, check=True)
        subprocess.run(["cmake", "--build", ".", jobs], cwd=build_dir, check=True)


setup(
    ext_modules=[CMakeExtension("recompiler._native")],
    cmdclass={"build_ext": CMakeBuild},
)
