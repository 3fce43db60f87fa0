# Aerostore: `make demo` and `make test` each do the whole set-up first
# (system packages, .venv, editable install, the Tcl shim), then run.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: all setup sysdeps venv shim demo test bench bench-quick bench-live bench-live-quick \
        bench-setup pydemo clean

all: setup

setup: sysdeps venv shim

sysdeps:
	@bash scripts/sysdeps.sh

# The editable install also compiles the engine's C extensions (setup.py:
# aerostore/_keymap.c, _heldops.c), again whenever their sources change.
$(VENV)/.installed: pyproject.toml setup.py $(wildcard aerostore/_*.c aerostore/_*.h)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

# The cffi-embedding shim that `package require aerostore` loads; rebuilt when
# its C sources, its build script or the virtual environment change.
SHIM := aerostore/tclbridge/libaerostore_tcl.so
shim: venv $(SHIM)

$(SHIM): $(wildcard c_shim/*.c c_shim/*.h) aerostore/_readgate.h aerostore/_keymap_api.h aerostore/tclbridge/build.py $(VENV)/.installed
	$(PY) -m aerostore.tclbridge.build

demo: setup
	TCLLIBPATH=$(CURDIR)/tcl tclsh tcl/test.tcl

pydemo: venv
	$(PY) examples/demo.py

# The suite also installs the `bench` extra: tests/test_bench_smoke.py checks the
# chart bench/report.py draws with matplotlib (skipped where it is missing), and
# CI runs `make test`.
test: setup $(VENV)/.bench-installed
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf build *.egg-info aerostore/*.so aerostore/tclbridge/*.so aerostore/tclbridge/_build

# The benchmarks also need the `bench` extra (matplotlib, for the charts).
$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $@

bench-setup: setup $(VENV)/.bench-installed

# bench/run.py: each figure alone; bench/live.py: a durable feed and readers at
# once (docs/benchmarks.md).  LIVE_ARGS passes options to the latter, e.g.
# make bench-live LIVE_ARGS="--readers 2 --live-secs 20 --sweep-rows 100000"
LIVE_ARGS ?=

bench: bench-setup
	$(PY) bench/run.py --rows 1000000
	$(PY) bench/live.py --rows 1000000 $(LIVE_ARGS)

bench-quick: bench-setup
	$(PY) bench/run.py --rows 100000
	$(PY) bench/live.py --quick $(LIVE_ARGS)

bench-live: bench-setup
	$(PY) bench/live.py --rows 1000000 $(LIVE_ARGS)

bench-live-quick: bench-setup
	$(PY) bench/live.py --quick $(LIVE_ARGS)
