"""Every Python snippet in the README runs as written (the quickstarts are executable docs)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_snippets():
    assert len(SNIPPETS) >= 1


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets may save files
    code = compile(SNIPPETS[index], f"README.md snippet {index}", "exec")
    exec(code, {"__name__": f"readme_snippet_{index}"})
