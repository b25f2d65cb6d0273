"""The docs site: every benchmark table is reachable, and `mkdocs build --strict` passes."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_results_table_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    tables = [p.relative_to(ROOT / "docs").as_posix()
              for p in sorted((ROOT / "docs").glob("**/results*/*.md"))]
    tables += [p.relative_to(ROOT / "docs").as_posix()
               for p in sorted((ROOT / "docs").glob("*/results.md"))]
    assert tables, "no benchmark tables found under docs/"
    missing = [t for t in tables if f": {t}" not in nav]
    assert not missing, f"benchmark tables not in the mkdocs.yml nav: {missing}"


def test_reproduce_page_lists_every_script():
    page = (ROOT / "docs" / "reproduce.md").read_text()
    for script in sorted((ROOT / "examples").glob("reproduce_*.py")):
        assert f"python examples/{script.name}" in page, script.name


def test_mkdocs_build_is_strict_and_clean(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "WARNING" not in log, log[-5000:]  # --strict aborts on warnings; belt and braces
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "results" / "ferumal_toys" / "index.html").is_file()
