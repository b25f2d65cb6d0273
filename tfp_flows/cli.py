"""`tfp-flows`: train, evaluate and sample registered flows, run benchmarks.

    tfp-flows list
    tfp-flows fit --flow real_nvp --dataset moons --epochs 50 --run-dir runs/moons
    tfp-flows fit --flow maf --dataset power --data-dir data/ --flow-arg num_layers=10 \\
        --flow-arg hidden_units=512,512 --jit --run-dir runs/power
    tfp-flows evaluate --run-dir runs/moons
    tfp-flows sample --run-dir runs/moons --num 1000 --out samples.npy
    tfp-flows bench baselines_two_moons --epochs 5

(`python -m tfp_flows ...` is the same.) Flows are looked up by name in the
flow registry at run time, after importing every module of `tfp_flows.flows`,
so flows registered by any family module are available. `main(argv)` returns
the exit code: 0 on success, 2 for a usage error (message on stderr).

`fit` writes to the run directory:

- `metrics.json`: test and validation NLL (nats; an importance-sampled
  estimate with `--eval-samples` samples for distributions whose `log_prob`
  takes `num_samples`), training seconds, parameter count, the Keras history,
  flow name and arguments, data set and the full command configuration;
- `model.keras` (`FlowModel.save`; reload with `keras.saving.load_model`);
- `best.weights.h5` (the `ModelCheckpoint` of the best validation loss,
  restored before evaluation);
- for 2-D data, `density.png` (model density on a grid) and `samples.png`
  (training data beside model samples).
"""

import argparse
import ast
import importlib
import inspect
import json
import os
import pkgutil
import re
import runpy
import sys
import time

_OBJECTIVES = ("nll", "elbo", "iwae")
_SPLITS = ("test", "validation", "train")
_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_NOT_BENCHMARKS = {"__init__", "common"}


class CLIError(Exception):
    """A usage error: printed as `tfp-flows: error: <message>`, exit code 2."""


# -- Argument types -----------------------------------------------------------------------


def _number_type(convert, accept, expected):
    """An argparse `type=` that converts with `convert` and rejects values `accept` refuses."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}")
        return value

    return parse


_positive_int = _number_type(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number_type(int, lambda v: v >= 0, "a non-negative integer")
_positive_float = _number_type(float, lambda v: 0 < v < float("inf"), "a positive finite number")


def _existing_dir(text):
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"directory {text!r} does not exist")
    return text


def _parse_value(text):
    """A Python literal (`3`, `0.5`, `64,64`, `(64, 64)`, `True`), else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[lowered]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_key_values(items, option):
    """`["a=1", "b=x"] -> {"a": 1, "b": "x"}`; raises `CLIError` naming `option`."""
    result = {}
    for item in items or ():
        match = _KEY_VALUE.match(item)
        if match is None:
            raise CLIError(f"{option} must be key=value with a Python identifier as key "
                           f"(e.g. {option} num_layers=4); got {item!r}.")
        key, value = match.groups()
        if key in result:
            raise CLIError(f"{option} {key!r} is given more than once.")
        result[key] = _parse_value(value)
    return result


# -- Registries ---------------------------------------------------------------------------


def discover_flows():
    """Imports every module of `tfp_flows.flows` (they register flows); returns the names.

    A module that fails to import is reported on stderr and skipped, so one
    broken family does not take the whole CLI down.
    """
    import tfp_flows.flows as flows_pkg

    for info in pkgutil.iter_modules(flows_pkg.__path__):
        name = f"{flows_pkg.__name__}.{info.name}"
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any import failure is reported, not fatal
            print(f"tfp-flows: warning: could not import {name}: {err}", file=sys.stderr)
    return flows_pkg.available_flows()


def benchmarks_dir():
    """The `benchmarks/` directory of the source checkout (or `$TFP_FLOWS_BENCHMARKS`)."""
    env = os.environ.get("TFP_FLOWS_BENCHMARKS")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks")


def available_benchmarks():
    path = benchmarks_dir()
    if not os.path.isdir(path):
        return []
    names = []
    for f in sorted(os.listdir(path)):
        if not f.endswith(".py") or f[:-3] in _NOT_BENCHMARKS:
            continue
        with open(os.path.join(path, f)) as fh:
            text = fh.read()
        # Scripts only: helper modules shared by benchmarks have no `__main__` guard.
        if re.search(r"""__name__\s*==\s*["']__main__["']""", text):
            names.append(f[:-3])
    return names


