"""The `tfp-flows` command line, the plotting helpers and the benchmark scripts, on tiny runs.

The CLI runs in-process through `tfp_flows.cli.main(argv)` (a subprocess
would import TensorFlow again). One tiny `fit` (moons, 200 points, 2 epochs,
a 2-layer RealNVP with 8 hidden units) is shared by the evaluate/sample tests.
"""

import json
import os
import re
import runpy
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import cli, plotting
from tfp_flows.distributions import FlowDistribution
from tfp_flows.flows import real_nvp, register_flow, registry
from tfp_flows.internal import contract, keras_owned

TINY = ["--flow-arg", "hidden_units=8,8", "--flow-arg", "num_layers=2"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *argv):
    """`(exit code, stdout, stderr)` of `tfp-flows argv...`."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("run"))
    code = cli.main(["fit", "--flow", "real_nvp", "--dataset", "moons", "--num-samples", "200",
                     "--epochs", "2", "--batch-size", "64", *TINY, "--learning-rate", "0.01",
                     "--verbose", "0", "--run-dir", path])
    assert code == 0
    return path


# -- fit / evaluate / sample / list ----------------------------------------------------------


def test_fit_stops_with_a_clear_error_on_a_non_finite_loss(tmp_path, capsys):
    code, _, err = run(capsys, "fit", "--flow", "real_nvp", "--dataset", "moons",
                       "--num-samples", "200", "--epochs", "20", "--batch-size", "32", *TINY,
                       "--learning-rate", "1e10", "--verbose", "0", "--no-plots",
                       "--run-dir", str(tmp_path))
    assert code == 2
    assert "training stopped: " in err and "at step " in err and "Restored the weights" in err


def test_fit_writes_metrics_model_and_plots(run_dir):
    with open(os.path.join(run_dir, "metrics.json")) as f:
        m = json.load(f)
    assert m["flow"] == "real_nvp" and m["dataset"] == "moons"
    assert m["flow_args"] == {"hidden_units": [8, 8], "num_layers": 2}
    assert m["objective"] == "nll" and m["nll_kind"] == "exact"
    assert (m["num_train"], m["num_validation"], m["num_test"]) == (200, 50, 50)
    assert m["epochs_run"] == 2 and len(m["history"]["loss"]) == 2
    assert len(m["history"]["val_loss"]) == 2
    assert np.isfinite(m["test_nll"]) and m["train_seconds"] > 0
    # The best checkpoint is restored before evaluation: validation NLL == best val_loss.
    assert m["validation_nll"] == pytest.approx(m["best_val_loss"], rel=1e-4)
    # 2 couplings, each MLP 1 -> 8 -> 8 -> 2: 2 * (16 + 72 + 18) weights.
    assert m["num_params"] == 2 * (1 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2)
    for name in ("model.keras", "best.weights.h5", "density.png", "samples.png"):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    assert m["plots"] == ["density.png", "samples.png"]


def test_evaluate_reproduces_test_nll_from_saved_model(run_dir, capsys):
    code, out, _ = run(capsys, "evaluate", "--run-dir", run_dir)
    assert code == 0
    with open(os.path.join(run_dir, "metrics.json")) as f:
        test_nll = json.load(f)["test_nll"]
    with open(os.path.join(run_dir, "evaluation.json")) as f:
        result = json.load(f)
    # An exact flow reloaded from model.keras gives the same NLL up to float32 rounding.
    assert result["nll"] == pytest.approx(test_nll, abs=1e-4)
    assert result["split"] == "test" and result["num_points"] == 50
    assert f"{test_nll:.4f}" in out


def test_evaluate_other_split(run_dir, capsys):
    code, out, _ = run(capsys, "evaluate", "--run-dir", run_dir, "--split", "validation")
    assert code == 0 and "validation NLL on moons" in out
    with open(os.path.join(run_dir, "metrics.json")) as f:
        val_nll = json.load(f)["validation_nll"]
    with open(os.path.join(run_dir, "evaluation.json")) as f:
        assert json.load(f)["nll"] == pytest.approx(val_nll, abs=1e-4)


def test_sample_writes_npy_reproducibly(run_dir, tmp_path, capsys):
    a, b, c = (str(tmp_path / f"{k}.npy") for k in "abc")
    assert run(capsys, "sample", "--run-dir", run_dir, "--num", "30", "--out", a)[0] == 0
    assert run(capsys, "sample", "--run-dir", run_dir, "--num", "30", "--out", b)[0] == 0
    assert run(capsys, "sample", "--run-dir", run_dir, "--num", "30", "--out", c,
               "--seed", "5")[0] == 0
    x, y, z = np.load(a), np.load(b), np.load(c)
    assert x.shape == (30, 2) and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, y)
    assert not np.allclose(x, z)


def test_list_shows_flows_with_summary_arguments_and_condition(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ("real_nvp", "maf", "glow", "neural_spline", "moons", "power"):
        assert f"  {name}" in out, name
    flat = " ".join(out.split())
    # Whole first sentences (glow's spans two docstring lines), never cut mid-sentence.
    assert ("Glow-style flow (Kingma & Dhariwal, 2018) for vectors: per step ActNorm, an "
            "LU-parameterised invertible linear map, and an affine coupling.") in flat
    # A period inside `code` does not end the sentence.
    assert "`event_size -> latent_sizes[0] -> ... -> latent_sizes[-1]` funnels." in flat
    # Conditional flows are marked; the builder's arguments only with --verbose.
    assert "[conditional] RealNVP (Dinh et al., 2017)" in flat
    assert "arguments:" not in flat and "list --verbose" in flat
    # Benchmarks are scripts of the source tree, not part of the installed CLI.
    assert "benchmarks" not in out


def test_list_verbose_shows_every_flows_arguments(capsys):
    code, out, _ = run(capsys, "list", "--verbose")
    assert code == 0
    flat = " ".join(out.split())
    assert "arguments: event_size, num_layers=4, hidden_units=(64, 64)" in flat
    assert flat.count("arguments: ") == len(registry.available_flows())
    assert "solver='dopri5'" in flat  # ffjord's


def test_flow_catalog_agrees_with_the_registry():
    """The static table `list` prints equals the registry's description of every built-in flow."""
    from tfp_flows.internal import flow_catalog

    builtin = {n for n in registry.available_flows() if not n.startswith("_cli_test")}
    assert [i.name for i in flow_catalog.BUILTIN_FLOWS] == sorted(builtin)
    for info in flow_catalog.BUILTIN_FLOWS:
        # On a mismatch, paste the registry's description into flow_catalog.BUILTIN_FLOWS.
        assert info == registry.describe_flow(info.name), registry.describe_flow(info.name)
    assert registry.FlowInfo is flow_catalog.FlowInfo


