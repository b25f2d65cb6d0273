"""`benchmarks/ferumal_tuning.py` end to end at a tiny budget, its resume, its argument checks."""

import json
import os
import re

import numpy as np
import pytest

from benchmarks import ferumal_common, ferumal_tuning

TINY = ["--toys", "moons", "--tiny-models", "--no-jit", "--search-steps", "2",
        "--final-steps", "3", "--eval-every", "1", "--num-train", "40", "--num-val", "20",
        "--num-test", "20", "--coarse", "0.3", "3", "--fine-points", "0", "--random-draws", "1",
        "--betas", "0.5,0.9", "--lr-factors", "1", "--final-seeds", "0", "1"]


def _fake_train(args, model, config, data, steps, seed):
    """Stands in for training: validation NLL smallest at l = 0.5, lr 5e-3 StepLR, betas 0.5/0.9."""
    ls = config["length_scale"] or 1.3
    val = (np.log(ls / 0.5) ** 2 + (config["schedule"] == "cosine") * 0.1
           + (config["beta_1"] == 0.9) * 0.05 + (not config["learn_length_scale"]) * 0.01
           + abs(np.log(config["lr"] / (5e-3 if model == "ferumal" else 1e-3))) + 0.001 * seed)
    return {"status": "ok", "val_nll": float(val), "test_nll": float(val) + 0.1,
            "best_step": steps, "val_curve": [float(val)], "params": 1, "seconds": 0.0,
            "learned_length_scales": [ls] * 2 if model == "ferumal" else []}


def test_protocol_stages_selection_and_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(ferumal_tuning, "train_one", _fake_train)
    out = str(tmp_path)
    argv = ["--toys", "pinwheel", "--out", out, "--coarse", "0.1", "1", "10",
            "--random-draws", "2", "--lr-factors", "0.4", "1", "2"]
    summary = ferumal_tuning.main(argv)
    runs = ferumal_tuning.load_runs(out, "pinwheel", "ferumal")
    stages = [r["stage"] for r in runs]
    assert stages == (["1e library default"] + ["1a coarse"] * 3 + ["1b fine"] * 2
                      + ["1c random"] * 2 + ["1d learned from best"] + ["2 betas"] * 2
                      + ["3 lr x decay"] * 5 + ["final"] * 2)
    fine = [r["config"]["length_scale"] for r in runs if r["stage"] == "1b fine"]
    assert fine == pytest.approx([10 ** -0.5, 10 ** 0.5], rel=1e-3)  # around the coarse best 1
    draws = [r["config"]["length_scale"] for r in runs if r["stage"] == "1c random"]
    assert all(0.1 <= d <= 1.0 for d in draws)  # between the fine best 0.316's neighbours
    finals = [r for r in runs if r["stage"] == "final"]
    assert [(r["seed"], r["steps"]) for r in finals] == [(0, 10000), (1, 10000)]
    choice = finals[0]["config"]
    assert (choice["beta_1"], choice["beta_2"], choice["schedule"], choice["lr"]) == (
        0.5, 0.9, "step", 5e-3)
    assert choice["length_scale"] == min(draws + fine + [1.0],
                                         key=lambda v: abs(np.log(v / 0.5)))
    glow = ferumal_tuning.load_runs(out, "pinwheel", "glow")
    assert [r["config"]["lr"] for r in glow if r["stage"] != "final"] == [4e-4, 4e-4, 1e-3,
                                                                         1e-3, 2e-3, 2e-3]
    assert [row["test NLL per seed"].count("/") for row in summary] == [1, 1]
    # Every configuration tried is in the JSON; a rerun trains nothing new.
    saved = json.loads((tmp_path / "ferumal_tuning.json").read_text())
    assert len(saved["runs"]) == len(runs) + len(glow)
    monkeypatch.setattr(ferumal_tuning, "train_one", None)
    ferumal_tuning.main(argv)
    assert len(ferumal_tuning.load_runs(out, "pinwheel", "ferumal")) == len(runs)


def test_stop_search_at_skips_to_the_finals(tmp_path, monkeypatch):
    monkeypatch.setattr(ferumal_tuning, "train_one", _fake_train)
    out = str(tmp_path)
    ferumal_tuning.main(["--toys", "moons", "--models", "glow", "--out", out,
                         "--stage", "search", "--lr-factors", "1"])
    ferumal_tuning.main(["--toys", "moons", "--models", "glow", "--out", out,
                         "--stop-search-at", "00:00", "--lr-factors", "0.4", "1"])
    runs = ferumal_tuning.load_runs(out, "moons", "glow")
    assert [r["stage"] for r in runs] == ["3 lr x decay"] * 2 + ["final"] * 2