# -- Parser -------------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfp-flows", description="Train, evaluate and sample normalizing flows.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    fit = sub.add_parser("fit", help="train a registered flow on a data set")
    fit.add_argument("--flow", required=True, help="registered flow name (see `list`)")
    _add_data_args(fit, required=True)
    fit.add_argument("--epochs", type=_positive_int, default=100)
    fit.add_argument("--batch-size", type=_positive_int, default=256)
    fit.add_argument("--learning-rate", type=_positive_float, default=1e-3)
    fit.add_argument("--objective", choices=_OBJECTIVES, default=None,
                     help="training objective; default 'elbo' if the distribution has an "
                          "`elbo` method, else 'nll'")
    fit.add_argument("--iwae-samples", type=_positive_int, default=8,
                     help="importance samples of the 'iwae' objective")
    fit.add_argument("--flow-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="keyword argument of the flow builder (repeatable); values are "
                          "Python literals, e.g. hidden_units=64,64")
    fit.add_argument("--patience", type=_positive_int, default=10,
                     help="EarlyStopping patience in epochs (on val_loss)")
    fit.add_argument("--jit", action="store_true", help="compile training steps with XLA")
    fit.add_argument("--no-plots", action="store_true", help="skip the 2-D PNG plots")
    fit.add_argument("--verbose", type=int, choices=(0, 1, 2), default=2)
    fit.add_argument("--run-dir", required=True, help="output directory (created)")

    ev = sub.add_parser("evaluate", help="test NLL of a trained run")
    ev.add_argument("--run-dir", required=True)
    _add_data_args(ev, required=False)
    ev.add_argument("--split", choices=_SPLITS, default="test")

    sample = sub.add_parser("sample", help="draw samples of a trained run into a .npy file")
    sample.add_argument("--run-dir", required=True)
    sample.add_argument("--num", type=_positive_int, required=True)
    sample.add_argument("--out", required=True, help="output .npy file")
    sample.add_argument("--seed", type=_non_negative_int, default=0)

    bench = sub.add_parser("bench", help="run a script from benchmarks/ (arguments passed on)")
    bench.add_argument("name", help="benchmark name (see `list`)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark")

    sub.add_parser("list", help="list flows, data sets and benchmarks")
    return parser


def _add_data_args(p, required):
    p.add_argument("--dataset", required=required, default=None,
                   help="data set name (see `list`)" + ("" if required else
                                                          "; default: the run's"))
    p.add_argument("--data-dir", type=_existing_dir, default=None,
                   help="folder of the UCI data (MAF layout)")
    p.add_argument("--num-samples", type=_positive_int, default=None,
                   help="training points (generated sets) or training subsample (real sets)")
    p.add_argument("--dataset-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument of the data loader, e.g. noise=0.05 (repeatable)")
    p.add_argument("--seed", type=_non_negative_int, default=None if not required else 0,
                   help="seed of the data and the model")
    p.add_argument("--eval-samples", type=_positive_int, default=None,
                   help="importance samples S for distributions whose log_prob takes "
                        "`num_samples` (default 100)")


# -- Helpers ------------------------------------------------------------------------------


def _load_split(name, data_dir, num_samples, seed, dataset_args):
    from tfp_flows import datasets

    if name.lower() not in datasets.available():
        raise CLIError(f"--dataset: unknown data set {name!r}; available: "
                       f"{', '.join(datasets.available())}.")
    try:
        return datasets.load(name, num_samples=num_samples, seed=seed, data_dir=data_dir,
                             **dataset_args)
    except (ValueError, TypeError, OSError) as err:
        raise CLIError(f"--dataset {name}: {err}") from err


def _run_dir_file(run_dir, name):
    path = os.path.join(run_dir, name)
    if not os.path.isdir(run_dir):
        raise CLIError(f"--run-dir: directory {run_dir!r} does not exist.")
    if not os.path.exists(path):
        raise CLIError(f"--run-dir: no {name} in {run_dir!r}; train one with `tfp-flows fit`.")
    return path


def _load_model(run_dir):
    import keras

    import tfp_flows.keras  # noqa: F401  (registers FlowModel and objectives for loading)

    path = _run_dir_file(run_dir, "model.keras")
    discover_flows()
    return keras.saving.load_model(path)


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, tuple | set):
        return list(obj)
    return str(obj)


