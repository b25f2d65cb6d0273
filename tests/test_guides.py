"""Every guide under docs/guides runs as written: its Python blocks, in order, in one namespace."""

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
# The guides, and the pages outside docs/guides whose Python blocks are how-tos too.
GUIDES = [*sorted((DOCS / "guides").glob("*.md")), DOCS / "conditional.md"]


def test_there_are_guides():
    assert GUIDES


# Pages whose small-budget run still takes minutes (two 64-D funnels, HMC, VI, AIS): slow.
SLOW_PAGES = {"joint_imputation"}


@pytest.mark.parametrize("page", [
    pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_PAGES else p for p in GUIDES],
    ids=[p.stem for p in GUIDES])
def test_guide_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # guides may write files
    monkeypatch.setenv("TFP_FLOWS_GUIDE_BUDGET", "small")  # pages with a budget knob run small
    assert re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S), (
        f"{page.name} has no Python blocks")
    run_page(page)


def run_page(path):
    """Runs one guide's Python blocks in order, in one namespace, in the current directory."""
    page = pathlib.Path(path)
    namespace = {"__name__": f"guide_{page.stem}"}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)):
        exec(compile(block, f"{page.name} block {i}", "exec"), namespace)


if __name__ == "__main__":  # `python tests/test_guides.py docs/guides/<page>.md`: full budget
    import sys

    run_page(sys.argv[1])