def test_list_imports_no_tensorflow():
    """`tfp-flows list` in a fresh process: no TensorFlow, TFP or Keras import, well under 3 s."""
    import subprocess
    import time

    code = ("import sys; from tfp_flows.cli import main; main(['list']); "
            "print(sorted(m for m in ('tensorflow', 'tensorflow_probability', 'keras') "
            "if m in sys.modules))")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]", out.stdout[-300:]
    assert "real_nvp" in out.stdout and "moons" in out.stdout
    assert seconds < 20, seconds  # ~0.3 s of CPU; loose for a loaded machine


def test_cli_hides_tensorflow_startup_lines(tmp_path):
    """A command that imports TensorFlow prints only its own error on stderr, no TF chatter."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    out = subprocess.run([sys.executable, "-m", "tfp_flows", "evaluate", "--run-dir",
                          str(tmp_path / "missing")], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"tfp-flows: error: --run-dir: directory {str(tmp_path / 'missing')!r} does not "
        "exist."], out.stderr


def test_startup_line_filter_keeps_real_errors():
    from tfp_flows.internal import tf_logs

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR\n"
            "I0000 00:00:1.1 1 port.cc:153] oneDNN custom operations are on. You may see ...\n"
            "I0000 00:00:1.2 1 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"
            "E0000 00:00:1.3 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA\n"
            "E0000 00:00:1.4 1 some_kernel.cc:9] a real error\n"
            "Traceback (most recent call last):\n")
    assert tf_logs.filter_startup_lines(text) == (
        "E0000 00:00:1.4 1 some_kernel.cc:9] a real error\nTraceback (most recent call last):\n")
    import tensorflow as tf

    assert tf_logs.import_tensorflow() is tf  # already imported: a plain import


@pytest.mark.slow
def test_cli_verbose_shows_tensorflow_startup_lines(tmp_path):
    import subprocess

    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    out = subprocess.run([sys.executable, "-m", "tfp_flows", "--verbose", "evaluate",
                          "--run-dir", str(tmp_path / "missing")], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=300)
    assert out.returncode == 2 and "tfp-flows: error: --run-dir" in out.stderr
    assert len(out.stderr.strip().splitlines()) > 1, out.stderr


def test_describe_flow_and_flow_builder():
    info = registry.describe_flow("real_nvp")
    assert info.conditional and info.arguments[0] == "event_size"
    assert "conditional_size=0" in info.arguments
    assert info.summary.startswith("RealNVP (Dinh et al., 2017)") and info.summary.endswith(".")
    assert registry.flow_builder("real_nvp") is real_nvp
    with pytest.raises(ValueError, match=r"Unknown flow 'nope'; available: .*real_nvp"):
        registry.flow_builder("nope")
    assert registry.first_sentence("A b, e.g. c d. Second.") == "A b, e.g. c d."
    assert registry.first_sentence(None) == ""


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tfp_flows", "list"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("tfp_flows", run_name="__main__", alter_sys=False)
    assert exc.value.code == 0
    assert "real_nvp" in capsys.readouterr().out


def test_help_exits_zero_and_shows_defaults(capsys):
    code, out, _ = run(capsys, "fit", "--help")
    flat = " ".join(out.split())
    assert code == 0 and "--flow-arg" in out
    assert "maximum epochs (default: 100)" in flat and "(default: 256)" in flat
    assert "(default: auto)" in flat and "(default: 10)" in flat


def test_every_help_shows_every_default(capsys):
    import argparse

    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(subparsers.choices) == ["evaluate", "fit", "list", "sample"]
    for name, sub in [(None, parser), *subparsers.choices.items()]:
        code, out, _ = run(capsys, *([] if name is None else [name]), "--help")
        flat = " ".join(out.split())
        assert code == 0, name
        for action in sub._actions:
            default = action.default
            if action.option_strings and default not in (None, False, [], argparse.SUPPRESS):
                assert f"(default: {default})" in flat, (name, action.dest)
            elif action.option_strings and not action.required and default is None:
                # An option without a fixed default says what happens without it.
                assert action.help and ("default" in action.help or "hidden" in action.help
                                        ), (name, action.dest)


def test_plots_are_titled_with_flow_and_nll_and_the_density_has_a_colorbar(run_dir, tmp_path,
                                                                          monkeypatch):
    from tfp_flows import datasets
    from tfp_flows.cli import commands
    from tfp_flows.cli import plots as run_plots

    figures = []
    save = plotting.save_figure

    def record(fig, path, **kwargs):
        figures.append((os.path.basename(path), fig.get_suptitle(),
                        [ax.get_label() for ax in fig.axes], [ax.get_title() for ax in fig.axes]))
        return save(fig, path, **kwargs)

    monkeypatch.setattr(run_plots.plotting, "save_figure", record)
    model = commands._load_model(run_dir)
    split = datasets.load("moons", num_samples=200, seed=0)
    paths = run_plots.save_run_plots(model, split, str(tmp_path), 8, 0, flow="real_nvp",
                                     test_nll=1.2345)
    assert [os.path.basename(p) for p in paths] == ["density.png", "samples.png"]
    (density, density_title, density_axes, _), (samples, samples_title, _, titles) = figures
    assert density_title == samples_title == "real_nvp on moons: test NLL 1.234 nats"
    assert "<colorbar>" in density_axes  # matplotlib labels a colour bar's axes so
    assert titles == ["training data", "model samples"]


def test_cli_imports_no_tensorflow_to_parse():
    import subprocess

    code = ("import sys; from tfp_flows.cli import build_parser; build_parser(); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# -- the default objective follows the distribution ------------------------------------------


class _BoundedFlow(FlowDistribution):
    """A RealNVP posing as a latent-variable model: `elbo` and an S-sample `log_prob`.

    Both equal the exact log-density (a bound that is tight), so the CLI's
    routing (default objective, `num_samples` in evaluation) can be checked
    without depending on another family's module.
    """

    def __init__(self, event_size):
        parameters = dict(locals())
        self.inner = real_nvp(event_size, num_layers=2, hidden_units=(8,))
        super().__init__(event_size, parameters=parameters, name="BoundedFlow",
                         takes_seed=True)
        self._own_keras_layers(*keras_owned.find_keras_layers(self.inner))

    log_prob_kind = contract.IMPORTANCE_SAMPLED

    def elbo(self, x, seed=None, conditional_input=None):
        return self.inner.log_prob(x)

    def _log_prob(self, x, num_samples=None, seed=None):
        return self.inner.log_prob(x)

    def _sample_n(self, n, seed=None):
        return self.inner.sample(n, seed=seed)


register_flow("_cli_test_bounded")(_BoundedFlow)


def test_fit_defaults_to_elbo_and_importance_samples_under_xla(tmp_path, capsys):
    code, out, _ = run(capsys, "fit", "--flow", "_cli_test_bounded", "--dataset", "moons",
                       "--num-samples", "64", "--epochs", "1", "--verbose", "0",
                       "--eval-samples", "7", "--no-plots", "--jit", "--run-dir", str(tmp_path))
    assert code == 0, out
    with open(tmp_path / "metrics.json") as f:
        m = json.load(f)
    assert m["objective"] == "elbo" and m["jit"] is True
    assert np.isfinite(m["history"]["loss"][0]) and np.isfinite(m["test_nll"])
    assert m["nll_kind"] == "importance-sampled (S=7)" and m["eval_samples"] == 7
    assert m["plots"] == [] and not (tmp_path / "density.png").exists()


def test_log_prob_kind_is_declared_not_inferred():
    assert contract.log_prob_kind(_BoundedFlow(2)) == contract.IMPORTANCE_SAMPLED
    assert contract.log_prob_kind(real_nvp(2, num_layers=1, hidden_units=(4,))) == "exact"


# -- usage errors: exit code 2 and a message on stderr ---------------------------------------


FIT = ["fit", "--flow", "real_nvp", "--dataset", "moons", "--num-samples", "64",
       "--epochs", "1", "--verbose", "0"]


@pytest.mark.parametrize("argv, message", [
    (["fit", "--flow", "no_such_flow", "--dataset", "moons", "--run-dir", "x"],
     r"--flow: unknown flow 'no_such_flow'; available: .*real_nvp"),
    (["fit", "--flow", "real_nvp", "--dataset", "no_such_data", "--run-dir", "x"],
     r"--dataset: unknown data set 'no_such_data'; available: moons"),
    (["fit", "--flow", "real_nvp", "--dataset", "power", "--run-dir", "x"],
     r"--dataset power: .*needs a `data_dir`"),
    (["fit", "--flow", "real_nvp", "--dataset", "power", "--data-dir", "/no/such/dir",
      "--run-dir", "x"], r"argument --data-dir: directory '/no/such/dir' does not exist"),
    ([*FIT, "--flow-arg", "num_layers", "--run-dir", "x"],
     r"--flow-arg must be key=value .*; got 'num_layers'"),
    ([*FIT, "--flow-arg", "2x=3", "--run-dir", "x"], r"--flow-arg must be key=value"),
    ([*FIT, "--flow-arg", "num_layers=2", "--flow-arg", "num_layers=3", "--run-dir", "x"],
     r"--flow-arg 'num_layers' is given more than once"),
    ([*FIT, "--flow-arg", "event_size=3", "--run-dir", "x"],
     r"--flow-arg event_size is set from the data"),
    ([*FIT, "--flow-arg", "num_layers=0", "--run-dir", "x"],
     r"--flow real_nvp .*`num_layers` must be a positive integer; got 0"),
    ([*FIT, "--flow-arg", "no_such_arg=1", "--run-dir", "x"],
     r"--flow real_nvp .*no_such_arg"),
    ([*FIT, "--dataset-arg", "noise=-1", "--run-dir", "x"],
     r"--dataset moons: `noise` must be a non-negative finite number; got -1"),
    ([*FIT, "--objective", "elbo", "--run-dir", "x"],
     r"--objective elbo needs a distribution with a `elbo` method"),
    ([*FIT, "--objective", "iwae", "--run-dir", "x"],
     r"--objective iwae needs a distribution with a `importance_weighted_bound` method"),
    ([*FIT, "--epochs", "-1", "--run-dir", "x"],
     r"argument --epochs: must be a positive integer; got '-1'"),
    ([*FIT, "--num-samples", "0", "--run-dir", "x"],
     r"argument --num-samples: must be a positive integer; got '0'"),
    ([*FIT, "--batch-size", "ten", "--run-dir", "x"],
     r"argument --batch-size: must be a positive integer; got 'ten'"),
    ([*FIT, "--learning-rate", "0", "--run-dir", "x"],
     r"argument --learning-rate: must be a positive finite number; got '0'"),
    ([*FIT, "--seed", "-3", "--run-dir", "x"],
     r"argument --seed: must be a non-negative integer; got '-3'"),
    ([*FIT, "--objective", "mle", "--run-dir", "x"], r"argument --objective: invalid choice"),
    (FIT, r"the following arguments are required: --run-dir"),
    (["sample", "--run-dir", "x", "--num", "-5", "--out", "s.npy"],
     r"argument --num: must be a positive integer; got '-5'"),
    (["evaluate", "--run-dir", "/no/such/run"],
     r"--run-dir: directory '/no/such/run' does not exist"),
    (["bench", "baselines_two_moons"], r"argument COMMAND: invalid choice: 'bench'"),
    ([], r"the following arguments are required: COMMAND"),
    (["frobnicate"], r"argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_usage_errors(argv, message, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.strip(), "an error must be explained on stderr"
    assert re.search(message, err), err


def test_run_dir_without_model(tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", "--run-dir", str(tmp_path))
    assert code == 2 and "no metrics.json in" in err
    code, _, err = run(capsys, "sample", "--run-dir", str(tmp_path), "--num", "3",
                       "--out", str(tmp_path / "s.npy"))
    assert code == 2 and "no model.keras in" in err


def test_sample_out_dir_must_exist(run_dir, tmp_path, capsys):
    out = str(tmp_path / "missing" / "s.npy")
    code, _, err = run(capsys, "sample", "--run-dir", run_dir, "--num", "3", "--out", out)
    assert code == 2 and "--out: directory" in err and "does not exist" in err


def test_evaluate_dimension_mismatch(run_dir, capsys):
    code, _, err = run(capsys, "evaluate", "--run-dir", run_dir, "--dataset", "wine")
    assert code == 2
    assert "--dataset wine: has 13 dimensions, but the model" in err
    assert "has event size 2" in err


def test_parse_key_values():
    parsed = cli.parse_key_values(
        ["a=1", "b=0.5", "c=64,64", "d=relu", "e=true", "f=None", "g=[1, 2]", "h=x=y"], "--o")
    assert parsed == {"a": 1, "b": 0.5, "c": (64, 64), "d": "relu", "e": True, "f": None,
                      "g": [1, 2], "h": "x=y"}
    with pytest.raises(cli.CLIError, match=r"--o must be key=value .*got '=1'"):
        cli.parse_key_values(["=1"], "--o")


# -- benchmark scripts (run directly, not through the CLI) ----------------------------------


def _load_benchmark(name):
    sys.path.insert(0, REPO)
    try:
        return runpy.run_path(os.path.join(REPO, "benchmarks", f"{name}.py"))
    finally:
        sys.path.remove(REPO)


def test_bench_baselines_tiny(tmp_path):
    bench = _load_benchmark("baselines_two_moons")
    code = bench["main"](["--flows", "real_nvp", "--epochs", "1", "--num-samples", "64",
                          "--batch-size", "32", "--hidden-units", "4", "--num-layers", "1",
                          "--modes", "nojit", "--out", str(tmp_path)])
    assert code in (0, None)
    text = (tmp_path / "baselines.md").read_text()
    assert "| real_nvp | False |" in text and "tfb.RealNVP" in text
    assert "GFLOP/s" in text and "python benchmarks/baselines_two_moons.py" in text
    rows = json.loads((tmp_path / "baselines.json").read_text())["rows"]
    # Same architecture on both sides: equal parameter counts.
    assert rows[0]["params"] == rows[0]["peer params"] == 4 + 4 + 4 * 2 + 2
    assert np.isfinite(rows[0]["test NLL"]) and np.isfinite(rows[0]["peer test NLL"])
    assert (tmp_path / "img" / "baselines_moons.png").stat().st_size > 0


def test_bench_rejects_bad_arguments(capsys):
    bench = _load_benchmark("baselines_two_moons")
    with pytest.raises(SystemExit) as exc:
        bench["main"](["--epochs", "0"])
    assert exc.value.code == 2
    assert "--epochs must be a positive integer; got 0" in capsys.readouterr().err


def test_banana_is_normalised_and_matches_its_sampler():
    bench = _load_benchmark("reverse_kl_banana")
    log_p = bench["banana_log_prob_fn"](scale=2.0, twist=0.25)
    # Riemann sum on a grid holding all but ~1e-6 of the mass: Z = 1 to 1e-3.
    xs = np.linspace(-12, 12, 481)
    ys = np.linspace(-8, 40, 961)
    gx, gy = np.meshgrid(xs, ys)
    grid = tf.constant(np.stack([gx.ravel(), gy.ravel()], 1), tf.float64)
    z = np.exp(log_p(grid).numpy()).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert z == pytest.approx(1.0, abs=1e-3)
    # Exact samples: E[y1^2] = a^2 = 4 and E[y2] = 0 (5e4 samples: s.e. ~0.03 and ~0.01).
    y = bench["banana_samples"](50_000, 2.0, 0.25, seed=1)
    assert np.mean(y[:, 0] ** 2) == pytest.approx(4.0, abs=0.15)
    assert np.mean(y[:, 1]) == pytest.approx(0.0, abs=0.05)


def test_bench_reverse_kl_tiny(tmp_path):
    bench = _load_benchmark("reverse_kl_banana")
    code = bench["main"](["--epochs", "1", "--steps-per-epoch", "3", "--num-samples", "32",
                          "--num-layers", "1", "--hidden-units", "4", "--num-eval", "500",
                          "--no-jit", "--out", str(tmp_path)])
    assert code in (0, None)
    rows = json.loads((tmp_path / "reverse_kl.json").read_text())["rows"]
    first, last = rows
    # The initial flow is N(0, I) (zero-initialised couplings): KL(N(0, I) || banana) is
    # 0.5 E[y1^2]/4 + log 2 + 0.5 E[(y2 - (y1^2 - 4)/4)^2] - 1 = 0.662 in closed form;
    # 500 samples give a standard error of about 0.03.
    assert first["reverse KL"] == pytest.approx(0.662, abs=0.12)
    assert 0 < last["ESS / n"] <= 1 and last["steps"] == 3
    assert (tmp_path / "img" / "reverse_kl_banana.png").stat().st_size > 0


# -- plotting helpers ---------------------------------------------------------------------


def test_density_grid_of_a_gaussian():
    log_p = lambda p: -0.5 * np.sum(p ** 2, axis=1) - np.log(2 * np.pi)
    xs, ys, grid = plotting.density_grid(log_p, (-6, 6, -6, 6), num_points=121)
    assert grid.shape == (121, 121)
    mass = np.exp(grid).sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert mass == pytest.approx(1.0, abs=1e-3)
    # Rows index y: move along x in the lower half-plane.
    np.testing.assert_allclose(grid[0, 60], log_p(np.array([[0.0, -6.0]]))[0], rtol=1e-6)


def test_plotting_errors():
    with pytest.raises(ValueError, match=r"`bounds` must satisfy xmin < xmax"):
        plotting.density_grid(lambda p: p[:, 0], (1, 0, 0, 1))
    with pytest.raises(ValueError, match=r"`bounds` must be four numbers"):
        plotting.density_grid(lambda p: p[:, 0], (0, 1))
    with pytest.raises(ValueError, match=r"`num_points` must be an integer >= 2; got 1"):
        plotting.density_grid(lambda p: p[:, 0], (0, 1, 0, 1), num_points=1)
    with pytest.raises(ValueError, match=r"`log_prob_fn` must return one value per point"):
        plotting.density_grid(lambda p: p, (0, 1, 0, 1), num_points=3)
    with pytest.raises(ValueError, match=r"`points` must be an array of shape \[n, 2\]; got "
                                         r"shape \(5, 3\)"):
        plotting.data_bounds(np.zeros((5, 3)))


def test_figure_and_bounds(tmp_path):
    data = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    xmin, xmax, ymin, ymax = plotting.data_bounds(data)
    assert xmin < data[:, 0].min() + 1 and xmax > data[:, 0].max() - 1 and ymin < 0 < ymax
    fig = plotting.density_and_samples_figure(
        lambda p: -0.5 * np.sum(p ** 2, axis=1), data, data=data, num_points=20, title="t")
    assert len(fig.axes) >= 3
    path = plotting.save_figure(fig, str(tmp_path / "sub" / "f.png"))
    assert os.path.getsize(path) > 0


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"pip install 'tfp_flows\[plots\]'"):
        plotting.figure_grid(1, 1)