def _save_plots(model, split, run_dir, eval_samples, seed):
    """density.png and samples.png for 2-D data; returns the paths written."""
    import numpy as np
    import tensorflow as tf

    from tfp_flows import plotting
    from tfp_flows.internal import contract

    bounds = plotting.data_bounds(split.train)
    estimated = contract.log_prob_kind(model.distribution) == contract.IMPORTANCE_SAMPLED
    s = min(eval_samples, 32) if estimated else None  # the grid has 10^4 points

    def log_prob_fn(points):
        kwargs = {"num_samples": s, "seed": tf.constant([seed, 7], tf.int32)} if s else {}
        return model.log_prob(tf.constant(points, model.distribution.dtype), **kwargs).numpy()

    fig, axes = plotting.figure_grid(1, 1, panel_size=4.5)
    plotting.plot_density(axes[0, 0], log_prob_fn, bounds,
                          title="model density" + (f" (S={s})" if s else ""))
    fig.tight_layout()
    density = plotting.save_figure(fig, os.path.join(run_dir, "density.png"))

    samples = np.asarray(model.sample(2000, seed=tf.constant([seed, 11], tf.int32)))
    fig, axes = plotting.figure_grid(1, 2, panel_size=4.0)
    plotting.plot_samples(axes[0, 0], split.train[:2000], bounds, title="training data",
                          color="k")
    plotting.plot_samples(axes[0, 1], samples, bounds, title="model samples")
    fig.tight_layout()
    sample_path = plotting.save_figure(fig, os.path.join(run_dir, "samples.png"))
    return [density, sample_path]


# -- Commands -----------------------------------------------------------------------------


def cmd_list(args):
    from tfp_flows import datasets
    from tfp_flows.flows import registry

    names = discover_flows()
    print("flows:")
    for name in names:
        doc = inspect.getdoc(registry._FLOWS[name]) or ""
        print(f"  {name:24s} {doc.splitlines()[0] if doc else ''}")
    print("datasets:")
    for name in datasets.available():
        print(f"  {name}")
    print("benchmarks:")
    for name in available_benchmarks():
        print(f"  {name}")
    return 0


