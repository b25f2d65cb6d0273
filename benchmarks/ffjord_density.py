"""FFJORD density estimation: 2-D toys (plots, test NLL, NFE) and low-data tabular sets.

Trains `"ffjord"` with the library's pipeline (`tfp_flows.keras.train.fit`) under
`jit_compile=True`: Hutchinson trace (one Rademacher probe), DOPRI5
rtol = atol = 1e-5, adjoint gradients, RNODE regularisers (kinetic and Jacobian
weights 0.01), a budget of steps and/or wall-clock seconds per data set (a
Keras callback stops `fit`). Test NLL is evaluated with the exact trace on the
same weights.

    python benchmarks/ffjord_density.py --task toys --steps 400 --out docs
    python benchmarks/ffjord_density.py --task tabular --steps 400 --out docs
    python benchmarks/ffjord_density.py --task uci --data-dir DIR --budget 3600 --out docs

`--task uci` needs the UCI files of the MAF paper (POWER, GAS, HEPMASS,
MINIBOONE, BSDS300) under `--data-dir`; they are not on this machine.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tfp_flows import datasets, flows  # noqa: E402
from tfp_flows.keras import RNODE  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate, fit  # noqa: E402

TOYS = ("moons", "checkerboard", "eight_gaussians", "two_spirals")
TABULAR = ("wine", "breast_cancer", "digits")
UCI = ("power", "gas", "hepmass", "miniboone", "bsds300")
PAPER_UCI = {"power": -0.46, "gas": -8.59, "hepmass": 14.92, "miniboone": 10.43,
             "bsds300": -157.40}


class Budget(keras.callbacks.Callback):
    """Stops `fit` after `max_steps` steps or `seconds` of wall time (tracing included),
    whichever comes first (None: no limit of that kind)."""

    def __init__(self, seconds=None, max_steps=None):
        super().__init__()
        self.seconds, self.max_steps, self.steps = seconds, max_steps, 0

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        out_of_time = (self.seconds is not None
                       and time.perf_counter() - self.start > self.seconds)
        if out_of_time or (self.max_steps is not None and self.steps >= self.max_steps):
            self.model.stop_training = True


def train(split, args, hidden_units, batch_size):
    budget = Budget(args.budget, args.steps)
    result = fit(
        "ffjord", split.train, flow_kwargs=dict(
            event_size=split.dim, hidden_units=hidden_units, trace="hutchinson",
            solver="dopri5", rtol=1e-5, atol=1e-5),
        objective=RNODE(kinetic_weight=0.01, jacobian_weight=0.01), seed=args.seed,
        learning_rate=args.lr, jit_compile=True, batch_size=batch_size, epochs=100000,
        callbacks=[budget])
    model = result.model
    model.with_trace("exact")  # evaluate the trained weights with the exact trace
    (block,) = flows.ffjord_blocks(model.distribution)
    log_prob = tf.function(lambda v: model.log_prob(v))
    nll = evaluate(model, split.test, batch_size=1000).nll
    nfe = int(block.solve(split.test[:batch_size], "inverse").nfe)
    return model, {"steps": budget.steps, "train time (s)": result.seconds, "test NLL": nll,
                   "NFE (density solve)": nfe, "params": count_parameters(model)}, log_prob


def toys(args):
    rows = []
    fig, axes = plt.subplots(2, len(TOYS), figsize=(3 * len(TOYS), 6))
    grid = np.linspace(-4, 4, args.grid)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], -1).astype("float32")
    for j, name in enumerate(TOYS):
        split = datasets.load(name, num_samples=args.num_train, seed=args.seed)
        model, row, log_prob = train(split, args, (64, 64), 512)
        rows.append({"data": name, **row})
        print(rows[-1], flush=True)
        _write(args, rows, "FFJORD on 2-D toys", _toy_notes(args))  # partial results kept
        density = np.exp(np.concatenate([log_prob(tf.constant(points[i:i + 2000])).numpy()
                                         for i in range(0, len(points), 2000)]))
        axes[0, j].hist2d(split.test[:, 0], split.test[:, 1], bins=args.grid,
                          range=[[-4, 4], [-4, 4]], cmap="viridis")
        axes[0, j].set_title(f"{name}: test data")
        axes[1, j].imshow(density.reshape(xx.shape), origin="lower", extent=[-4, 4, -4, 4],
                          cmap="viridis")
        axes[1, j].set_title(f"FFJORD, NLL {row['test NLL']:.2f}")
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    os.makedirs(os.path.join(args.out, "img"), exist_ok=True)
    fig.savefig(os.path.join(args.out, "img", "ffjord_toys.png"), dpi=100)
    return rows, "FFJORD on 2-D toys", _toy_notes(args)


def _toy_notes(args):
    return (
        f"{args.num_train} training points per toy, test set {args.num_train // 4}; "
        f"{_budget(args)} per toy (a reduced budget: the FFJORD paper "
        "trains for hours). ODENet 64x64 tanh; batch 512; Adam lr "
        f"{args.lr}. NFE: one exact-trace density solve of a test batch.")


def tabular(args):
    rows = []
    for name in TABULAR:
        split = datasets.load(name)
        num_train = min(500, len(split.train))
        split = datasets.subsample(split, num_train=num_train, seed=args.seed)
        _, row, _ = train(split, args, (128, 128), 128)
        rows.append({"data": name, "D": split.dim, "n train": num_train, **row})
        print(rows[-1], flush=True)
        _write(args, rows, "FFJORD, low-data tabular (partial)", "")
    return rows, "FFJORD, low-data tabular (scikit-learn; UCI files absent)", (
        "500 training examples where the data set has that many (wine and breast cancer have "
        "fewer: all their training rows are used), fixed test split, standardised with "
        f"training statistics. ODENet 128x128 tanh, batch 128, {_budget(args)} per "
        "data set. The Ferumal paper's Table 3 (500 examples of the UCI sets) cannot be rerun "
        "here; "
        "these rows are the same protocol on the data sets that are available.")


def uci(args):
    if args.data_dir is None or not os.path.isdir(args.data_dir):
        raise SystemExit(
            f"--task uci needs --data-dir with the UCI files (MAF layout); got {args.data_dir!r}."
            " They are not available on this machine, so no UCI numbers are reported.")
    rows = []
    for name in UCI:
        split = datasets.load(name, data_dir=args.data_dir)
        _, row, _ = train(split, args, (256, 256), 1000)
        rows.append({"data": name, "FFJORD paper NLL": PAPER_UCI[name], **row})
        print(rows[-1], flush=True)
    return rows, "FFJORD on UCI (full data)", f"{_budget(args)} per data set."


def _budget(args):
    parts = ([f"{args.steps} steps"] if args.steps else []) + (
        [f"{args.budget:.0f} s of wall time"] if args.budget else [])
    return "at most " + " or ".join(parts)


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--task", choices=("toys", "tabular", "uci"), default="toys")
    p.add_argument("--budget", type=float, default=None,
                   help="training seconds per data set (tracing included)")
    p.add_argument("--steps", type=int, default=None, help="training steps per data set")
    p.add_argument("--num-train", type=int, default=20000)
    p.add_argument("--grid", type=int, default=80)
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args()
    if args.budget is None and args.steps is None:
        p.error("give --steps and/or --budget")
    keras.utils.set_random_seed(args.seed)
    rows, title, notes = {"toys": toys, "tabular": tabular, "uci": uci}[args.task](args)
    _write(args, rows, title, notes)


def _write(args, rows, title, notes):
    common.write_results(os.path.join(args.out, "results", f"ffjord_{args.task}.md"), title,
                         "python benchmarks/ffjord_density.py " + " ".join(sys.argv[1:]),
                         rows, list(rows[0]), notes)


if __name__ == "__main__":
    main()
