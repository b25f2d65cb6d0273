"""LGF-MAF vs MAF on 2-D targets (Cornish et al., 2019, Figs. 1, 2 and 4).

Two disjoint rectangles (Fig. 1/2), checkerboard, two spirals and four circles
("rings"). MAF: 10 MADE layers of 4x50 hidden units; LGF-MAF: 5 MADE layers of
2x50, s/t nets 2x10, p/q nets 4x50, index size 2 (the paper's sizes, about
80K parameters each). MAF maximises the log-likelihood, LGF-MAF the ELBO; both
with Adam(1e-3) (graph mode; `--jit` for XLA). Reported per model: test NLL (LGF: importance
sampling with S = `--test-samples`, the paper's 1000), the test ELBO and its
gap, and after every epoch

* `outside`: the fraction of 20,000 model samples outside the true support
  (rectangles and checkerboard only), and
* `moved`: the total variation between consecutive epochs' densities on a grid
  (0.5 * sum |p_t - p_{t-1}| dA; LGF densities are IS estimates with S =
  `--grid-samples`), which measures how much the learned support moves.

The paper trains 300 epochs (500 for Fig. 4); here `--epochs` (default 20) on a
shared 2-core machine. Density plots, per-epoch curves and tables go to docs/.

    python benchmarks/lgf_toys.py --epochs 20
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

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
from tfp_flows.keras import FlowModel  # noqa: E402

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


def log_prob_fn(model, is_lgf, num_samples, seed=(11, 12)):
    dist = model.distribution
    if is_lgf:
        chunk = min(num_samples, 100)
        return tf.function(lambda x: dist.log_prob(x, num_samples=num_samples, chunk_size=chunk,
                                                   seed=seed))
    return tf.function(dist.log_prob)


class Tracker(keras.callbacks.Callback):
    """Per epoch: fraction of samples outside the support and TV movement on the grid."""

    def __init__(self, name, is_lgf, pts, area, grid_samples):
        super().__init__()
        self.name, self.is_lgf, self.pts, self.area = name, is_lgf, pts, area
        self.grid_samples = grid_samples
        self.outside, self.moved, self.prev, self.fn = [], [], None, None

    def on_epoch_end(self, epoch, logs=None):
        if self.fn is None:  # trace once, not once per epoch
            self.fn = log_prob_fn(self.model, self.is_lgf, self.grid_samples)
        fn = self.fn
        dens = np.exp(np.concatenate([np.asarray(fn(tf.constant(self.pts[i:i + 1200])))
                                      for i in range(0, len(self.pts), 1200)]))
        dens = dens / max(dens.sum() * self.area, 1e-12)  # normalise on the grid
        if self.prev is not None:
            self.moved.append(float(0.5 * np.abs(dens - self.prev).sum() * self.area))
        self.prev = dens
        inside = in_support(self.name, np.asarray(self.model.sample(20000, seed=(5, 6))))
        if inside is not None:
            self.outside.append(float(1.0 - inside.mean()))


def run(name, label, args, data, pts, area):
    flow, objective, kwargs = MODELS[label]
    model = FlowModel.from_flow(flow, objective=objective, seed=args.seed, **kwargs)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=args.jit)
    is_lgf = flow.startswith("lgf")
    tracker = Tracker(name, is_lgf, pts, area, args.grid_samples)
    start = time.perf_counter()
    model.fit(data.train, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
              validation_data=(data.validation,), callbacks=[tracker])
    seconds = time.perf_counter() - start
    test = data.test[:args.num_test]
    nll = common.mean_nll(log_prob_fn(model, is_lgf, args.test_samples), test, batch_size=200)
    row = {"target": name, "model": label, "params": common.num_params(model),
           "test NLL": nll, "train s": seconds}
    if is_lgf:
        elbo = float(np.mean(model.distribution.elbo(test, seed=(3, 4))))
        row.update({"test -ELBO": -elbo, "gap (IS - ELBO)": -nll - elbo})
    row["outside (last)"] = tracker.outside[-1] if tracker.outside else ""
    row["moved (mean last 5)"] = float(np.mean(tracker.moved[-5:])) if tracker.moved else ""
    dens = tracker.prev.reshape(args.grid, args.grid)
    return row, tracker, dens


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--toys", nargs="+", default=list(TOYS), choices=list(TOYS))
    p.add_argument("--epochs", type=int, default=20, help="paper: 300 (500 for Fig. 4)")
    p.add_argument("--num-train", type=int, default=10000)
    p.add_argument("--num-test", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--grid", type=int, default=60)
    p.add_argument("--jit", action="store_true", help="XLA-compile training steps (compile "
                   "time dominates short runs on a loaded machine, so off by default)")
    p.add_argument("--grid-samples", type=int, default=50)
    p.add_argument("--test-samples", type=int, default=1000)
    p.set_defaults(out="docs")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    rows, curves = [], {}
    fig, axes = plt.subplots(len(args.toys), 3, figsize=(8, 2.6 * len(args.toys)), squeeze=False)
    for r, name in enumerate(args.toys):
        sample_fn, bounds = TOYS[name]
        data = datasets.load({"rectangles": "two_rectangles", "spirals": "two_spirals",
                              "rings": "four_circles"}.get(name, name),
                             num_samples=args.num_train, seed=args.seed)
        pts, area = grid(bounds, args.grid)
        extent = [*bounds[0], *bounds[1]]
        axes[r, 0].hist2d(data.train[:, 0], data.train[:, 1], bins=80, range=bounds,
                          cmap="viridis")
        axes[r, 0].set_title(f"{name}: data", fontsize=9)
        for c, label in enumerate(MODELS, start=1):
            row, tracker, dens = run(name, label, args, data, pts, area)
            rows.append(row)
            curves[(name, label)] = tracker
            axes[r, c].imshow(dens, origin="lower", extent=extent, aspect="auto", cmap="viridis")
            axes[r, c].set_title(f"{label}\nNLL {row['test NLL']:.3f}", fontsize=8)
            print(row, flush=True)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    os.makedirs(os.path.join(args.out, "img"), exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "img", "lgf_toys.png"), dpi=110)
    fig2, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for (name, label), tr in curves.items():
        style = "-" if label.startswith("LGF") else "--"
        if tr.outside:
            ax1.plot(range(1, len(tr.outside) + 1), tr.outside, style, label=f"{name}, {label}")
        ax2.plot(range(2, len(tr.moved) + 2), tr.moved, style, label=f"{name}, {label}")
    ax1.set(xlabel="epoch", ylabel="model mass outside support", yscale="log")
    ax2.set(xlabel="epoch", ylabel="TV(p_t, p_{t-1}) on grid", yscale="log")
    ax1.legend(fontsize=6)
    ax2.legend(fontsize=6)
    fig2.tight_layout()
    fig2.savefig(os.path.join(args.out, "img", "lgf_support_movement.png"), dpi=110)
    command = "python benchmarks/lgf_toys.py " + " ".join(argv)
    columns = ["target", "model", "params", "test NLL", "test -ELBO", "gap (IS - ELBO)",
               "outside (last)", "moved (mean last 5)", "train s"]
    common.write_results(os.path.join(args.out, "results", "lgf_toys.md"),
                         "LGF-MAF vs MAF on 2-D targets", command, rows, columns,
                         notes=f"{args.epochs} epochs (paper: 300/500), {args.num_train} "
                               f"training points, test NLL on {args.num_test} test points.")


if __name__ == "__main__":
    main()
