"""Run the tcltest files (tests/*.test) in tclsh; every test must pass."""

from __future__ import annotations

import glob
import os
import re

import pytest

from test_tcl_support import ROOT, tclsh

TEST_FILES = sorted(glob.glob(os.path.join(ROOT, "tests", "*.test")))


@pytest.mark.parametrize("path", TEST_FILES, ids=os.path.basename)
def test_tcltest_file(shim, path, tmp_path):
    p = tclsh(f"source {{{path}}}\n", cwd=tmp_path)
    out = p.stdout + p.stderr
    m = re.search(r"Total\s+(\d+)\s+Passed\s+(\d+)\s+Skipped\s+(\d+)\s+Failed\s+(\d+)", out)
    assert m, out
    total, passed, skipped, failed = map(int, m.groups())
    assert failed == 0 and passed == total > 0, out
