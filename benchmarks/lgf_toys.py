"""LGF-MAF vs MAF on 2-D targets (Cornish et al., 2019, Figs. 1, 2 and 4).

Two disjoint rectangles (Fig. 1/2), checkerboard, two spirals and four circles
("rings"). MAF: 10 MADE layers of 4x50 hidden units; LGF-MAF: 5 MADE layers of
2x50, s/t nets 2x10, p/q nets 4x50, index size 2 (the paper's Fig. 1 sizes;
80,040 and 95,480 parameters here, the paper reports 80,080 and 80,810). MAF
maximises the log-likelihood, LGF-MAF the ELBO; both with Adam(1e-3) (graph
mode; `--jit` XLA-compiles the training step and the evaluation functions).
Every model run starts with `keras.utils.set_random_seed(--seed)`, so a rerun
of the same command trains on the same batches with the same initial weights.
Reported per model: test NLL (LGF: importance sampling with S =
`--test-samples`, the paper's 1000), the test ELBO and its gap, and after every
epoch

* `outside`: the fraction of `--track-samples` model samples outside the true
  support (rectangles and checkerboard only; the same sampling seed every
  epoch), and
* `moved`: the total variation between consecutive epochs' densities on a grid
  (0.5 * sum |p_t - p_{t-1}| dA; LGF densities are IS estimates with S =
  `--grid-samples` and the same seed every epoch), which measures how much the
  learned support moves.

The paper trains 300 epochs (500 for Fig. 4); here `--epochs` (default 20) on a
shared 2-core machine. Everything is written under `--out` (default docs/):
results/lgf_toys.md and .json (table and exact command), results/
lgf_toys_curves.json (per-epoch `outside` and `moved`), img/lgf_toys.png
(densities), img/lgf_support_movement.png (per-epoch curves) and
img/lgf_rectangles_epochs.png (the last three epochs' densities on the
rectangles, the paper's Fig. 2).

    python benchmarks/lgf_toys.py --epochs 20
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_flows import datasets  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate, fit  # noqa: E402

TOYS = {"rectangles": (datasets.two_rectangles, ((-3, 3), (-2, 2))),
        "checkerboard": (datasets.checkerboard, ((-4.5, 4.5), (-4.5, 4.5))),
        "spirals": (datasets.two_spirals, ((-4, 4), (-4, 4))),
        "rings": (datasets.four_circles, ((-4, 4), (-4, 4)))}

MODELS = {
    "MAF (10 layers)": ("maf", "nll", dict(event_size=2, num_layers=10, hidden_units=(50,) * 4)),
    "LGF-MAF (5 layers)": ("lgf_maf", "elbo", dict(
        event_size=2, num_layers=5, index_size=2, hidden_units=(50, 50), st_hidden_units=(10, 10),
        prior_hidden_units=(50,) * 4, posterior_hidden_units=(50,) * 4)),
}


def in_support(name, x):
    """True support membership for the targets where it is simple (else None)."""
    if name == "rectangles":
        return (np.abs(x[:, 0]) >= 1) & (np.abs(x[:, 0]) <= 2) & (np.abs(x[:, 1]) <= 1)
    if name == "checkerboard":
        # Black squares of datasets.checkerboard: floor(x1/2) + floor(x2/2) even, in [-4, 4]^2.
        inside = np.all(np.abs(x) <= 4, axis=1)
        return inside & ((np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0)
    return None


def grid(bounds, n):
    g0, g1 = (np.linspace(lo, hi, n) for lo, hi in bounds)
    pts = np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2).astype(np.float32)
    area = (g0[1] - g0[0]) * (g1[1] - g1[0])
    return pts, area


def _chunk(num_samples):
    """The largest divisor of S up to 100 (importance samples per chunk)."""
    return max(c for c in range(1, min(num_samples, 100) + 1) if num_samples % c == 0)


def log_prob_fn(model, is_lgf, num_samples, seed=(11, 12), jit=False):
    """A compiled `log p(x)`: exact for MAF, an IS estimate with S = `num_samples` for LGF."""
    dist = model.distribution
    if is_lgf:
        chunk = _chunk(num_samples)
        return tf.function(lambda x: dist.log_prob(x, num_samples=num_samples, chunk_size=chunk,
                                                   seed=seed), jit_compile=jit,
                           autograph=False)  # no Python control flow to convert
    return tf.function(dist.log_prob, jit_compile=jit)


class Tracker(keras.callbacks.Callback):
    """Per epoch: fraction of samples outside the support and TV movement on the grid."""

    def __init__(self, name, is_lgf, pts, area, grid_samples, num_samples, jit, keep=3):
        super().__init__()
        self.name, self.is_lgf, self.pts, self.area = name, is_lgf, pts, area
        self.grid_samples, self.num_samples, self.jit, self.keep = (
            grid_samples, num_samples, jit, keep)
        self.outside, self.moved, self.prev, self.fn, self.sample_fn = [], [], None, None, None
        self.history = []  # the last `keep` epochs' grid densities, (epoch, density)
        self.seconds = 0.0  # time spent here (excluded from the training time)

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        if self.fn is None:  # trace once, not once per epoch
            self.fn = log_prob_fn(self.model, self.is_lgf, self.grid_samples, jit=self.jit)
            dist = self.model.distribution
            self.sample_fn = tf.function(lambda: dist.sample(self.num_samples, seed=(5, 6)),
                                         jit_compile=self.jit, autograph=False)
        dens = np.exp(np.concatenate([np.asarray(self.fn(tf.constant(self.pts[i:i + 1000])))
                                      for i in range(0, len(self.pts), 1000)]))
        dens = dens / max(dens.sum() * self.area, 1e-12)  # normalise on the grid
        if self.prev is not None:
            self.moved.append(float(0.5 * np.abs(dens - self.prev).sum() * self.area))
        self.prev = dens
        self.history = [*self.history, (epoch + 1, dens)][-self.keep:]
        inside = in_support(self.name, np.asarray(self.sample_fn()))
        if inside is not None:
            self.outside.append(float(1.0 - inside.mean()))
        self.seconds += time.perf_counter() - start


def run(name, label, args, data, pts, area):
    """Trains one model on one target; returns its table row and its `Tracker`."""
    flow, objective, kwargs = MODELS[label]
    is_lgf = flow.startswith("lgf")
    tracker = Tracker(name, is_lgf, pts, area, args.grid_samples, args.track_samples, args.jit)
    # The pipeline seeds Keras first (weights, batch shuffling: the same for every run).
    result = fit(flow, data.train, data.validation, flow_kwargs=kwargs, objective=objective,
                 seed=args.seed, learning_rate=1e-3, jit_compile=args.jit,
                 batch_size=args.batch_size, epochs=args.epochs, callbacks=[tracker])
    model, history = result.model, result.history
    seconds = result.seconds - tracker.seconds
    start = time.perf_counter()
    test = data.test[:args.num_test]
    lgf_kwargs = {"chunk_size": _chunk(args.test_samples)} if is_lgf else {}
    nll = evaluate(model, test, num_samples=args.test_samples, seed=11, batch_size=250,
                   jit_compile=args.jit, **lgf_kwargs).nll
    row = {"target": name, "model": label, "params": count_parameters(model),
           "test NLL": nll}
    if is_lgf:
        elbo = float(np.mean(model.distribution.elbo(test, seed=(3, 4))))
        row.update({"test -ELBO": -elbo, "gap (IS - ELBO)": -nll - elbo})
    row["outside (last)"] = tracker.outside[-1] if tracker.outside else ""
    row["moved (mean last 5)"] = float(np.mean(tracker.moved[-5:])) if tracker.moved else ""
    row["val loss (last)"] = history["val_loss"][-1]
    row.update({"train s": seconds, "track s": tracker.seconds,
                "test s": time.perf_counter() - start})
    return row, tracker


def _positive_int(text):
    """argparse type: a positive int, else an error naming what was expected and given."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return number


