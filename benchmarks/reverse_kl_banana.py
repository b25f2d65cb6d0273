"""Reverse KL: fit a RealNVP to an unnormalised banana density with `FlowModel.fit` (no data).

Target: the twisted Gaussian ("banana") of Haario et al. (1999), scaled to
2-D plots. With `z1 ~ N(0, a^2)`, `z2 ~ N(0, 1)`, the banana is the law of

    y = T(z) = (z1, z2 + b (z1^2 - a^2)).

`T` is volume preserving (its Jacobian is unit lower triangular), so

    log p(y) = log N(y1; 0, a^2) + log N(y2 - b (y1^2 - a^2); 0, 1)

is normalised: Z = 1, `log Z = 0`. The flow `q` is trained on the
*unnormalised* interface `ReverseKL(target_log_prob_fn)` only (it never sees
samples of `p`); its score is `log p(y) - log q(y)`, `y ~ q`, whose mean is
`log Z - KL(q || p)`. Because `log Z = 0` is known, the reverse KL follows
directly as `mean(log q - log p)` over fresh samples of `q`. We also report
the importance-sampling effective sample size of `q` as a proposal for `p`,
`ESS = (sum w)^2 / sum w^2` with `w = p / q` (Kish), the importance-sampled
`log Z` estimate (should be near 0), and, because `p` can be sampled exactly
here, the forward KL `E_p[log p - log q]`.

    python benchmarks/reverse_kl_banana.py
    python benchmarks/reverse_kl_banana.py --epochs 2

#### References

[1]: Heikki Haario, Eero Saksman, Johanna Tamminen. Adaptive proposal
     distribution for random walk Metropolis algorithm. Computational
     Statistics, 1999.
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from tfp_flows import plotting  # noqa: E402
from tfp_flows.flows import real_nvp  # noqa: E402
from tfp_flows.keras import FlowModel, ReverseKL  # noqa: E402
from tfp_flows.keras.train import evaluate, fit  # noqa: E402

_LOG_2PI = math.log(2.0 * math.pi)


def banana_log_prob_fn(scale=2.0, twist=0.25):
    """`y -> log p(y)` of the twisted Gaussian (normalised; Z = 1), for `y` of shape `[..., 2]`."""
    def log_prob(y):
        y1, y2 = y[..., 0], y[..., 1]
        u = y2 - twist * (tf.square(y1) - scale ** 2)
        return (-0.5 * tf.square(y1 / scale) - math.log(scale) - 0.5 * _LOG_2PI
                - 0.5 * tf.square(u) - 0.5 * _LOG_2PI)
    return log_prob


def banana_samples(n, scale=2.0, twist=0.25, seed=0):
    """Exact samples `T(z)` of the banana (numpy `[n, 2]` float32)."""
    z = np.random.default_rng(seed).standard_normal((n, 2))
    z[:, 0] *= scale
    return np.stack([z[:, 0], z[:, 1] + twist * (z[:, 0] ** 2 - scale ** 2)],
                    axis=1).astype(np.float32)


def diagnostics(model, target_log_prob, num_eval, seed, chunk=5000):
    """Reverse KL (Z = 1), its standard error, Kish ESS fraction and the IS log Z estimate."""
    chunk = min(chunk, num_eval)
    sample_and_log_prob = tf.function(
        lambda s: model.distribution.experimental_sample_and_log_prob(chunk, seed=s))
    log_w = []
    for i in range(int(math.ceil(num_eval / chunk))):
        y, log_q = sample_and_log_prob(tf.constant([seed, i], tf.int32))
        log_w.append((target_log_prob(y) - log_q).numpy().astype(np.float64))
    log_w = np.concatenate(log_w)[:num_eval]
    finite = np.isfinite(log_w)
    if not finite.all():
        raise FloatingPointError(f"{np.sum(~finite)} of {num_eval} log weights are not finite.")
    m = log_w.max()
    w = np.exp(log_w - m)
    return {"reverse KL": float(-log_w.mean()),
            "reverse KL s.e.": float(log_w.std(ddof=1) / math.sqrt(num_eval)),
            "ESS / n": float(w.sum() ** 2 / np.sum(w ** 2) / num_eval),
            "IS log Z": float(m + math.log(w.mean()))}


def parse_args(argv):
    p = common.base_parser(__doc__.splitlines()[0])
    p.set_defaults(out="docs")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--num-samples", type=int, default=256, help="samples of q per step")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--num-layers", type=int, default=6)
    p.add_argument("--hidden-units", type=int, nargs="+", default=[64, 64])
    p.add_argument("--num-eval", type=int, default=100_000, help="samples for the diagnostics")
    p.add_argument("--scale", type=float, default=2.0, help="std a of y1")
    p.add_argument("--twist", type=float, default=0.25, help="twist b")
    p.add_argument("--no-jit", action="store_true", help="train without XLA")
    args = p.parse_args(argv)
    for name in ("epochs", "steps_per_epoch", "num_samples", "num_layers", "num_eval"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer; "
                    f"got {getattr(args, name)}")
    if args.learning_rate <= 0 or args.scale <= 0:
        p.error(f"--learning-rate and --scale must be positive; got {args.learning_rate} and "
                f"{args.scale}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    # The machine line (a matmul timing) is printed once, with the results (write_results).
    target = banana_log_prob_fn(args.scale, args.twist)
    flow = real_nvp(event_size=2, num_layers=args.num_layers,
                    hidden_units=tuple(args.hidden_units), seed=args.seed)
    model = FlowModel(flow, objective=ReverseKL(target, num_samples=args.num_samples),
                      seed=args.seed)
    before = diagnostics(model, target, args.num_eval, args.seed + 1)
    result = fit(model, None, seed=args.seed, learning_rate=args.learning_rate,
                 jit_compile=not args.no_jit, steps_per_epoch=args.steps_per_epoch,
                 epochs=args.epochs)  # no data: ReverseKL samples from the flow
    seconds = result.seconds
    after = diagnostics(model, target, args.num_eval, args.seed + 2)

    exact = banana_samples(args.num_eval, args.scale, args.twist, seed=args.seed + 3)
    log_q = tf.function(lambda x: model.log_prob(x), reduce_retracing=True)
    forward_kl = float(np.mean(target(tf.constant(exact)).numpy()) + evaluate(model, exact).nll)

    rows = []
    for label, d in (("initial flow (N(0, I))", before), ("trained flow", after)):
        rows.append({"model": label, **d})
    rows[-1]["forward KL"] = forward_kl
    rows[-1]["fit s (incl. compile)"] = seconds
    rows[-1]["steps"] = result.steps
    losses = result.history["loss"]
    print({"first epoch loss": losses[0], "last epoch loss": losses[-1]}, flush=True)

    bounds = plotting.data_bounds(exact)
    fig, axes = plotting.figure_grid(1, 4, panel_size=3.5)
    target_np = lambda p: target(tf.constant(p)).numpy()
    model_np = lambda p: log_q(tf.constant(p)).numpy()
    plotting.plot_density(axes[0, 0], target_np, bounds, title="target p (banana)")
    plotting.plot_density(axes[0, 1], model_np, bounds, title="flow q (reverse KL)")
    plotting.plot_samples(axes[0, 2], exact[:3000], bounds, title="exact samples of p", color="k")
    samples = model.sample(3000, seed=tf.constant([args.seed, 99], tf.int32)).numpy()
    plotting.plot_samples(axes[0, 3], samples, bounds, title="samples of q")
    fig.tight_layout()
    img = os.path.join(args.out, "img", "reverse_kl_banana.png")
    plotting.save_figure(fig, img)

    command = " ".join(["python benchmarks/reverse_kl_banana.py", *argv])
    notes = (
        f"Target: banana with a = {args.scale}, b = {args.twist} (normalised, log Z = 0). "
        f"Flow: `real_nvp(event_size=2, num_layers={args.num_layers}, "
        f"hidden_units={tuple(args.hidden_units)})` trained by "
        f"`FlowModel(flow, objective=ReverseKL(banana_log_prob, "
        f"num_samples={args.num_samples}))` and "
        f"`model.fit(steps_per_epoch={args.steps_per_epoch}, epochs={args.epochs})` with "
        f"Adam lr {args.learning_rate}, XLA {'off' if args.no_jit else 'on'}; the training "
        f"loss (the negative ELBO of log Z) went from {losses[0]:.4g} (first epoch mean) to "
        f"{losses[-1]:.4g} (last epoch mean). Diagnostics over {args.num_eval} fresh samples: "
        "`reverse KL` = mean(log q - log p) (exact because Z = 1) with its standard error; "
        "`ESS / n`: Kish effective sample size of importance weights p/q over n; `IS log Z`: "
        "log mean(p/q), which should be near 0; `forward KL` = E_p[log p - log q] from "
        "exact banana samples (never used in training).\n\n"
        f"![banana](img/{os.path.basename(img)})\n")
    columns = ["model", "reverse KL", "reverse KL s.e.", "ESS / n", "IS log Z", "forward KL",
               "fit s (incl. compile)", "steps"]
    common.write_results(os.path.join(args.out, "reverse_kl.md"),
                         "Reverse KL: RealNVP fitted to a banana density", command, rows,
                         columns, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
