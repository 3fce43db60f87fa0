"""The engine's C extensions (aerostore/_keymap.c with the read gate, _readgate.c;
aerostore/_heldops.c); everything else is in pyproject.toml."""
from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]

setup(ext_modules=[Extension("aerostore._keymap", ["aerostore/_keymap.c", "aerostore/_readgate.c"],
                             depends=["aerostore/_readgate.h", "aerostore/_keymap_api.h"],
                             extra_compile_args=_FLAGS),
                   Extension("aerostore._heldops", ["aerostore/_heldops.c"],
                             extra_compile_args=_FLAGS)])
