"""Numerical robustness of the ready-made flows for outliers and extreme weights (float32).

For every flow kind, `--num-flows` flows on `R^4` are built (small data-dependent
initialisation on 256 standard-normal points, then every trainable weight moved
by `N(0, s^2)` noise, `testing.perturb_weights`, for each `s` in `--scales`).
Latent points `x = sigma * N(0, I)` (`sigma` in `--sigmas`, 256 points per flow)
are pushed through the flow's bijector `f` (sampling direction) and back;
TFP's bijector cache is defeated with `tf.identity` between calls. Reported,
per kind, scale and sigma, the maximum over all flows and points of

* `round trip`: `|f^-1(f(x)) - x|_2 / |x|_2`,
* `ldj gap`: `|fldj(x) + ildj(f(x))|` (nats; the two must cancel),
* `inv round trip` / `inv ldj gap`: the same from the density side, with
  `y = x` as data: `|f(f^-1(y)) - y| / |y|` and `|ildj(y) + fldj(f^-1(y))|`,
* `non-finite`: how many of `f(x)`, `f^-1(f(x))`, `fldj(x)`, `ildj(f(x))`,
  `f^-1(y)`, `ildj(y)` are NaN or Inf (points at which any is, are left out of
  the maxima above).

    python benchmarks/robustness.py --scales 0.1 0.3 --sigmas 1 10 100 --num-flows 10

Writes `<out>/robustness.md` and `.json` and prints the table with the load average.

`--distributions` measures the ready-made flows of the flow registry instead
(`tfp_flows.testing.FLOWS`: every family, funnels, augmented and LGF included,
small nets) with `testing.flows.robustness_profile` at each `--scales` value:
non-finite `log_prob` values at 16 inputs per sigma in {1, 10, 100}, the
smallest log-density per sigma, non-finite samples and sample log-densities,
and for exact flows of the plane the mass on `[-8, 8]^2` minus 1 and the
density-side vs sampling-side gap (what `tests/test_robustness_flows.py`
checks):

    python benchmarks/robustness.py --distributions --scales 0.1 0.3 --name robustness_flows
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_flows import flows, testing  # noqa: E402
from tfp_flows.internal import contract  # noqa: E402

EVENT_SIZE = 4
KINDS = {
    "real_nvp": {"num_layers": 4},
    "glow": {"num_layers": 4},
    "maf": {"num_layers": 5},
    "neural_spline": {"num_layers": 4},
    "ferumal": {"num_blocks": 2, "num_inducing": 32},
    "ffjord": {"solver": "rk4", "num_steps": 8, "hidden_units": (32, 32)},
}


def perturb_zero_weights(obj, scale, seed):
    """Adds `N(0, scale^2)` noise to every trainable Keras weight of `obj` that is exactly zero.

    After construction and data-dependent initialisation those are the
    conditioners' output layers (and biases): the weights that make a new flow
    the identity.
    """
    rng = np.random.default_rng(seed)
    for w in testing.keras_weights(obj):
        value = np.asarray(w.numpy())
        if np.all(value == 0):
            w.assign(value + (rng.standard_normal(value.shape) * scale).astype(value.dtype))
    return obj


def build(kind, scale, seed, dtype="float32", perturb="all"):
    """Flow `kind` on R^4, initialised from N(0, I) data, weights moved by N(0, scale^2).

    `perturb='zeros'` moves only the weights that start at zero
    (`perturb_zero_weights`), `'all'` every trainable weight
    (`testing.perturb_weights`).
    """
    keras.utils.set_random_seed(seed)
    flow = flows.build_flow(kind, event_size=EVENT_SIZE, dtype=dtype, **KINDS[kind])
    x0 = np.random.default_rng(seed).standard_normal((256, EVENT_SIZE)).astype(dtype)
    contract.initialize_from_data(flow, tf.constant(x0))
    if perturb == "all":
        testing.perturb_weights(flow, scale=scale, seed=seed)
    else:
        perturb_zero_weights(flow, scale, seed)
    return flow.bijector


def _rel(a, b):
    return np.linalg.norm(a - b, axis=-1) / np.maximum(np.linalg.norm(b, axis=-1), 1e-30)


def measure(bij, x):
    """Per-point errors of one bijector at points `x` (NumPy arrays; NaN where non-finite)."""
    t = tf.constant(x)
    y = bij.forward(tf.identity(t))
    x_back = bij.inverse(tf.identity(y))
    fldj = bij.forward_log_det_jacobian(tf.identity(t), event_ndims=1)
    ildj = bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=1)
    z = bij.inverse(tf.identity(t))
    y_back = bij.forward(tf.identity(z))
    ildj_y = bij.inverse_log_det_jacobian(tf.identity(t), event_ndims=1)
    fldj_z = bij.forward_log_det_jacobian(tf.identity(z), event_ndims=1)
    y, x_back, z, y_back = (np.asarray(v, np.float64) for v in (y, x_back, z, y_back))
    fldj, ildj, ildj_y, fldj_z = (np.asarray(v, np.float64) for v in (fldj, ildj, ildj_y, fldj_z))
    bad_f = ~(np.all(np.isfinite(y), -1) & np.all(np.isfinite(x_back), -1)
              & np.isfinite(fldj) & np.isfinite(ildj))
    bad_i = ~(np.all(np.isfinite(z), -1) & np.all(np.isfinite(y_back), -1)
              & np.isfinite(ildj_y) & np.isfinite(fldj_z))
    nonfinite = sum(int(np.sum(~np.isfinite(v))) for v in (y, x_back, fldj, ildj, z, ildj_y))
    out = {"round_trip": _rel(x_back, x), "ldj_gap": np.abs(fldj + ildj),
           "inv_round_trip": _rel(y_back, x), "inv_ldj_gap": np.abs(ildj_y + fldj_z)}
    out["round_trip"][bad_f] = np.nan
    out["ldj_gap"][bad_f] = np.nan
    out["inv_round_trip"][bad_i] = np.nan
    out["inv_ldj_gap"][bad_i] = np.nan
    out["nonfinite"], out["bad_flows"] = nonfinite, int(np.any(bad_f | bad_i))
    out["y"], out["fldj"], out["ildj"] = y, fldj, ildj
    return out


def _max(values):
    values = np.concatenate(values)
    values = values[np.isfinite(values)]
    return float(np.max(values)) if values.size else float("nan")


def run(kinds, scales, sigmas, num_flows, num_points, dtype="float32", perturb="all",
        verbose=False):
    rows = []
    for kind in kinds:
        for scale in scales:
            start = time.perf_counter()
            per_sigma = {s: [] for s in sigmas}
            for seed in range(num_flows):
                bij = build(kind, scale, seed, dtype, perturb)
                rng = np.random.default_rng(1000 + seed)
                base = rng.standard_normal((num_points, EVENT_SIZE))
                for sigma in sigmas:
                    m = measure(bij, (sigma * base).astype(dtype))
                    per_sigma[sigma].append(m)
                    if verbose and m["bad_flows"]:
                        print(f"  {kind} s={scale} sigma={sigma} flow {seed}: "
                              f"{m['nonfinite']} non-finite")
            for sigma in sigmas:
                ms = per_sigma[sigma]
                rows.append({
                    "flow": kind, "scale": scale, "sigma": sigma,
                    "round trip": _max([m["round_trip"] for m in ms]),
                    "ldj gap": _max([m["ldj_gap"] for m in ms]),
                    "inv round trip": _max([m["inv_round_trip"] for m in ms]),
                    "inv ldj gap": _max([m["inv_ldj_gap"] for m in ms]),
                    "non-finite": sum(m["nonfinite"] for m in ms),
                    "flows with non-finite": sum(m["bad_flows"] for m in ms),
                })
            print(f"{kind} s={scale}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


COLUMNS = ["flow", "scale", "sigma", "round trip", "ldj gap", "inv round trip", "inv ldj gap",
           "non-finite", "flows with non-finite"]


DIST_COLUMNS = ["flow", "scale", "kind", "non-finite at 1", "non-finite at 10",
                "non-finite at 100", "min log p at 1", "min log p at 10", "min log p at 100",
                "non-finite samples", "non-finite log p(samples)", "mass - 1", "sides gap",
                "seconds"]


def run_distributions(args, argv):
    from tfp_flows.testing import flows as flow_testing

    start, rows = time.perf_counter(), []
    for scale in args.scales:
        for name in flow_testing.FLOWS:
            t = time.perf_counter()
            row = flow_testing.robustness_profile(name, scale)
            row["seconds"] = round(time.perf_counter() - t, 1)
            for key in ("min log p at 1", "min log p at 10", "min log p at 100", "mass - 1",
                        "sides gap"):
                if key in row:
                    row[key] = float(f"{row[key]:.2g}")
            rows.append(row)
            print(row, flush=True)
    load = os.getloadavg()
    common.write_results(
        os.path.join(args.out, f"{args.name}.md"),
        "Ready-made flows far from their data (float32)",
        "python benchmarks/robustness.py " + " ".join(argv or sys.argv[1:]), rows, DIST_COLUMNS,
        "The registry's flow cases (tfp_flows.testing.FLOWS, small nets), initialised from 8 "
        "standard-normal rows, every trainable weight moved by N(0, 0.1^2), then by N(0, s^2) "
        "for s != 0.1; 16 inputs sigma N(0, I) per sigma, 16 samples. Empty cells: not "
        "measured (mass: exact flows of the plane only; sides gap: TFP transformed "
        f"distributions only). {time.perf_counter() - start:.0f} s eager; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}.")


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    p.add_argument("--scales", nargs="+", type=float, default=[0.1, 0.3])
    p.add_argument("--sigmas", nargs="+", type=float, default=[1.0, 10.0, 100.0])
    p.add_argument("--num-flows", type=int, default=10, help="flows per kind and scale")
    p.add_argument("--num-points", type=int, default=256, help="points per flow and sigma")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--perturb", default="all", choices=["zeros", "all"],
                   help="perturb only the weights that start at zero, or all weights")
    p.add_argument("--name", default="robustness", help="results file name (no extension)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--distributions", action="store_true",
                   help="measure the registry's ready-made flows (testing.FLOWS) instead")
    args = p.parse_args(argv)
    if args.distributions:
        return run_distributions(args, argv)
    start = time.perf_counter()
    rows = run(args.kinds, args.scales, args.sigmas, args.num_flows, args.num_points,
               args.dtype, args.perturb, args.verbose)
    load = os.getloadavg()
    command = "python benchmarks/robustness.py " + " ".join(argv or sys.argv[1:])
    notes = (f"{args.num_flows} flows per kind and scale, {args.num_points} points per flow "
             f"and sigma, {args.dtype}, perturbed: {args.perturb}; "
             f"{time.perf_counter() - start:.0f} s; load average "
             f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}. Round trips are relative "
             "(`|x' - x| / |x|`), log-det gaps in nats; maxima over finite points.")
    for row in rows:
        for key in ("round trip", "ldj gap", "inv round trip", "inv ldj gap"):
            row[key] = float(f"{row[key]:.2g}")
    common.write_results(os.path.join(args.out, f"{args.name}.md"),
                         "Round trips and log-det consistency, 4-D flows (float32)",
                         command, rows, COLUMNS, notes)


if __name__ == "__main__":
    main()