def plot_densities(args, datas, trackers, path):
    """Data histogram and each model's final grid density, one row per target."""
    fig, axes = plt.subplots(len(datas), 1 + len(MODELS),
                             figsize=(8, 2.6 * len(datas)), squeeze=False)
    for r, name in enumerate(datas):
        bounds = TOYS[name][1]
        axes[r, 0].hist2d(datas[name][:, 0], datas[name][:, 1], bins=80, range=bounds,
                          cmap="viridis")
        axes[r, 0].set_title(f"{name}: data", fontsize=9)
        for c, label in enumerate(MODELS, start=1):
            tracker, row = trackers[(name, label)]
            axes[r, c].imshow(tracker.prev.reshape(args.grid, args.grid), origin="lower",
                              extent=[*bounds[0], *bounds[1]], aspect="auto", cmap="viridis")
            axes[r, c].set_title(f"{label}\ntest NLL {row['test NLL']:.3f}", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_movement(trackers, path):
    """Per-epoch mass outside the support and TV movement, every target and model."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (name, label), (tr, _) in trackers.items():
        style = "-" if label.startswith("LGF") else "--"
        if tr.outside:
            ax1.plot(range(1, len(tr.outside) + 1), tr.outside, style, label=f"{name}, {label}")
        if tr.moved:
            ax2.plot(range(2, len(tr.moved) + 2), tr.moved, style, label=f"{name}, {label}")
    ax1.set(xlabel="epoch", ylabel="model mass outside support", yscale="log")
    ax2.set(xlabel="epoch", ylabel="TV(p_t, p_{t-1}) on grid", yscale="log")
    ax1.legend(fontsize=6)
    ax2.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_epochs(args, name, trackers, path):
    """The last epochs' grid densities of each model on one target (the paper's Fig. 2)."""
    bounds = TOYS[name][1]
    keep = max(len(trackers[(name, label)][0].history) for label in MODELS)
    fig, axes = plt.subplots(len(MODELS), keep, figsize=(2.7 * keep, 2.2 * len(MODELS)),
                             squeeze=False)
    for r, label in enumerate(MODELS):
        for c, (epoch, dens) in enumerate(trackers[(name, label)][0].history):
            axes[r, c].imshow(dens.reshape(args.grid, args.grid), origin="lower",
                              extent=[*bounds[0], *bounds[1]], aspect="auto", cmap="viridis")
            axes[r, c].set_title(f"{label}, epoch {epoch}", fontsize=8)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(args, argv, rows, trackers, datas):
    """Writes the table, curves and plots for the targets finished so far (after each one)."""
    done = list(datas)
    img = os.path.join(args.out, "img")
    os.makedirs(img, exist_ok=True)
    plot_densities(args, datas, trackers, os.path.join(img, "lgf_toys.png"))
    plot_movement(trackers, os.path.join(img, "lgf_support_movement.png"))
    if "rectangles" in done:
        plot_epochs(args, "rectangles", trackers, os.path.join(img, "lgf_rectangles_epochs.png"))
    command = "python benchmarks/lgf_toys.py " + " ".join(argv)
    results = os.path.join(args.out, "results")
    columns = ["target", "model", "params", "test NLL", "test -ELBO", "gap (IS - ELBO)",
               "outside (last)", "moved (mean last 5)", "val loss (last)", "train s",
               "track s", "test s"]
    common.write_results(
        os.path.join(results, "lgf_toys.md"), "LGF-MAF vs MAF on 2-D targets", command, rows,
        columns,
        notes=f"{args.epochs} epochs (paper: 300 for the rectangles, 500 for Fig. 4), "
              f"{args.num_train} training points, batch {args.batch_size}, seed {args.seed}, "
              f"{'XLA' if args.jit else 'graph mode'}. Test NLL on {args.num_test} test points "
              f"(LGF: IS with S = {args.test_samples}); `outside`: fraction of "
              f"{args.track_samples} samples outside the support after the last epoch; "
              f"`moved`: TV between consecutive epochs' densities on a {args.grid}x{args.grid} "
              f"grid (LGF: IS with S = {args.grid_samples}), mean of the last 5 epochs. "
              "`train s` excludes the per-epoch tracking (`track s`); `test s` is the test "
              "evaluation. Per-epoch curves: lgf_toys_curves.json."
              + ("" if done == list(args.toys) else
                 f" Partial: written after {', '.join(done)}; still to run: "
                 f"{', '.join(t for t in args.toys if t not in done)}."))
    with open(os.path.join(results, "lgf_toys_curves.json"), "w") as f:
        json.dump({"command": command,
                   "curves": [{"target": name, "model": label, "outside": tr.outside,
                               "moved": tr.moved}
                              for (name, label), (tr, _) in trackers.items()]}, f, indent=1)


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--toys", nargs="+", default=list(TOYS), choices=list(TOYS))
    p.add_argument("--epochs", type=_positive_int, default=20,
                   help="paper: 300 (500 for Fig. 4)")
    p.add_argument("--num-train", type=_positive_int, default=10000)
    p.add_argument("--num-test", type=_positive_int, default=2000)
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--grid", type=_positive_int, default=60)
    p.add_argument("--jit", action="store_true",
                   help="XLA-compile training steps and the evaluation functions")
    p.add_argument("--grid-samples", type=_positive_int, default=50,
                   help="IS samples S per grid point for the LGF densities tracked per epoch")
    p.add_argument("--track-samples", type=_positive_int, default=20000,
                   help="model samples per epoch for the fraction outside the support")
    p.add_argument("--test-samples", type=_positive_int, default=1000,
                   help="IS samples S for the LGF test NLL (paper: 1000)")
    p.set_defaults(out="docs")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    rows, trackers, datas = [], {}, {}
    names = {"rectangles": "two_rectangles", "spirals": "two_spirals", "rings": "four_circles"}
    for name in args.toys:
        data = datasets.load(names.get(name, name), num_samples=args.num_train, seed=args.seed)
        datas[name] = data.train
        pts, area = grid(TOYS[name][1], args.grid)
        for label in MODELS:
            row, tracker = run(name, label, args, data, pts, area)
            rows.append(row)
            trackers[(name, label)] = (tracker, row)
            print(row, flush=True)
        write_outputs(args, argv, rows, trackers, datas)


if __name__ == "__main__":
    main()
