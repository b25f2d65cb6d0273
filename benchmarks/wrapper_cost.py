"""What the wrappers cost per training step over the flow they wrap.

Each pair is trained with `FlowModel.fit` (`jit_compile=True`, per step between
Keras' batch ends, `benchmarks/peers.py`'s `_fit_stepper`) on one fixed batch,
all pairs timed in interleaved rounds in one process (load printed):

* funnel: `funnel_nsf` (D = 8 -> latent 6, 4 steps, the funnel at step 2, a
  conditional-NSF decoder) over `neural_spline(8, 4, lu_linear=True)`, and
  `funnel_glow` over `glow(8, 4)` (its NSF / Glow: the same steps without the funnel);
* augmentation: `augmented_real_nvp` (D = 2, B = 2, IWAE with K = 8 importance
  samples, batch 512: 4096 flow evaluations) over `real_nvp(4)` by maximum
  likelihood on a batch of 512 K = 4096 rows of (x, eps): the cost per IS sample;
* LGF: `lgf_maf` (D = 2, 5 layers, ELBO, one index sample) over `maf(2, 5)` with
  the same MADEs (hidden (50, 50)).

`--hand-step` adds, for every contender, a hand-written `tf.function(jit_compile=True)`
step of the same objective (a fresh stateless seed per step, as `FlowModel` passes),
which separates the wrappers' compiled graphs from Keras' per-step loop.

    python benchmarks/wrapper_cost.py --out docs --rounds 10
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.peers import _fit_stepper, timed_steps  # noqa: E402
from tfp_flows import flows  # noqa: E402
from tfp_flows.keras import FlowModel, objectives, train  # noqa: E402

BATCH = 512
K = 8
# name: (wrapper (flow, kwargs, objective, data dim, rows), base (same))
PAIRS = {
    "funnel_nsf": (("funnel_nsf", {"event_size": 8, "latent_size": 6}, "nll", 8, BATCH),
                   ("neural_spline", {"event_size": 8, "num_layers": 4, "lu_linear": True},
                    "nll", 8, BATCH)),
    "funnel_glow": (("funnel_glow", {"event_size": 8, "latent_size": 6}, "nll", 8, BATCH),
                    ("glow", {"event_size": 8, "num_layers": 4}, "nll", 8, BATCH)),
    "augmentation": (("augmented_real_nvp", {"event_size": 2, "num_augment": 2,
                                             "num_layers": 5}, "iwae", 2, BATCH),
                     ("real_nvp", {"event_size": 4, "num_layers": 5}, "nll", 4, BATCH * K)),
    "lgf": (("lgf_maf", {"event_size": 2, "num_layers": 5}, "elbo", 2, BATCH),
            ("maf", {"event_size": 2, "num_layers": 5, "hidden_units": (50, 50)}, "nll", 2,
             BATCH)),
}


def hand_step(model, objective, optimizer, seed):
    """A hand-written jit Adam step of `objective` on `model`'s weights, with a fresh
    stateless seed per step (as `FlowModel`'s own step)."""
    weights = model.trainable_weights
    optimizer.build(weights)
    step_seed = tf.Variable([seed, 0])

    @tf.function(jit_compile=True)
    def step(x):
        step_seed.assign_add([0, 1])
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(objective(model.distribution, x,
                                             seed=step_seed.read_value(), training=True))
        grads = tape.gradient(loss, [w.value for w in weights])
        optimizer.apply_gradients(zip(grads, weights, strict=True))
        return loss

    return step


def contender(spec, seed, hand=False):
    """`(run, first call, params)`: `FlowModel.fit`'s steps, or (`hand`) a hand-written
    jit step of the same objective with a fresh stateless seed per step (as `FlowModel`)."""
    name, kwargs, objective, dim, rows = spec
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(seed).standard_normal((rows, dim)), tf.float32)
    objective = objectives.ImportanceWeighted(num_samples=K) if objective == "iwae" else (
        objectives.get(objective))
    model = FlowModel(flows.build_flow(name, **kwargs), objective=objective)
    model.initialize_from_data(x)
    optimizer = keras.optimizers.Adam(1e-3)
    if hand:
        step = hand_step(model, objective, optimizer, seed)
        run = timed_steps(lambda x: step(x).numpy(), x)
    else:
        model.compile(optimizer, jit_compile=True)
        run = _fit_stepper(model, x)
    start = time.perf_counter()
    run(1)
    return run, time.perf_counter() - start, train.count_parameters(model)


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--hand-step", action="store_true",
                   help="also time hand-written jit steps of the same objectives")
    args = p.parse_args()
    command = "python benchmarks/wrapper_cost.py " + " ".join(sys.argv[1:])
    print("load", os.getloadavg(), flush=True)
    runs, rows = {}, []
    modes = ("fit", "hand step") if args.hand_step else ("fit",)
    for pair in args.pairs:
        for mode in modes:
            for role, spec in zip(("wrapper", "base"), PAIRS[pair], strict=True):
                run, first, params = contender(spec, args.seed, mode == "hand step")
                runs[(pair, role, mode)] = run
                rows.append({"pair": pair, "role": role, "step": mode, "flow": spec[0],
                             "objective": spec[2], "rows per step": spec[4], "params": params,
                             "first call (s)": first, "_times": []})
                print(rows[-1], flush=True)
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for row in rows:
            row["_times"] += runs[(row["pair"], row["role"], row["step"])](args.steps)
    by = {(r["pair"], r["role"], r["step"]): r for r in rows}
    for row in rows:
        row["ms / step"] = 1e3 * float(np.median(row.pop("_times")))
        row["load (1 min)"] = f"{min(loads):.1f}-{max(loads):.1f}"
    for pair in args.pairs:
        for mode in modes:
            wrapper, base = by[(pair, "wrapper", mode)], by[(pair, "base", mode)]
            wrapper["wrapper / base"] = wrapper["ms / step"] / base["ms / step"]
    common.write_results(
        os.path.join(args.out, "results", "wrapper_cost.md"),
        "Wrappers' cost per training step over their base flow", command, rows,
        ["pair", "role", "step", "flow", "objective", "rows per step", "params", "first call (s)",
         "ms / step", "wrapper / base", "load (1 min)"],
        notes=f"step: FlowModel.fit (jit_compile=True) or a hand-written "
              "tf.function(jit_compile=True) step of the same objective (--hand-step); Adam, "
              "one fixed batch; median over "
              f"{args.rounds} interleaved rounds of {args.steps} steps, one process. The "
              f"augmentation's base runs on {BATCH} x {K} rows (one row per importance sample), "
              "so 'wrapper / base' is its cost per IS sample over RealNVP on (x, eps).")


if __name__ == "__main__":
    main()
