"""The engine's C extension (aerostore/_keymap.c and the read gate, _readgate.c);
everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("aerostore._keymap", ["aerostore/_keymap.c", "aerostore/_readgate.c"],
                             depends=["aerostore/_readgate.h", "aerostore/_keymap_api.h"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                                 "-Wno-missing-field-initializers"])])
