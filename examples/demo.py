"""The main job: train every family and the baselines on two moons, print one table, write a figure.

    python examples/demo.py --out demo_output

About ten minutes on two cores (docs/demo.md has the measured table). Each
model is trained with the library's pipeline (`tfp_flows.keras.train.fit`:
data-dependent initialisation on the first 1024 points, then Adam with a
cosine-decayed learning rate) for its own number of epochs (the `MODELS`
table: cheap models get more), evaluated on held-out data with
`tfp_flows.keras.train.evaluate` (the exact log-likelihood, or an
importance-sampled estimate where that is the family's log-density, as
`tfp_flows.internal.contract.log_prob_kind` declares), and drawn into one
figure: a row per model, its density and 2,000 samples.

Training steps run as TensorFlow graphs without XLA (`--jit` turns XLA on):
on these small 2-D models XLA compilation costs far more than it saves. The
table reports the first epoch ("compile s": tracing plus that epoch's steps)
apart from the remaining epochs ("train s") and evaluation plus plotting
("eval s"). One progress line per model and per tenth of its epochs.

    --quick            a few steps per model (the test suite's smoke run)
    --epoch-scale 0.5  half of every model's epochs (a faster, rougher demo)
    --only a,b         a subset, by registered flow name
"""

import argparse
import json
import os
import sys
import time
from typing import NamedTuple

from tfp_flows.internal import tf_logs

tf_logs.import_tensorflow(quiet=True)  # hides TensorFlow's start-up lines, keeps real errors

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfp_flows as tff  # noqa: E402
from tfp_flows.evaluation import markdown_table  # noqa: E402
from tfp_flows.internal import contract  # noqa: E402


class Model(NamedTuple):
    """One row of the demo: what to build and how long to train it."""

    label: str
    family: str
    flow: str  # a registered flow name
    kwargs: dict
    epochs: int
    learning_rate: float = 5e-3  # peak of the cosine decay
    objective: str = "nll"
    jit: bool = False  # XLA-compile the training step (its compile time exceeds the gain here)


MODELS = [
    Model("RealNVP", "baseline", "real_nvp", dict(num_layers=6), 40),
    Model("Glow", "baseline", "glow", dict(num_layers=6), 60, 2e-3),
    Model("MAF", "baseline", "maf", dict(num_layers=5), 40),
    Model("NSF (spline coupling)", "baseline", "neural_spline", dict(num_layers=4), 25),
    Model("Ferumal (kernel coupling)", "kernelised coupling", "ferumal",
          dict(num_blocks=4, num_inducing=32), 40),
    Model("FFJORD", "continuous-time", "ffjord",
          dict(hidden_units=(32, 32), solver="rk4", num_steps=8), 30, 1e-2),
    Model("Funnel NSF 2->1", "funnel", "funnel_nsf", dict(latent_size=1, num_layers=4), 20),
    Model("Augmented RealNVP (B=2)", "augmentation", "augmented_real_nvp",
          dict(num_augment=2, num_layers=6), 80, objective="elbo"),
    Model("LGF-RealNVP", "LGF / CIF", "lgf_real_nvp", dict(num_layers=4), 80,
          objective="elbo"),
]

