"""The README's main job (examples/demo.py) runs end to end (one model, a few steps)."""

import importlib.util
import pathlib

import pytest

DEMO = pathlib.Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def _demo():
    spec = importlib.util.spec_from_file_location("tfp_flows_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_writes_table_and_plots(tmp_path, capsys):
    assert _demo().main(["--quick", "--only", "real_nvp", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| family | model | test NLL (nats)" in out
    assert (tmp_path / "results.md").read_text().count("\n") == 3  # header, rule, one row
    assert (tmp_path / "demo_densities_and_samples.png").stat().st_size > 10_000


def test_demo_rejects_unknown_models_and_non_2d_data(tmp_path):
    demo = _demo()
    with pytest.raises(SystemExit, match="--only matched no model"):
        demo.main(["--quick", "--only", "nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="must be 2-D"):
        demo.main(["--quick", "--dataset", "wine", "--num-samples", "100", "--out",
                   str(tmp_path)])