@pytest.mark.slow
def test_tiny_protocol_trains_for_real(tmp_path):
    out = str(tmp_path)
    summary = ferumal_tuning.main([*TINY, "--out", out])
    ferumal = ferumal_tuning.load_runs(out, "moons", "ferumal")
    glow = ferumal_tuning.load_runs(out, "moons", "glow")
    stages = [r["stage"] for r in ferumal]
    # 2 coarse + 1 random + learned-from-best + default + 1 extra betas + 1 StepLR, 2 finals.
    assert stages == ["1e library default"] + ["1a coarse"] * 2 + [
        "1c random", "1d learned from best", "2 betas", "3 lr x decay", "final", "final"]
    assert [r["stage"] for r in glow] == ["3 lr x decay"] * 2 + ["final"] * 2
    assert all(np.isfinite(r["val_nll"]) and np.isfinite(r["test_nll"]) for r in ferumal + glow)
    draw = ferumal[3]["config"]["length_scale"]
    best = min(ferumal[1:3], key=lambda r: r["val_nll"])["config"]["length_scale"]
    assert best / np.sqrt(10) <= draw <= best * np.sqrt(10)  # within the best's neighbourhood
    fixed = ferumal[1]
    assert fixed["learned_length_scales"] == pytest.approx([0.3, 0.3])  # not trained
    assert [r["steps"] for r in ferumal[-2:]] == [3, 3] and [r["seed"] for r in ferumal[-2:]] \
        == [0, 1]
    chosen = ferumal_tuning.selected(ferumal, 2)
    assert chosen["config"] == ferumal[-1]["config"]
    assert chosen["val_nll"] == min(r["val_nll"] for r in ferumal[:-2])
    assert [row["model"] for row in summary] == ["ferumal", "glow"]
    assert all(row["final seeds"] == "0/1" for row in summary)
    saved = json.loads((tmp_path / "ferumal_tuning.json").read_text())
    assert len(saved["runs"]) == len(ferumal) + len(glow)
    assert (tmp_path / "ferumal_tuning_length_scale.png").is_file()
    assert "Every configuration tried" in (tmp_path / "ferumal_tuning.md").read_text()
    # A rerun finds every run on disk and trains nothing more.
    ferumal_tuning.main([*TINY, "--out", out, "--models", "ferumal"])
    assert len(ferumal_tuning.load_runs(out, "moons", "ferumal")) == len(ferumal)


def test_final_needs_the_search(tmp_path):
    with pytest.raises(SystemExit, match="run --stage search first"):
        ferumal_tuning.main([*TINY, "--out", str(tmp_path), "--stage", "final"])


@pytest.mark.parametrize("flag, value, message", [
    ("--search-steps", "0", "--search-steps must be a positive integer; got 0"),
    ("--fine-points", "3", "--fine-points must be even; got 3"),
    ("--random-draws", "-1", "--random-draws must be a non-negative integer; got -1"),
    ("--betas", "0.9", "--betas entries must be 'beta1,beta2'; got '0.9'"),
    ("--betas", "0.9,1.5", r"--betas entries must lie in \[0, 1\); got '0.9,1.5'"),
    ("--stop-search-at", "4:45", "--stop-search-at must be HH:MM \\(UTC\\); got '4:45'"),
])
def test_bad_arguments(flag, value, message, capsys):
    with pytest.raises(SystemExit):
        ferumal_tuning.parse_args([flag, value])
    assert re.search(message, capsys.readouterr().err)


def test_fine_grid_lies_between_the_coarse_neighbours():
    factors, lo, hi = ferumal_tuning._fine_factors([0.1, 1.0, 10.0], 1.0, 2)
    assert factors == pytest.approx([10 ** -0.5, 10 ** 0.5])
    assert (lo, hi) == pytest.approx((10 ** -0.5, 10 ** 0.5))
    factors, _, _ = ferumal_tuning._fine_factors([0.1, 1.0, 10.0], 10.0, 4)  # at the edge
    assert factors == pytest.approx([10 ** (-2 / 3), 10 ** (-1 / 3), 10 ** (1 / 3),
                                     10 ** (2 / 3)])


def test_step_schedule_halves_every_quarter():
    rate = ferumal_common.learning_rate_schedule(1.0, 100, "step")
    assert [float(rate(s)) for s in (0, 24, 25, 50, 99)] == pytest.approx(
        [1.0, 1.0, 0.5, 0.25, 0.125])
    cosine = ferumal_common.learning_rate_schedule(1.0, 100, "cosine")
    assert float(cosine(100)) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="`schedule` must be one of"):
        ferumal_common.learning_rate_schedule(1.0, 100, "linear")


