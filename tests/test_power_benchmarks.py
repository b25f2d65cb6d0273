"""The POWER benchmark scripts on a synthetic stand-in (never the real data folder).

A fake MAF layout (`power/data.npy`, 8 columns of random numbers) is written to
a temporary folder, so the `--data-dir` code paths of
`benchmarks/ferumal_low_data.py` and `benchmarks/uci_equal_budget.py` run
end to end in a few steps.
"""

import json

import numpy as np
import pytest

from benchmarks import ferumal_low_data, uci_equal_budget


def _fake_power(tmp_path, rows=3000):
    folder = tmp_path / "data" / "power"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.gamma(2.0, 1.0, (rows, 7)), rng.integers(0, 1440, rows)])
    np.save(folder / "data.npy", data.astype(np.float64))
    return str(tmp_path / "data")


def test_uci_equal_budget_needs_data_dir(capsys):
    with pytest.raises(SystemExit):
        uci_equal_budget.main(["--dataset", "power"])
    assert "--data-dir" in capsys.readouterr().err


def test_uci_equal_budget_steps_multiple_of_eval_every(tmp_path, capsys):
    with pytest.raises(SystemExit):
        uci_equal_budget.main(["--data-dir", str(tmp_path), "--steps", "10",
                               "--eval-every", "3"])
    assert "multiple of --eval-every" in capsys.readouterr().err


def test_low_data_uci_set_needs_data_dir():
    with pytest.raises(SystemExit, match="--data-dir"):
        ferumal_low_data.main(["--datasets", "power", "--steps", "1"])


@pytest.mark.slow
def test_low_data_power_on_synthetic_stand_in(tmp_path):
    data_dir = _fake_power(tmp_path)
    out = tmp_path / "out"
    runs = ferumal_low_data.main([
        "--data-dir", data_dir, "--datasets", "power", "--models", "ferumal", "maf",
        "--subset-seeds", "0,1", "--num-train", "100", "--match-params", "500", "--steps", "10",
        "--num-val", "50", "--num-test", "100", "--out", str(out)])
    assert [r["model"] for r in runs] == ["ferumal (shared points)", "maf"] * 2
    assert all(np.isfinite(r["test NLL"]) and r["test rows"] == 100 for r in runs)
    assert all(abs(r["params"] - 500) < 250 for r in runs)
    table = json.loads((out / "ferumal_low_data.json").read_text())["rows"]
    assert [r["subsets"] for r in table] == [2, 2]


@pytest.mark.slow
def test_uci_equal_budget_on_synthetic_stand_in(tmp_path):
    data_dir = _fake_power(tmp_path)
    out = tmp_path / "out"
    rows = uci_equal_budget.main([
        "--data-dir", data_dir, "--models", "maf", "f_mlp", "--match-params", "400",
        "--steps", "4", "--eval-every", "2", "--num-val", "100", "--out", str(out)])
    assert [r["steps"] for r in rows] == [4, 4]
    assert all(np.isfinite(r["test LL"]) and len(r["val curve"]) == 2 for r in rows)
    assert (out / "power_curves.png").is_file()
    saved = json.loads((out / "power_equal_budget.json").read_text())["rows"]
    assert [r["model"] for r in saved] == [r["model"] for r in rows]


@pytest.mark.slow
def test_uci_equal_budget_append_keeps_earlier_rows(tmp_path):
    data_dir = _fake_power(tmp_path)
    out = tmp_path / "out"
    common = ["--data-dir", data_dir, "--match-params", "400", "--eval-every", "2",
              "--num-val", "100", "--out", str(out)]
    uci_equal_budget.main(common + ["--models", "maf", "--steps", "2"])
    uci_equal_budget.main(common + ["--models", "f_mlp", "maf", "--steps", "4", "--append"])
    saved = json.loads((out / "power_equal_budget.json").read_text())
    assert [r["key"] for r in saved["rows"]] == ["f_mlp", "maf"]
    assert [r["steps"] for r in saved["rows"]] == [4, 4]
    for row in saved["rows"]:  # a file written before rows carried these keys
        for k in ("key", "command", "val rows", "eval every"):
            row.pop(k)
    (out / "power_equal_budget.json").write_text(json.dumps(saved))
    uci_equal_budget.main(common + ["--models", "glow", "--steps", "2", "--append"])
    saved = json.loads((out / "power_equal_budget.json").read_text())
    assert [r["key"] for r in saved["rows"]] == ["f_mlp", "maf", "glow"]
    assert [r["steps"] for r in saved["rows"]] == [4, 4, 2]
    assert len(saved["commands"]) == 2 and "--append" in saved["commands"][-1]
    assert all(len(r["val curve"]) == r["steps"] // 2 for r in saved["rows"])
    assert [(r["val rows"], r["eval every"]) for r in saved["rows"]] == [(100, 2)] * 3
    assert "--models glow" in (out / "power_equal_budget.md").read_text()
