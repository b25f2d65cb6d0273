"""Funnel NSF on four circles, 2-D -> 1-D (the paper's Fig. 2).

A neural spline flow whose last layer is replaced by a funnel (Klein et al., 2021, A.5):
two NSF layers on x, then a funnel that keeps one coordinate (through a
conditional RQ spline of the dropped one) and models the dropped coordinate
with a conditional flow decoder; the latent is 1-D with a N(0, 1) base. Beside
it, the 2-D NSF with the same layers (no reduction). Writes the test NLL table
and a figure: histogram of the encoded test data against N(0, 1), model
samples, model density.

    python benchmarks/funnels_four_circles.py --epochs 40

Reductions against the paper (CPU shared by ~7 jobs): fewer training points
(`--num-train`), hidden widths `--hidden` instead of 256, 8 bins instead of
50, coupling instead of autoregressive spline layers, few epochs; the results
file records the command.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402

from benchmarks import common, funnels_common  # noqa: E402
from tfp_flows import plotting  # noqa: E402
from tfp_flows.datasets import four_circles  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate  # noqa: E402


def main():
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--num-train", type=int, default=20000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--img", default="docs/img")
    args = parser.parse_args()
    train = four_circles(args.num_train, seed=args.seed)
    val = four_circles(2000, seed=args.seed + 1)
    test = four_circles(5000, seed=args.seed + 2)
    common_kwargs = {"event_size": 2, "num_layers": 3, "num_bins": 8, "bound": 4.0,
                     "hidden_units": [args.hidden, args.hidden]}
    rows, models = [], {}
    for name, flow, extra in [("F-NSF (2 -> 1)", "funnel_nsf",
                               {"latent_size": 1, "funnel_layer": 2}),
                              ("NSF (2 -> 2)", "neural_spline", {})]:
        model, info = funnels_common.fit_flow(flow, train, val, args.epochs, batch_size=256,
                                              seed=args.seed, **common_kwargs, **extra)
        models[name] = model
        rows.append({"model": name, "latent": extra.get("latent_size", 2),
                     "test NLL (nats)": evaluate(model, test).nll,
                     "params": count_parameters(model), "train s": info["seconds"]})
    funnel = models["F-NSF (2 -> 1)"].distribution
    encoded = funnel.encode(test, full=True).numpy()[:, 0]
    ks = scipy.stats.kstest(encoded, "norm")
    rows[0]["KS vs N(0,1)"] = f"D = {ks.statistic:.3f}"
    _figure(funnel, train, encoded, os.path.join(args.img, "funnels_four_circles.png"))
    command = "python benchmarks/funnels_four_circles.py " + " ".join(sys.argv[1:])
    common.write_results(
        os.path.join(args.out, "funnels_four_circles.md"), "Funnel on four circles (2-D -> 1-D)",
        command.strip(), rows,
        ["model", "latent", "test NLL (nats)", "params", "train s", "KS vs N(0,1)"],
        notes=f"Epochs <= {args.epochs} (early stopping on validation), "
              f"{args.num_train} training points. KS: Kolmogorov-Smirnov distance of the "
              "encoded test data to N(0, 1).")


def _figure(funnel, train, encoded, path):
    plt = plotting._pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    grid = np.linspace(-4, 4, 200)
    axes[0].hist(encoded, bins=60, density=True, alpha=0.6, label="encoded test data")
    axes[0].plot(grid, scipy.stats.norm.pdf(grid), "k", label="N(0, 1)")
    axes[0].set_title("encoding z (1-D)")
    axes[0].legend()
    samples = funnel.sample(5000, seed=(0, 1)).numpy()
    axes[1].scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.4)
    axes[1].set_title("samples")
    bounds = (-2.7, 2.7)
    axis = np.linspace(*bounds, 200)
    xx, yy = np.meshgrid(axis, axis)
    pts = np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)
    dens = np.exp(funnel.log_prob(pts).numpy()).reshape(200, 200)
    axes[2].imshow(dens, origin="lower", extent=(*bounds, *bounds), cmap="viridis")
    axes[2].set_title("density p(x)")
    for ax in axes[1:]:
        ax.set_xlim(*bounds)
        ax.set_ylim(*bounds)
        ax.set_aspect("equal")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
