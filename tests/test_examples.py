"""The paper-reproduction scripts in examples/: documented, parse their flags, run end to end."""

import importlib.util
import math
import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

# Each script's --quick run with even smaller settings (a few training steps).
SMOKE_ARGS = {
    "reproduce_ferumal.py": ["--steps", "5"],
    "reproduce_funnels.py": ["--epochs", "1", "--steps-per-epoch", "3"],
    "reproduce_augmentation.py": ["--epochs", "1", "--steps-per-epoch", "2"],
    "reproduce_ffjord.py": ["--steps", "3", "--num-train", "1024"],
    "reproduce_lgf.py": ["--epochs", "1", "--steps-per-epoch", "3", "--num-test", "200",
                         "--test-samples", "16"],
}
# A non-positive value of a flag each script validates itself.
BAD_ARGS = {
    "reproduce_ferumal.py": "--steps",
    "reproduce_funnels.py": "--epochs",
    "reproduce_augmentation.py": "--epochs",
    "reproduce_ffjord.py": "--steps",
    "reproduce_lgf.py": "--epochs",
}


def _load(name):
    spec = importlib.util.spec_from_file_location(name[:-3], EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_reproduction_script_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("reproduce_*.py")) == sorted(SMOKE_ARGS)


@pytest.mark.parametrize("name", sorted(SMOKE_ARGS))
def test_docstring_states_the_commands_and_expected_output(name):
    doc = _load(name).__doc__
    assert f"python examples/{name} --quick" in doc
    assert "Expected output of `--quick`" in doc
    assert "MEASURE" not in doc  # the measured --quick values were filled in


@pytest.mark.parametrize("name", sorted(SMOKE_ARGS))
def test_help_and_bad_arguments(name, capsys):
    module = _load(name)
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    assert "--quick" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        module.parse_args(["--quick", BAD_ARGS[name], "0"])
    assert info.value.code == 2
    assert f"{BAD_ARGS[name]} must be a positive integer, got 0" in capsys.readouterr().err


def _result_values(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, stdout
    pairs = [item.split("=") for item in lines[0].split()[1:]]
    return {key: float(value) for key, value in pairs}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE_ARGS))
def test_quick_run_prints_finite_metrics(name):
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", *SMOKE_ARGS[name]],
                          capture_output=True, text=True, env=env, timeout=900,
                          cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = _result_values(proc.stdout)
    assert values, proc.stdout
    for key, value in values.items():
        assert math.isfinite(value), (key, value, proc.stdout)


# Steps of the training pipeline that only `tfp_flows.keras.train` / `evaluate` /
# `count_parameters` may take; each caller uses those instead of its own copy.
_PIPELINE_STEPS = ("initialize_from_data(", ".compile(", "mean_log_prob(", "count_params(",
                   "mean_nll(", "num_params(", "EarlyStopping(", "ModelCheckpoint(")
# Benchmarks that time hand-written steps on purpose (a peer implementation, a compiled
# step reused across runs, per-call cost) and say so in their docstrings.
_OWN_LOOPS = {"augmentation.py": ("initialize_from_data(", ".compile("),
              "ferumal_cost.py": ("initialize_from_data(", ".compile("),
              "accelerator_check.py": (".compile(",),
              # Initialises bare bijectors (no model, no training) before probing them.
              "robustness.py": ("initialize_from_data(",),
              # Per-step cost of a callback / of each framework's own step, timed against
              # each other: the compiled model is the thing measured.
              "guard_overhead.py": ("initialize_from_data(", ".compile("),
              "peers.py": ("initialize_from_data(", ".compile("),
              # Counts the traces and XLA compiles of a FlowModel subclass's own steps.
              "compile_count.py": (".compile(",),
              "step_profile.py": (".compile(",),
              "spline_ab.py": (".compile(",),
              "revision_ab.py": (".compile(",),
              # Profiles FlowModel.fit's own per-step loop against a hand-written step.
              "fit_overhead.py": (".compile(",),
              "wrapper_cost.py": ("initialize_from_data(", ".compile("),
              # Profile / A/B-time the wrappers' hand-written steps (wrapper_cost.hand_step).
              "wrapper_ab.py": ("initialize_from_data(",),
              "wrapper_profile.py": ("initialize_from_data(",)}


@pytest.mark.parametrize("path", sorted([*EXAMPLES.glob("*.py"),
                                         *(EXAMPLES.parent / "benchmarks").glob("*.py")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_scripts_train_and_evaluate_through_the_pipeline(path):
    text = path.read_text()
    allowed = _OWN_LOOPS.get(path.name, ()) if path.parent.name == "benchmarks" else ()
    used = [step for step in _PIPELINE_STEPS if step in text and step not in allowed]
    assert not used, f"{path.name} runs {used} itself; use tfp_flows.keras.train.fit/evaluate"
