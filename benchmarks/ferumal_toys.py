"""Ferumal flow vs Glow-style flow on 2-D toys (paper, Table 1 and Figure 1).

Line, pinwheel and two moons, batch 200 as in the paper. Each model is trained
for `--steps` Adam iterations (the paper: 10,000) on 10,000 training points,
with 2,000 validation points (best epoch restored) and 10,000 test points.
Prints test NLL (nats) and trainable parameters; draws the data histogram and
both learned densities to `docs/img/ferumal_toys.png`.

Training runs under XLA (`jit_compile=True`) with one epoch (50 steps) per
call into the compiled graph and one validation batch per epoch. The table
and the plot are rewritten after every toy, so an interrupted run keeps the
toys it finished (the notes name them).

    python benchmarks/ferumal_toys.py --steps 2500 --out docs/results
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, ferumal_common  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows import datasets  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate  # noqa: E402

TOYS = {"line": datasets.line, "pinwheel": datasets.pinwheel, "moons": datasets.two_moons}
PAPER = {"line": (-3.75, "5K", -3.15, "44K"), "pinwheel": (2.44, "4K", 2.48, "44K"),
         "moons": (2.43, "5K", 2.54, "44K")}

# About the paper's sizes: ferumal ~5K parameters, Glow ~44K.
MODELS = {
    "ferumal": ("ferumal", dict(event_size=2, num_blocks=4, num_inducing=200), 5e-3),
    "glow": ("glow", dict(event_size=2, num_layers=10, hidden_units=(64, 64)), 1e-3),
}


def _density_panel(ax, log_prob_fn, bounds, title):
    g0 = np.linspace(bounds[0][0], bounds[0][1], 150)
    g1 = np.linspace(bounds[1][0], bounds[1][1], 150)
    grid = np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2).astype(np.float32)
    dens = np.exp(np.asarray(log_prob_fn(grid))).reshape(150, 150)
    ax.imshow(dens, origin="lower", extent=[g0[0], g0[-1], g1[0], g1[-1]], aspect="auto",
              cmap="viridis")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="training iterations (paper: 10K)")
    p.add_argument("--toys", nargs="+", default=list(TOYS))
    p.add_argument("--img", default="docs/img/ferumal_toys.png")
    p.add_argument("--patience", type=int, default=0,
                   help="early-stopping patience in epochs of 50 steps; 0 (default) trains all "
                        "--steps (the best validation epoch is restored either way)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be a positive integer; got {args.steps}")
    if args.patience < 0:
        p.error(f"--patience must be a non-negative integer; got {args.patience}")
    # Patience longer than the run: never stops, but still restores the best epoch.
    patience = args.patience or args.steps
    unknown = [t for t in args.toys if t not in TOYS]
    if unknown:
        p.error(f"--toys must be among {sorted(TOYS)}; got {unknown}")
    rows = []
    fig, axes = plt.subplots(len(args.toys), 3, figsize=(7.5, 2.5 * len(args.toys)),
                             squeeze=False)
    for r, toy in enumerate(args.toys):
        make = TOYS[toy]
        x_train = make(10000, seed=args.seed)
        x_val = make(2000, seed=args.seed + 1)
        x_test = make(10000, seed=args.seed + 2)
        lo, hi = np.percentile(x_test, [0.5, 99.5], axis=0)
        pad = 0.15 * (hi - lo)
        bounds = [(lo[i] - pad[i], hi[i] + pad[i]) for i in range(2)]
        axes[r, 0].hist2d(x_test[:, 0], x_test[:, 1], bins=150, range=bounds, cmap="viridis")
        axes[r, 0].set_title(f"{toy}: data", fontsize=9)
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        for c, (label, (flow, kwargs, lr)) in enumerate(MODELS.items(), start=1):
            model, seconds, epochs = ferumal_common.train(
                flow, kwargs, x_train, x_val, args.steps, 200, lr, patience=patience,
                seed=args.seed, jit_compile=True, steps_per_execution=50,
                validation_batch_size=len(x_val))
            nll = evaluate(model, x_test).nll
            params = count_parameters(model)
            paper = PAPER[toy][0 if label == "ferumal" else 2]
            paper_params = PAPER[toy][1 if label == "ferumal" else 3]
            rows.append({"data": toy, "model": label, "test NLL": nll, "params": params,
                         "paper NLL": paper, "paper params": paper_params,
                         "epochs": epochs, "train s": seconds})
            print(rows[-1], flush=True)
            _density_panel(axes[r, c], lambda t, m=model: m.log_prob(t).numpy(), bounds,
                           f"{label}: NLL {nll:.2f} ({params} params)")
        _write(args, argv, rows, fig, done=args.toys[:r + 1])


def _write(args, argv, rows, fig, done):
    """Writes the table (with the toys finished so far) and the plot."""
    os.makedirs(os.path.dirname(args.img) or ".", exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.img, dpi=110)
    missing = [t for t in args.toys if t not in done]
    stopping = (f"early stopping with patience {args.patience} epochs of 50 steps"
                if args.patience else "no early stopping")
    notes = (f"{args.steps} iterations of batch 200 per model (paper: 10,000), seed {args.seed}, "
             f"best validation epoch (every 50 steps) restored, {stopping}. "
             "Adam with cosine decay: lr 5e-3 for the Ferumal flow, 1e-3 for Glow. XLA, one "
             "epoch per compiled call; `train s` is wall time including compilation on a shared "
             "machine. Toy generators are this library's (`tfp_flows.datasets`), not the "
             f"paper's code, so NLLs are comparable only in trend. Plot: `{args.img}`.")
    if missing:
        notes += f" Interrupted: not yet run: {', '.join(missing)}."
    common.write_results(os.path.join(args.out, "ferumal_toys.md"),
                         "Ferumal flow vs Glow on 2-D toys",
                         "python benchmarks/ferumal_toys.py " + " ".join(argv), rows,
                         ["data", "model", "test NLL", "params", "paper NLL", "paper params",
                          "epochs", "train s"], notes)


if __name__ == "__main__":
    main()
