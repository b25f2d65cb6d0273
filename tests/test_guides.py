"""Every guide under docs/guides runs as written: its Python blocks, in order, in one namespace."""

import pathlib
import re

import pytest

GUIDES = sorted((pathlib.Path(__file__).resolve().parents[1] / "docs" / "guides").glob("*.md"))


def test_there_are_guides():
    assert GUIDES


@pytest.mark.parametrize("page", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # guides may write files
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks, f"{page.name} has no Python blocks"
    namespace = {"__name__": f"guide_{page.stem}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page.name} block {i}", "exec"), namespace)