def cmd_fit(args):
    import keras
    import numpy as np

    from tfp_flows.evaluation import mean_log_prob
    from tfp_flows.keras import FlowModel, objectives

    flows = discover_flows()
    if args.flow not in flows:
        raise CLIError(f"--flow: unknown flow {args.flow!r}; available: {', '.join(flows)}.")
    flow_args = parse_key_values(args.flow_arg, "--flow-arg")
    if "event_size" in flow_args:
        raise CLIError("--flow-arg event_size is set from the data; do not pass it.")
    dataset_args = parse_key_values(args.dataset_arg, "--dataset-arg")
    split = _load_split(args.dataset, args.data_dir, args.num_samples, args.seed, dataset_args)
    eval_samples = args.eval_samples or 100

    keras.utils.set_random_seed(args.seed)
    try:
        model = FlowModel.from_flow(args.flow, seed=args.seed, event_size=split.dim,
                                    **flow_args)
    except (ValueError, TypeError) as err:
        raise CLIError(f"--flow {args.flow} with --flow-arg {flow_args}: {err}") from err
    objective_name = args.objective
    if objective_name is None:
        objective_name = "elbo" if hasattr(model.distribution, "elbo") else "nll"
    if objective_name == "iwae":
        objective = objectives.ImportanceWeighted(args.iwae_samples)
    else:
        objective = objectives.get(objective_name)
    method = {"elbo": "elbo", "iwae": "importance_weighted_bound"}.get(objective_name)
    if method and not hasattr(model.distribution, method):
        raise CLIError(f"--objective {objective_name} needs a distribution with a `{method}` "
                       f"method; flow {args.flow!r} builds a "
                       f"{type(model.distribution).__name__}, which has none.")
    model.objective = objective

    os.makedirs(args.run_dir, exist_ok=True)
    model.compile(keras.optimizers.Adam(args.learning_rate), jit_compile=args.jit)
    model.initialize_from_data(split.train[:min(len(split.train), 1024)])
    best = os.path.join(args.run_dir, "best.weights.h5")
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience),
        keras.callbacks.ModelCheckpoint(best, monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    start = time.perf_counter()
    history = model.fit(split.train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(split.validation,), shuffle=True,
                        callbacks=callbacks, verbose=args.verbose)
    train_seconds = time.perf_counter() - start
    if os.path.exists(best):
        model.load_weights(best)

    test_lp, kind = mean_log_prob(model, split.test, eval_samples, args.seed)
    val_lp, _ = mean_log_prob(model, split.validation, eval_samples, args.seed + 1)
    model.save(os.path.join(args.run_dir, "model.keras"))
    plots = []
    if split.dim == 2 and not args.no_plots:
        try:
            plots = _save_plots(model, split, args.run_dir, eval_samples, args.seed)
        except ImportError as err:
            print(f"tfp-flows: warning: no plots: {err}", file=sys.stderr)
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    epochs_run = len(hist.get("loss", []))
    metrics = {
        "flow": args.flow, "flow_args": flow_args, "dataset": split.name,
        "data_dir": args.data_dir, "num_samples": args.num_samples, "seed": args.seed,
        "dataset_args": dataset_args, "event_size": split.dim,
        "num_train": len(split.train), "num_validation": len(split.validation),
        "num_test": len(split.test),
        "objective": objective_name, "jit": args.jit, "learning_rate": args.learning_rate,
        "batch_size": args.batch_size, "epochs_requested": args.epochs,
        "epochs_run": epochs_run,
        "test_nll": -test_lp, "validation_nll": -val_lp, "nll_kind": kind,
        "eval_samples": eval_samples if kind != "exact" else None,
        "best_val_loss": float(np.min(hist["val_loss"])) if hist.get("val_loss") else None,
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(epochs_run, 1),
        "num_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "history": hist, "plots": [os.path.basename(p) for p in plots],
    }
    _write_json(os.path.join(args.run_dir, "metrics.json"), metrics)
    print(f"{args.flow} on {split.name}: test NLL {-test_lp:.4f} nats ({kind}), "
          f"{metrics['num_params']} params, {train_seconds:.1f} s; wrote {args.run_dir}")
    return 0


def cmd_evaluate(args):
    from tfp_flows.evaluation import mean_log_prob
    metrics_path = _run_dir_file(args.run_dir, "metrics.json")
    with open(metrics_path) as f:
        run = json.load(f)
    model = _load_model(args.run_dir)
    name = args.dataset or run["dataset"]
    # The run's data options apply to the run's data set only, not to a --dataset override.
    same = name.lower() == run["dataset"]
    data_dir = args.data_dir or (run.get("data_dir") if same else None)
    num_samples = args.num_samples if args.num_samples is not None else (
        run.get("num_samples") if same else None)
    seed = args.seed if args.seed is not None else run.get("seed", 0)
    dataset_args = (parse_key_values(args.dataset_arg, "--dataset-arg") if args.dataset_arg
                    else run.get("dataset_args", {}) if same else {})
    split = _load_split(name, data_dir, num_samples, seed, dataset_args)
    event_size = model.distribution.event_shape[-1]
    if split.dim != event_size:
        raise CLIError(f"--dataset {name}: has {split.dim} dimensions, but the model in "
                       f"{args.run_dir!r} has event size {event_size}.")
    eval_samples = args.eval_samples or run.get("eval_samples") or 100
    x = getattr(split, args.split)
    lp, kind = mean_log_prob(model, x, eval_samples, seed)
    result = {"dataset": split.name, "split": args.split, "nll": -lp, "nll_kind": kind,
              "num_points": len(x), "seed": seed}
    _write_json(os.path.join(args.run_dir, "evaluation.json"), result)
    print(f"{args.split} NLL on {split.name}: {-lp:.4f} nats ({kind}, {len(x)} points)")
    return 0


def cmd_sample(args):
    import numpy as np
    import tensorflow as tf

    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CLIError(f"--out: directory {out_dir!r} does not exist.")
    model = _load_model(args.run_dir)
    samples = np.asarray(model.sample(args.num, seed=tf.constant([args.seed, 0], tf.int32)))
    np.save(args.out, samples)
    print(f"wrote {samples.shape[0]} samples of dimension {samples.shape[-1]} to {args.out}")
    return 0


def cmd_bench(args):
    names = available_benchmarks()
    if args.name not in names:
        raise CLIError(f"bench: unknown benchmark {args.name!r}; available: "
                       f"{', '.join(names) or f'none (no scripts in {benchmarks_dir()!r})'}.")
    root = os.path.dirname(benchmarks_dir())
    path = os.path.join(benchmarks_dir(), f"{args.name}.py")
    if root not in sys.path:
        sys.path.insert(0, root)  # benchmark scripts import `benchmarks.common`
    # Exactly `python benchmarks/NAME.py ARGS...`, in this process (no second TF import).
    saved = sys.argv
    sys.argv = [path, *args.args]
    try:
        runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as exc:  # the script's sys.exit(main()) or its argparse errors
        code = exc.code
    finally:
        sys.argv = saved
    return 0 if code is None else int(code) if isinstance(code, int) else 1


_COMMANDS = {"fit": cmd_fit, "evaluate": cmd_evaluate, "sample": cmd_sample,
             "bench": cmd_bench, "list": cmd_list}


def main(argv=None):
    """Runs the CLI on `argv` (default `sys.argv[1:]`); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors, 0 for --help
        return 0 if exc.code is None else exc.code
    try:
        return _COMMANDS[args.command](args)
    except CLIError as err:
        print(f"tfp-flows: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
