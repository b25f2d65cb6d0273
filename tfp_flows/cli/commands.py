"""The `tfp-flows` subcommands: `fit`, `evaluate`, `sample`, `list`.

`fit` trains with the library's one pipeline (`tfp_flows.keras.train.fit`:
seed, build, initialise from data, compile, fit with early stopping), and
measures NLL with `tfp_flows.keras.train.evaluate`. TensorFlow is imported by the
commands that need it, not at import time.
"""

import json
import os
import sys
import textwrap

from tfp_flows.cli.parsing import CLIError, parse_key_values

_WIDTH = 100


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

    return keras.saving.load_model(_run_dir_file(run_dir, "model.keras"))


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, tuple | set):
        return list(obj)
    return str(obj)


def _objective(name, iwae_samples, model, flow):
    """The objective named on the command line, checked against the distribution."""
    from tfp_flows.keras import objectives, train

    name = train.resolve_objective(name, model.distribution)
    method = {"elbo": "elbo", "iwae": "importance_weighted_bound"}.get(name)
    if method and not hasattr(model.distribution, method):
        raise CLIError(f"--objective {name} needs a distribution with a `{method}` "
                       f"method; flow {flow!r} builds a "
                       f"{type(model.distribution).__name__}, which has none.")
    return name, objectives.ImportanceWeighted(iwae_samples) if name == "iwae" else name


# -- Commands -----------------------------------------------------------------------------


def cmd_list(args):
    """Flows (from `tfp_flows.internal.flow_catalog`: no TensorFlow import) and data sets."""
    from tfp_flows import datasets
    from tfp_flows.internal import flow_catalog

    infos = flow_catalog.flow_infos()
    width = max([len(i.name) for i in infos] + [8]) + 2
    indent = " " * (2 + width)
    print("flows ([conditional]: takes a condition c of size `conditional_size`):")
    for info in infos:
        head = f"  {info.name:{width}s}"
        tag = "[conditional] " if info.conditional else ""
        print(textwrap.fill(tag + (info.summary or "(no docstring)"), _WIDTH,
                            initial_indent=head, subsequent_indent=indent))
        if args.verbose:
            print(textwrap.fill("arguments: " + ", ".join(info.arguments), _WIDTH,
                                initial_indent=indent, subsequent_indent=indent + "  "))
    if not args.verbose:
        print("(`tfp-flows list --verbose` shows each flow's arguments)")
    print("datasets:")
    for name in datasets.available():
        print(f"  {name}")
    return 0


