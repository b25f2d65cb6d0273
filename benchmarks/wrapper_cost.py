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
from benchmarks.peers import _fit_stepper  # noqa: E402
from tfp_flows import flows  # noqa: E402
from tfp_flows.keras import FlowModel, train  # noqa: E402

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


def contender(spec, seed):
    name, kwargs, objective, dim, rows = spec
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(seed).standard_normal((rows, dim)), tf.float32)
    if objective == "iwae":
        from tfp_flows.keras.objectives import ImportanceWeighted
        objective = ImportanceWeighted(num_samples=K)
    model = FlowModel(flows.build_flow(name, **kwargs), objective=objective)
    model.initialize_from_data(x)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    run = _fit_stepper(model, x)
    start = time.perf_counter()
    run(1)
    return run, time.perf_counter() - start, train.count_parameters(model)


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    args = p.parse_args()
    command = "python benchmarks/wrapper_cost.py " + " ".join(sys.argv[1:])
    print("load", os.getloadavg(), flush=True)
    runs, rows = {}, []
    for pair in args.pairs:
        for role, spec in zip(("wrapper", "base"), PAIRS[pair], strict=True):
            run, first, params = contender(spec, args.seed)
            runs[(pair, role)] = run
            rows.append({"pair": pair, "role": role, "flow": spec[0], "objective": spec[2],
                         "rows per step": spec[4], "params": params, "first call (s)": first,
                         "_times": []})
            print(rows[-1], flush=True)
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for row in rows:
            row["_times"] += runs[(row["pair"], row["role"])](args.steps)
    by = {(r["pair"], r["role"]): r for r in rows}
    for row in rows:
        row["ms / step"] = 1e3 * float(np.median(row.pop("_times")))
        row["load (1 min)"] = f"{min(loads):.1f}-{max(loads):.1f}"
    for pair in args.pairs:
        wrapper, base = by[(pair, "wrapper")], by[(pair, "base")]
        wrapper["wrapper / base"] = wrapper["ms / step"] / base["ms / step"]
    common.write_results(
        os.path.join(args.out, "results", "wrapper_cost.md"),
        "Wrappers' cost per training step over their base flow", command, rows,
        ["pair", "role", "flow", "objective", "rows per step", "params", "first call (s)",
         "ms / step", "wrapper / base", "load (1 min)"],
        notes=f"FlowModel.fit (jit_compile=True), Adam, one fixed batch; median over "
              f"{args.rounds} interleaved rounds of {args.steps} steps, one process. The "
              f"augmentation's base runs on {BATCH} x {K} rows (one row per importance sample), "
              "so 'wrapper / base' is its cost per IS sample over RealNVP on (x, eps).")


if __name__ == "__main__":
    main()
