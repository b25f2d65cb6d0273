"""Cost of a Ferumal flow vs RealNVP at equal depth, across batch size and N (English et al., 2024).

Both flows have `--num-couplings` affine couplings on `R^D` (RealNVP: hidden
(64, 64) MLPs; Ferumal: N per-layer inducing points, ActNorm per block).
Measured side by side in one process, calls interleaved across the models, the
minimum over `--repeats` calls (contention only adds time), no XLA:

* seconds per training step: gradient of the mean NLL w.r.t. every weight and
  an Adam update (`model.train_on_batch`);
* log_prob throughput: examples per second of `log_prob` on a batch.

Reports the ratios Ferumal / RealNVP (time ratio < 1: Ferumal is faster) and
the parameter ratio, as a table and `docs/img/ferumal_cost.png`.

    python benchmarks/ferumal_cost.py
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import ast
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_flows.keras import FlowModel  # noqa: E402
from tfp_flows.keras.train import count_parameters  # noqa: E402


def _best_time(fn, repeats):
    # The minimum, not the median: on a machine shared with other jobs the
    # noise is one-sided (other processes only ever add time).
    return min(common.seconds_per_call(fn, warmup=0, repeats=1) for _ in range(repeats))


def _measure(models, x, repeats):
    """(step seconds, log_prob examples/s) per model, calls interleaved across models."""
    steps, log_probs = [], []
    for model in models:
        model.compile(keras.optimizers.Adam(1e-3))
        steps.append(lambda m=model: m.train_on_batch(x))
        lp = tf.function(lambda t, m=model: m.log_prob(t))
        log_probs.append(lambda f=lp: f(tf.identity(x)))
        for fn in (steps[-1], log_probs[-1]):  # trace and warm up
            fn()
            fn()
    times = {i: ([], []) for i in range(len(models))}
    for _ in range(repeats):
        for i in range(len(models)):
            times[i][0].append(_best_time(steps[i], 1))
            times[i][1].append(_best_time(log_probs[i], 1))
    return [(min(a), x.shape[0] / min(b)) for a, b in times.values()]


def plot(rows, path):
    """Step-time and throughput ratios vs batch size, one curve per N."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for n in sorted({r["N"] for r in rows}):
        sel = [r for r in rows if r["N"] == n]
        b = [r["batch"] for r in sel]
        axes[0].plot(b, [r["step ratio"] for r in sel], "o-",
                     label=f"N={n} (params x{sel[0]['param ratio']:.2f})")
        axes[1].plot(b, [r["throughput ratio"] for r in sel], "o-", label=f"N={n}")
    for ax, title in zip(axes, ["train step time, Ferumal / RealNVP (<1 faster)",
                                "log_prob throughput, Ferumal / RealNVP (>1 faster)"],
                         strict=True):
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--num-couplings", type=int, default=4)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    p.add_argument("--num-inducing", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--img", default="docs/img/ferumal_cost.png")
    p.add_argument("--plot-only", default=None, metavar="LOG",
                   help="redraw the plot from the rows a previous run printed to LOG")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.plot_only:
        with open(args.plot_only) as f:
            plot([ast.literal_eval(line) for line in f if line.startswith("{")], args.img)
        return
    rng = np.random.default_rng(args.seed)
    x_init = rng.standard_normal((2000, args.dim)).astype(np.float32)
    nvp = FlowModel.from_flow("real_nvp", event_size=args.dim, num_layers=args.num_couplings,
                              hidden_units=(64, 64))
    fer = {}
    for n in args.num_inducing:
        fer[n] = FlowModel.from_flow("ferumal", event_size=args.dim,
                                     num_blocks=args.num_couplings // 2, num_inducing=n)
        fer[n].initialize_from_data(x_init)
    rows = []
    for batch in args.batch_sizes:
        x = tf.constant(rng.standard_normal((batch, args.dim)).astype(np.float32))
        measured = _measure([nvp, *fer.values()], x, args.repeats)
        nvp_step, nvp_tput = measured[0]
        for (n, model), (step, tput) in zip(fer.items(), measured[1:], strict=True):
            rows.append({"batch": batch, "N": n, "ferumal step s": step,
                         "real_nvp step s": nvp_step, "step ratio": step / nvp_step,
                         "ferumal log_prob ex/s": tput, "real_nvp log_prob ex/s": nvp_tput,
                         "throughput ratio": tput / nvp_tput,
                         "param ratio": count_parameters(model) / count_parameters(nvp)})
            print(rows[-1], flush=True)
    plot(rows, args.img)
    notes = (f"D = {args.dim}, {args.num_couplings} couplings each; RealNVP has "
             f"{count_parameters(nvp)} parameters. Minimum of {args.repeats} interleaved calls "
             f"after 2 warm-up calls, compiled graphs without XLA, on a shared 2-core machine "
             f"(ratios "
             f"measured in one run). Plot: `{args.img}`.")
    common.write_results(os.path.join(args.out, "ferumal_cost.md"),
                         "Cost: Ferumal flow vs RealNVP at equal depth",
                         "python benchmarks/ferumal_cost.py " + " ".join(argv), rows,
                         ["batch", "N", "ferumal step s", "real_nvp step s", "step ratio",
                          "ferumal log_prob ex/s", "real_nvp log_prob ex/s",
                          "throughput ratio", "param ratio"], notes)


if __name__ == "__main__":
    main()