def cmd_fit(args):
    from tfp_flows.flows import registry
    from tfp_flows.keras import NonFiniteLossError, train

    flows = registry.available_flows()
    if args.flow not in flows:
        raise CLIError(f"--flow: unknown flow {args.flow!r}; available: {', '.join(flows)}.")
    flow_args = parse_key_values(args.flow_arg, "--flow-arg")
    if "event_size" in flow_args:
        raise CLIError("--flow-arg event_size is set from the data; do not pass it.")
    dataset_args = parse_key_values(args.dataset_arg, "--dataset-arg")
    split = _load_split(args.dataset, args.data_dir, args.num_samples, args.seed, dataset_args)
    eval_samples = args.eval_samples or 100

    import keras

    keras.utils.set_random_seed(args.seed)
    try:
        model = train.build_model(args.flow, seed=args.seed,
                                     flow_kwargs={"event_size": split.dim, **flow_args})
    except (ValueError, TypeError) as err:
        raise CLIError(f"--flow {args.flow} with --flow-arg {flow_args}: {err}") from err
    objective_name, objective = _objective(args.objective, args.iwae_samples, model, args.flow)

    os.makedirs(args.run_dir, exist_ok=True)
    try:  # guarded (train.fit's default): a NaN / Inf loss stops with the step and the part
        result = train.fit(
            model, split.train, split.validation, objective=objective, seed=args.seed,
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            jit_compile=args.jit, patience=args.patience,
            checkpoint=os.path.join(args.run_dir, "best.weights.h5"),
            init_rows=train.DEFAULT_INIT_ROWS if args.init_rows is None else args.init_rows,
            verbose=args.verbose)
    except NonFiniteLossError as err:
        raise CLIError(f"training stopped: {err} The best finite weights of the finished "
                       f"epochs (if any) are in {args.run_dir}/best.weights.h5.") from err

    test_nll, kind = train.evaluate(model, split.test, num_samples=eval_samples, seed=args.seed)
    val_nll, _ = train.evaluate(model, split.validation, num_samples=eval_samples,
                                seed=args.seed + 1)
    model.save(os.path.join(args.run_dir, "model.keras"))
    plots = []
    if split.dim == 2 and not args.no_plots:
        from tfp_flows.cli import plots as run_plots

        try:
            plots = run_plots.save_run_plots(model, split, args.run_dir, eval_samples,
                                             args.seed, flow=args.flow, test_nll=test_nll)
        except ImportError as err:
            print(f"tfp-flows: warning: no plots: {err}", file=sys.stderr)
    hist = result.history
    metrics = {
        "flow": args.flow, "flow_args": flow_args, "dataset": split.name,
        "data_dir": args.data_dir, "num_samples": args.num_samples, "seed": args.seed,
        "dataset_args": dataset_args, "event_size": split.dim,
        "num_train": len(split.train), "num_validation": len(split.validation),
        "num_test": len(split.test),
        "objective": objective_name, "jit": args.jit, "learning_rate": args.learning_rate,
        "batch_size": args.batch_size, "epochs_requested": args.epochs,
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "init_rows": args.init_rows if args.init_rows is not None
        else train.DEFAULT_INIT_ROWS,
        "test_nll": test_nll, "validation_nll": val_nll, "nll_kind": kind,
        "eval_samples": eval_samples if kind != "exact" else None,
        "best_val_loss": min(hist["val_loss"]) if hist.get("val_loss") else None,
        "train_seconds": result.seconds, "first_epoch_seconds": result.compile_seconds,
        "seconds_per_epoch": result.seconds / max(result.epochs_run, 1),
        "num_params": train.count_parameters(model),
        "history": hist, "plots": [os.path.basename(p) for p in plots],
    }
    _write_json(os.path.join(args.run_dir, "metrics.json"), metrics)
    print(f"{args.flow} on {split.name}: test NLL {test_nll:.4f} nats ({kind}), "
          f"{metrics['num_params']} params, {result.seconds:.1f} s; wrote {args.run_dir}")
    return 0


def cmd_evaluate(args):
    metrics_path = _run_dir_file(args.run_dir, "metrics.json")
    with open(metrics_path) as f:
        run = json.load(f)
    model = _load_model(args.run_dir)
    from tfp_flows.keras import train

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
    nll, kind = train.evaluate(model, x, num_samples=eval_samples, seed=seed)
    result = {"dataset": split.name, "split": args.split, "nll": nll, "nll_kind": kind,
              "num_points": len(x), "seed": seed}
    _write_json(os.path.join(args.run_dir, "evaluation.json"), result)
    print(f"{args.split} NLL on {split.name}: {nll:.4f} nats ({kind}, {len(x)} points)")
    return 0


def cmd_sample(args):
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CLIError(f"--out: directory {out_dir!r} does not exist.")
    model = _load_model(args.run_dir)
    import numpy as np
    import tensorflow as tf

    samples = np.asarray(model.sample(args.num, seed=tf.constant([args.seed, 0], tf.int32)))
    np.save(args.out, samples)
    print(f"wrote {samples.shape[0]} samples of dimension {samples.shape[-1]} to {args.out}")
    return 0


COMMANDS = {"fit": cmd_fit, "evaluate": cmd_evaluate, "sample": cmd_sample, "list": cmd_list}
