"""Every Python snippet in the README runs as written (the quickstarts are executable docs)."""

import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_snippets():
    assert len(SNIPPETS) >= 1


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets may save files
    if "MirroredStrategy" in SNIPPETS[index]:
        # One MirroredStrategy per process (a second one breaks TF's collectives, and the
        # session's test fixture owns this process's): run the snippet as a user would.
        result = subprocess.run([sys.executable, "-c", SNIPPETS[index]], capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return
    code = compile(SNIPPETS[index], f"README.md snippet {index}", "exec")
    exec(code, {"__name__": f"readme_snippet_{index}"})
