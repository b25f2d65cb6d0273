"""FFJORD vs TFP's `tfb.FFJORD`: seconds per training step and NLL after equal wall time.

Both use the same vector field (`tfp_flows.nets.ODENet`, 64x64 tanh, identical
initial weights), the same data (two moons, batch 512) and the same
Dormand–Prince tolerances (rtol = atol = 1e-5). TFP's bijector uses its own
`tfp.math.ode.DormandPrince` (adjoint gradients, its default) and its own trace
functions; TFP's FFJORD does not compile with `jit_compile=True`, so its step is a
`tf.function`. Ours is timed as a `tf.function` and under `jit_compile=True`,
with adjoint gradients (the default) and, for reference, backprop through the
solver. The contenders' steps are compiled first and then timed in interleaved
rounds (one step of each per round), so load from other processes hits all of
them alike; the table reports medians. Timing runs twice: at the initial
weights, and at the weights after `--pretrain` training steps (our
Hutchinson step, copied into every contender), where the dynamics and hence
the number of solver steps have grown as they do during training. Test NLL is
evaluated for both with the exact trace (our `FFJORD(trace='exact')` wrapped
around each trained net).

    python benchmarks/ffjord_speed.py --out docs --budget 60
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from benchmarks import common  # noqa: E402  (sets TF env vars before TF loads)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tfp_flows import bijectors, datasets, nets, testing  # noqa: E402
from tfp_flows.keras.train import evaluate  # noqa: E402

tfb, tfd = tfp.bijectors, tfp.distributions


def make_net(seed, weights=None):
    """Same initial weights for every contender: glorot init from a fixed seed, perturbed
    output layer (a zero output would make the first solves trivially cheap); or `weights`."""
    keras.utils.set_random_seed(seed)
    net = nets.ODENet(2, (64, 64), "tanh")
    net = testing.perturb_weights(net, scale=0.1, seed=seed)
    if weights is not None:
        net.set_weights(weights)
    return net


def pretrained_weights(args, x_all):
    """The net's weights after `args.pretrain` of our Hutchinson training steps."""
    net = make_net(args.seed)
    step = train_step_fn(ours(net, "hutchinson"), net, keras.optimizers.Adam(3e-3), True,
                         pass_seed=True)
    rng = np.random.default_rng(args.seed + 1)
    for i in range(args.pretrain):
        idx = rng.choice(len(x_all), 512, replace=False)
        step(tf.constant(x_all[idx]), tf.constant([args.seed, i])).numpy()
    return net.get_weights()


def base():
    return tfd.MultivariateNormalDiag(tf.zeros(2))


def ours(net, trace, gradient="adjoint", control_log_det=None):
    return tfd.TransformedDistribution(base(), bijectors.FFJORD(
        net, trace=trace, gradient=gradient, rtol=1e-5, atol=1e-5,
        control_log_det=control_log_det))


def theirs(net, trace):
    trace_fn = (tfb.ffjord.trace_jacobian_exact if trace == "exact"
                else tfb.ffjord.trace_jacobian_hutchinson)
    solver = tfp.math.ode.DormandPrince(rtol=1e-5, atol=1e-5)
    bij = tfb.FFJORD(state_time_derivative_fn=lambda t, z: net(t, z),
                     ode_solve_fn=solver.solve, trace_augmentation_fn=trace_fn)
    return tfd.TransformedDistribution(base(), bij)


def train_step_fn(dist, net, optimizer, jit, pass_seed):
    variables = [w.value for w in net.trainable_weights]

    def step(x, seed):
        kwargs = {"bijector_kwargs": {"seed": seed}} if pass_seed else {}
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x, **kwargs))
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, net.trainable_weights, strict=True))
        return loss

    return tf.function(step, jit_compile=jit)


# (implementation, jit_compile, gradient, timing rounds: None = all `--repeats`,
# control_log_det: None = our default). Backprop through an adaptive solve under XLA is
# slow (buffers sized by `max_num_steps`): 2 rounds. The last row times our Hutchinson
# step with the log-det's error controlled as well (as TFP does); with the exact trace
# that is the default, so the row is skipped there.
CONTENDERS = (
    ("tfb.FFJORD", False, "adjoint", None, None),
    ("tfp_flows", False, "adjoint", None, None),
    ("tfp_flows", True, "adjoint", None, None),
    ("tfp_flows", True, "backprop", 2, None),
    ("tfp_flows", True, "adjoint", None, True),
)


def log_det_error(impl, trace, control):
    if impl == "tfb.FFJORD" or control or (control is None and trace == "exact"):
        return "controlled"
    return "not controlled"


