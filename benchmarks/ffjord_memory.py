"""Peak memory of one FFJORD gradient vs the number of solver steps: adjoint vs backprop.

TensorFlow reports no allocator statistics for CPU devices
(`tf.config.experimental.get_memory_info('CPU:0')` raises), so each
configuration runs in a fresh subprocess which measures its resident set size
(RSS): the baseline RSS after building the model and running one `log_prob`
(so the runtime, the graph and the weights are in memory), then the process's
peak RSS (`ru_maxrss`) after one training-step gradient. The difference is the
extra memory the gradient computation needed. Fixed-step RK4, batch 512,
ODENet 64x64 tanh on two moons, `tf.function` (no XLA).

    python benchmarks/ffjord_memory.py --out docs
"""

import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(gradient, num_steps, batch_size):
    """Runs in the subprocess: returns baseline and peak RSS in MiB."""
    import keras
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp

    from tfp_flows import bijectors, datasets, nets, testing

    keras.utils.set_random_seed(0)  # same initial weights in every child process
    net = testing.perturb_weights(nets.ODENet(2, (64, 64), "tanh"), scale=0.1)
    dist = tfp.distributions.TransformedDistribution(
        tfp.distributions.MultivariateNormalDiag(tf.zeros(2)),
        bijectors.FFJORD(net, solver="rk4", num_steps=num_steps, gradient=gradient))
    x = tf.constant(datasets.two_moons(batch_size, seed=0))
    variables = [w.value for w in net.trainable_weights]

    @tf.function
    def grads(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        return tape.gradient(loss, variables)

    lp = tf.function(lambda x: dist.log_prob(x))
    lp(x).numpy()
    grads.get_concrete_function(x)  # trace before the baseline: graphs are not data
    baseline = _rss_mb()
    before_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = grads(x)
    norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in out)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"baseline_mb": baseline, "peak_mb": peak, "peak_before_mb": before_peak,
            "grad_norm": norm}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        gradient, steps, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print("RESULT " + json.dumps(measure(gradient, steps, batch)))
        return
    import matplotlib

    from benchmarks import common
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[8, 32, 128, 512])
    p.add_argument("--batch-size", type=int, default=512)
    args = p.parse_args()
    rows = []
    for steps in args.steps:
        for gradient in ("backprop", "adjoint"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", gradient, str(steps),
                 str(args.batch_size)], capture_output=True, text=True, check=True)
            line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
            res = json.loads(line[len("RESULT "):])
            rows.append({"gradient": gradient, "RK4 steps": steps,
                         "baseline RSS (MiB)": res["baseline_mb"],
                         "peak RSS (MiB)": res["peak_mb"],
                         "gradient peak - baseline (MiB)": res["peak_mb"] - res["baseline_mb"],
                         "grad norm": res["grad_norm"]})
            print(rows[-1], flush=True)
    command = "python benchmarks/ffjord_memory.py " + " ".join(sys.argv[1:])
    common.write_results(
        os.path.join(args.out, "results", "ffjord_memory.md"),
        "Peak memory of one gradient vs solver steps (adjoint vs backprop)", command, rows,
        ["gradient", "RK4 steps", "baseline RSS (MiB)", "peak RSS (MiB)",
         "gradient peak - baseline (MiB)", "grad norm"],
        notes="Each row is a fresh process (same initial weights). Baseline: RSS after tracing and "
              "one log_prob; peak: ru_maxrss after one gradient. grad norm: both modes compute the "
              "same gradient up to the RK4 error.")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for gradient in ("backprop", "adjoint"):
        sub = [r for r in rows if r["gradient"] == gradient]
        ax.plot([r["RK4 steps"] for r in sub],
                [r["gradient peak - baseline (MiB)"] for r in sub], "o-", label=gradient)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("RK4 steps")
    ax.set_ylabel("peak RSS - baseline (MiB)")
    ax.legend()
    ax.set_title(f"FFJORD gradient memory, batch {args.batch_size}")
    fig.tight_layout()
    os.makedirs(os.path.join(args.out, "img"), exist_ok=True)
    fig.savefig(os.path.join(args.out, "img", "ffjord_memory.png"), dpi=120)


if __name__ == "__main__":
    main()