def test_earlier_default_run_counts_as_seed_0_final(tmp_path):
    path = tmp_path / "ferumal_toys.json"
    path.write_text(json.dumps({"command": "python benchmarks/ferumal_toys.py --steps 10000",
                                "rows": [{"data": "moons", "model": "glow", "test NLL": 2.4,
                                          "params": 7, "epochs": 200}]}))
    args = ferumal_tuning.parse_args(["--earlier-finals", str(path)])
    default = ferumal_tuning._config(lr=1e-3)
    found = ferumal_tuning.earlier_finals(args, "moons", "glow", default, {1})
    assert [(r["seed"], r["test_nll"], r["steps"]) for r in found] == [(0, 2.4, 10000)]
    assert ferumal_tuning.earlier_finals(args, "moons", "glow", default, {0}) == []
    tuned = ferumal_tuning._config(lr=1e-3, schedule="step")
    assert ferumal_tuning.earlier_finals(args, "moons", "glow", tuned, {1}) == []
    args = ferumal_tuning.parse_args(["--earlier-finals", str(path), "--final-steps", "2500"])
    assert ferumal_tuning.earlier_finals(args, "moons", "glow", default, {1}) == []


def test_a_run_locked_by_a_live_process_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(ferumal_tuning, "train_one", _fake_train)
    args = ferumal_tuning.parse_args(["--out", str(tmp_path)])
    runner = ferumal_tuning.Runner(args, "line", "glow")
    config = ferumal_tuning._config(lr=1e-3)
    lock = ferumal_tuning._lock_path(str(tmp_path), "line", "glow", config, 10, 1)
    with open(lock, "w") as f:
        f.write(str(os.getpid()))  # alive: this process
    assert runner.run(config, "final", 10, seed=1) is None
    with open(lock, "w") as f:
        f.write("999999999")  # no such process: a killed run's stale lock
    assert runner.run(config, "final", 10, seed=1)["status"] == "ok"
    assert not os.path.exists(lock)


def _earlier_finals(tmp_path, model, nll):
    """A `ferumal_toys.py` results file with one 10,000-step seed-0 row on the line."""
    path = tmp_path / "ferumal_toys.json"
    path.write_text(json.dumps({"command": "python benchmarks/ferumal_toys.py --steps 10000",
                                "rows": [{"data": "line", "model": model, "test NLL": nll,
                                          "params": 7, "epochs": 200}]}))
    return path


def test_finals_skip_the_seed_an_earlier_default_run_covers(tmp_path, monkeypatch):
    monkeypatch.setattr(ferumal_tuning, "train_one", _fake_train)
    path = _earlier_finals(tmp_path, "glow", -1.2)
    argv = ["--toys", "line", "--models", "glow", "--out", str(tmp_path), "--lr-factors", "1",
            "--schedules", "cosine", "--earlier-finals", str(path)]
    summary = ferumal_tuning.main(argv)
    runs = ferumal_tuning.load_runs(str(tmp_path), "line", "glow")
    assert [(r["stage"], r["seed"]) for r in runs] == [("3 lr x decay", 0), ("final", 1)]
    assert summary[0]["final seeds"] == "0*/1"
    assert summary[0]["test NLL per seed"].startswith("-1.200 / ")


def test_skip_leaves_out_length_scale_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(ferumal_tuning, "train_one", _fake_train)
    ferumal_tuning.main(["--toys", "line", "--models", "ferumal", "--out", str(tmp_path),
                         "--coarse", "0.5", "2", "--skip", "fine", "random", "learned",
                         "--betas", "0.5,0.9", "--lr-factors", "1", "--stage", "search"])
    stages = [r["stage"] for r in ferumal_tuning.load_runs(str(tmp_path), "line", "ferumal")]
    assert stages == ["1e library default", "1a coarse", "1a coarse", "2 betas",
                      "3 lr x decay"]


def test_reference_stage_trains_the_default_where_no_earlier_run_has_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ferumal_tuning, "train_one", _fake_train)
    path = _earlier_finals(tmp_path, "ferumal", -1.1)
    argv = ["--toys", "line", "--models", "ferumal", "--out", str(tmp_path), "--coarse", "0.5",
            "--skip", "fine", "random", "learned", "--betas", "0.5,0.9", "--lr-factors", "1",
            "--earlier-finals", str(path)]
    ferumal_tuning.main(argv)  # selects l 0.5 (fixed): not the default, so both seeds train
    summary = ferumal_tuning.main([*argv, "--stage", "reference"])
    runs = ferumal_tuning.load_runs(str(tmp_path), "line", "ferumal")
    refs = [(r["seed"], r["config"]["length_scale"]) for r in runs if r["stage"].startswith("ref")]
    assert refs == [(1, None)]  # seed 0 of the default is the earlier run
    assert summary[0]["default test NLL (seeds)"].startswith("-1.100 / ")
    assert summary[0]["default test NLL (seeds)"].endswith("(0/1)")