EVAL_SAMPLES = 200  # importance samples S of the test NLL (augmentation, LGF)
GRID_SAMPLES = 32  # importance samples per grid point of the density panels


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="demo_output", help="directory for the figure and table")
    p.add_argument("--dataset", default="moons", help="a 2-D dataset of tfp_flows.datasets")
    p.add_argument("--num-samples", type=int, default=4000, help="training points")
    p.add_argument("--epoch-scale", type=float, default=1.0,
                   help="multiplies every model's epochs (MODELS table)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--jit", action="store_true",
                   help="XLA-compile every model's training steps")
    p.add_argument("--only", default=None, help="comma-separated flow names to run")
    p.add_argument("--quick", action="store_true", help="a few steps per model (smoke test)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


class _Progress(keras.callbacks.Callback):
    """Prints one line per tenth of the epochs (and the first): training loss, seconds."""

    def __init__(self, label, epochs):
        super().__init__()
        self.label, self.epochs = label, epochs
        self.every = max(1, epochs // 10)
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done == 1 or done % self.every == 0 or done == self.epochs:
            logs = logs or {}
            print(f"  {self.label}: epoch {done:4d}/{self.epochs}  loss {logs.get('loss', 0):.3f}"
                  f"  {time.perf_counter() - self.start:6.1f} s", flush=True)


def train_one(spec, split, args):
    epochs = 1 if args.quick else max(1, round(spec.epochs * args.epoch_scale))
    steps_per_epoch = 2 if args.quick else -(-len(split.train) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        spec.learning_rate, decay_steps=epochs * steps_per_epoch, alpha=0.02)
    result = tff.keras.train.fit(
        spec.flow, split.train,
        flow_kwargs={"event_size": split.dim, **spec.kwargs}, objective=spec.objective,
        seed=args.seed, learning_rate=schedule, jit_compile=args.jit or spec.jit,
        batch_size=args.batch_size, epochs=epochs,
        steps_per_epoch=2 if args.quick else None, verbose=0,
        callbacks=[_Progress(spec.label, epochs)])
    return result, epochs


def _log_prob_fn(model, num_samples, seed):
    """`[n, 2] numpy -> [n]` log-density of the model, for the density panels."""
    dtype = model.distribution.dtype
    kwargs = {}
    if contract.log_prob_kind(model.distribution) == contract.IMPORTANCE_SAMPLED:
        kwargs = {"num_samples": num_samples, "seed": (seed, 7)}
    return lambda p: model.log_prob(tf.constant(p, dtype), **kwargs).numpy()


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    split = tff.datasets.load(args.dataset, num_samples=args.num_samples, seed=args.seed)
    if split.dim != 2:
        raise SystemExit(f"--dataset must be 2-D for the demo's plots; {args.dataset} is "
                         f"{split.dim}-D.")
    chosen = MODELS if args.only is None else [m for m in MODELS if m.flow in args.only.split(",")]
    if not chosen:
        raise SystemExit(f"--only matched no model; choose from {[m.flow for m in MODELS]}.")
    from tfp_flows import plotting

    bounds = plotting.data_bounds(split.train)
    fig, axes = plotting.figure_grid(len(chosen) + 1, 2, panel_size=2.9)
    plotting.plot_samples(axes[0][0], split.test, bounds, title=f"{args.dataset}: test data",
                          color="k")
    plotting.plot_samples(axes[0][1], split.train[:2000], bounds,
                          title="2,000 training points", color="k")
    rows, start, cpu_start = [], time.perf_counter(), time.process_time()
    for i, spec in enumerate(chosen, start=1):
        print(f"=== {i}/{len(chosen)} {spec.label} [{spec.family}] ===", flush=True)
        cpu = time.process_time()
        result, epochs = train_one(spec, split, args)
        model = result.model
        t0 = time.perf_counter()
        nll, kind = tff.keras.train.evaluate(model, split.test,
                                             num_samples=16 if args.quick else EVAL_SAMPLES,
                                             seed=args.seed)
        plotting.plot_density(axes[i][0], _log_prob_fn(model, GRID_SAMPLES, args.seed), bounds,
                              num_points=40 if args.quick else 80,
                              title=f"{spec.label}\n{nll:.3f} nats")
        samples = model.sample(2000, seed=(args.seed, i)).numpy()
        plotting.plot_samples(axes[i][1], samples, bounds, title="samples")
        row = {"family": spec.family, "model": spec.label, "flow": spec.flow,
               "test NLL (nats)": nll,
               "log-density kind": contract.log_prob_kind(model.distribution),
               "evaluated as": kind, "params": tff.keras.train.count_parameters(model),
               "epochs": epochs, "steps": result.steps,
               "compile s": result.compile_seconds, "train s": result.train_seconds,
               "eval s": time.perf_counter() - t0, "CPU s": time.process_time() - cpu}
        rows.append(row)
        print(f"{spec.label}: test NLL {nll:.3f} nats ({kind}); first epoch (compile) "
              f"{row['compile s']:.1f} s, {epochs - 1} more epochs {row['train s']:.1f} s, "
              f"eval + plots {row['eval s']:.1f} s; CPU {row['CPU s']:.1f} s", flush=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:  # after every model
            json.dump({"rows": rows, "seconds": time.perf_counter() - start,
                       "cpu_seconds": time.process_time() - cpu_start,
                       "load_average": os.getloadavg()}, f, indent=1)
    fig.tight_layout()
    plotting.save_figure(fig, os.path.join(args.out, "demo_densities_and_samples.png"))
    table = markdown_table(rows, ["family", "model", "test NLL (nats)", "log-density kind",
                                  "params", "epochs", "compile s", "train s", "eval s",
                                  "CPU s"])
    total = time.perf_counter() - start
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    print("\n" + table)
    print(f"\nTotal {total / 60:.1f} min wall, {(time.process_time() - cpu_start) / 60:.1f} min "
          f"CPU (load average {os.getloadavg()[0]:.1f}). Figure and table written to "
          f"{os.path.abspath(args.out)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