def timing(args, x_all, weights=None, label="initial"):
    rows = []
    rng = np.random.default_rng(args.seed)
    batch = tf.constant(x_all[rng.choice(len(x_all), 512, replace=False)])
    seed = tf.constant([1, 2])
    for trace in ("exact", "hutchinson"):
        steps, group = [], []
        contenders = [c for c in CONTENDERS if not (trace == "exact" and c[4])]
        for impl, jit, gradient, _, control in contenders:
            net = make_net(args.seed, weights)
            dist = (ours(net, trace, gradient, control) if impl == "tfp_flows"
                    else theirs(net, trace))
            step = train_step_fn(dist, net, keras.optimizers.Adam(0.0), jit,
                                 pass_seed=impl == "tfp_flows")
            start = time.perf_counter()
            step(batch, seed).numpy()
            row = {"weights": label, "implementation": impl, "trace": trace, "jit_compile": jit,
                   "gradient": gradient, "log-det error": log_det_error(impl, trace, control),
                   "first call (s)": time.perf_counter() - start}
            if impl == "tfp_flows":
                row["NFE (density solve)"] = int(dist.bijector.solve(batch, "inverse",
                                                                     seed=(1, 2)).nfe)
            steps.append(step)
            group.append(row)
            print(row, flush=True)
        times = [[] for _ in steps]
        for i in range(args.repeats):  # interleaved: drifting load hits everyone alike
            for step, record, contender in zip(steps, times, contenders, strict=True):
                if contender[3] is not None and i >= contender[3]:
                    continue
                start = time.perf_counter()
                step(batch, seed).numpy()
                record.append(time.perf_counter() - start)
        ref = float(np.median(times[0]))
        for row, record in zip(group, times, strict=True):
            row["s / step"] = float(np.median(record))
            row["speed-up vs tfb.FFJORD"] = ref / row["s / step"]
            print(row, flush=True)
        rows += group
    return rows


def race(args, split):
    """Train each contender for the same wall-clock budget (tracing included)."""
    rows = []
    for trace in ("hutchinson", "exact"):
        for impl, jit in (("tfb.FFJORD", False), ("tfp_flows", True)):
            rng = np.random.default_rng(args.seed)  # same batches for both
            net = make_net(args.seed)
            dist = ours(net, trace) if impl == "tfp_flows" else theirs(net, trace)
            step = train_step_fn(dist, net, keras.optimizers.Adam(3e-3), jit,
                                 pass_seed=impl == "tfp_flows")
            start, steps = time.perf_counter(), 0
            while time.perf_counter() - start < args.budget:
                idx = rng.choice(len(split.train), 512, replace=False)
                step(tf.constant(split.train[idx]), tf.constant([args.seed, steps])).numpy()
                steps += 1
            elapsed = time.perf_counter() - start
            evaluator = ours(net, "exact")
            nll = evaluate(evaluator, split.test, batch_size=2500).nll
            nfe = int(evaluator.bijector.solve(split.test[:2500], "inverse").nfe)
            rows.append({"implementation": impl, "trace": trace, "jit_compile": jit,
                         "budget (s)": args.budget, "wall time (s)": elapsed,
                         "steps done": steps, "test NLL (exact trace)": nll,
                         "NFE after training": nfe})
            print(rows[-1], flush=True)
    return rows


def forced_control(row):
    """Our Hutchinson step with the log-det's error controlled (not the default)."""
    return (row["implementation"] == "tfp_flows" and row["trace"] == "hutchinson"
            and row["log-det error"] == "controlled")


def plot(rows, path):
    fig, ax = plt.subplots(figsize=(12, 3.8))
    labels = [f"{r['implementation']}\n{r['trace']}{' +jit' if r['jit_compile'] else ''}"
              f"\n{r['gradient']}{' +ld' if forced_control(r) else ''}\n{r['weights']}"
              for r in rows]
    ax.bar(range(len(rows)), [r["s / step"] for r in rows],
           color=["tab:gray" if r["implementation"] == "tfb.FFJORD" else "tab:blue"
                  for r in rows])
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("seconds per training step")
    ax.set_yscale("log")
    ax.set_title("two moons, batch 512, DOPRI5 rtol=atol=1e-5 (+ld: our Hutchinson log-det "
                 "error-controlled too)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=60.0, help="training seconds per contender")
    p.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds")
    p.add_argument("--pretrain", type=int, default=300,
                   help="training steps before the second timing (0: skip it)")
    args = p.parse_args()
    split = datasets.load("moons", num_samples=20000, seed=args.seed)
    command = "python benchmarks/ffjord_speed.py " + " ".join(sys.argv[1:])
    rows = timing(args, split.train)
    if args.pretrain:
        rows += timing(args, split.train, pretrained_weights(args, split.train),
                       f"after {args.pretrain} steps")
    os.makedirs(os.path.join(args.out, "img"), exist_ok=True)
    plot(rows, os.path.join(args.out, "img", "ffjord_speed.png"))
    common.write_results(
        os.path.join(args.out, "results", "ffjord_speed.md"),
        "FFJORD seconds per training step vs tfb.FFJORD", command, rows,
        ["weights", "implementation", "trace", "jit_compile", "gradient", "log-det error",
         "first call (s)",
         "s / step",
         "speed-up vs tfb.FFJORD", "NFE (density solve)"],
        notes=f"Median of {args.repeats} interleaved rounds (2 for jit + backprop) after one "
              "warm-up call; Adam "
              "with lr 0 so the weights (and hence the NFE) stay fixed while timing. "
              "'first call' includes tracing and XLA compilation. NFE: our solver's count "
              "on the same batch (the forward solve of the step; the adjoint adds a "
              "backward solve). 'after N steps': every contender starts from the weights "
              "our Hutchinson step reached after N steps (Adam 3e-3, batch 512).")
    race_rows = race(args, split)
    common.write_results(
        os.path.join(args.out, "results", "ffjord_race.md"),
        "Test NLL after equal wall-clock training", command, race_rows,
        ["implementation", "trace", "jit_compile", "budget (s)", "wall time (s)", "steps done",
         "test NLL (exact trace)", "NFE after training"],
        notes="Two moons (20000 train / 5000 test), batch 512, Adam 3e-3; the budget includes "
              "tracing/compilation. NLL in nats, evaluated for both nets with the exact trace.")


if __name__ == "__main__":
    main()
