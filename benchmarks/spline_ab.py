"""The spline and LU flows at two versions of the library's code, side by side.

Builds the NSF coupling flow of `benchmarks/step_profile.py` (5 layers, hidden
(64, 64), 8 bins on [-4, 4], batch 512, the same perturbed weights; `--flow glow`:
Glow, whose layers are `LULinear` and affine couplings) twice in one process: once
with the working tree's `tfp_flows/bijectors/spline.py`, `one_pass.py` and
`lu_linear.py` ("new") and once with those files as they are at a git revision
("ref", default `main`), loaded from `git show` and swapped in while the
reference flow is built and traced. For each it prints the loss at the start
weights (the two must agree to float32 rounding), counts the TF ops and HLO
instructions / fusions of a jit Adam step, times its first call, and then times
in interleaved rounds: the forward pass (`loss jit`), forward + backward (`grad
jit`) and the full hand-written jit Adam step (`step jit`), and optionally
`FlowModel.fit` (`--fit`). `--values` only compares the losses of several spline
and LU flows (NSF, NSF with LU layers, F-NSF, Glow). The load average is recorded.

    python benchmarks/spline_ab.py --out docs --rounds 10 --fit
    python benchmarks/spline_ab.py --out docs --flow glow --name lu_ab
    python benchmarks/spline_ab.py --out docs --values --name spline_values
"""

import contextlib
import importlib.util
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common, step_profile  # noqa: E402
from benchmarks.peers import timed_steps  # noqa: E402
from tfp_flows import flows  # noqa: E402
from tfp_flows.bijectors import conditioners, coupling, funnel_maps  # noqa: E402
from tfp_flows.flows import baselines, funnels  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_at(ref, relpath, name):
    """The module `relpath` as it is at git revision `ref` (imported under `name`)."""
    source = subprocess.run(["git", "-C", ROOT, "show", f"{ref}:{relpath}"], check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{ref}:{relpath}", "exec"), module.__dict__)  # noqa: S102
    return module


@contextlib.contextmanager
def swapped(spline_module, one_pass_module, lu_module=None):
    """The conditioners, couplings and flows use the given spline / one-pass / LU modules
    meanwhile (None: the working tree's)."""
    names = ("StableRationalQuadraticSpline", "spline_parameters")
    saved = ([getattr(m, n) for m in (conditioners, funnel_maps) for n in names],
             coupling.OnePassRealNVP)
    saved_lu = baselines.LULinear, funnels.LULinear
    if lu_module is not None:
        baselines.LULinear = funnels.LULinear = lu_module.LULinear
    if spline_module is not None:
        for m in (conditioners, funnel_maps):
            for n in names:
                setattr(m, n, getattr(spline_module, n))
        coupling.OnePassRealNVP = one_pass_module.OnePassRealNVP
    try:
        yield
    finally:
        values, coupling.OnePassRealNVP = saved
        baselines.LULinear, funnels.LULinear = saved_lu
        for (m, n), v in zip([(m, n) for m in (conditioners, funnel_maps) for n in names],
                             values, strict=True):
            setattr(m, n, v)


VALUE_FLOWS = (("neural_spline", 2, {"num_bins": 8, "bound": 4.0}),
               ("neural_spline", 64, {"num_bins": 8, "bound": 4.0}),
               ("neural_spline", 8, {"lu_linear": True}),
               ("funnel_nsf", 8, {"latent_size": 4}),
               ("glow", 8, {}), ("glow", 64, {}))


def values(modules, seed):
    """`-mean log_prob` of spline and LU flows at perturbed weights (seed 0), under XLA, per code
    version; inputs 1.5 N(0, I), so some points lie outside [-bound, bound]."""
    rows = []
    for name, dim, extra in VALUE_FLOWS:
        row = {"flow": name, "D": dim, "arguments": str(extra)}
        x = tf.constant(1.5 * np.random.default_rng(seed).standard_normal((512, dim)),
                        tf.float32)
        for variant, mods in modules.items():
            with swapped(*mods):
                keras.utils.set_random_seed(0)
                dist = flows.build_flow(name, event_size=dim, num_layers=3,
                                        hidden_units=(32, 32), **extra)
                rng = np.random.default_rng(1)
                for v in dist.trainable_variables:
                    v.assign(v + 0.05 * rng.standard_normal(v.shape).astype(
                        v.dtype.as_numpy_dtype))
                loss = tf.function(lambda x, d=dist: -tf.reduce_mean(d.log_prob(x)),
                                   jit_compile=True)
                row[f"loss, {variant}"] = f"{float(loss(x)):.7f}"
        print(row, flush=True)
        rows.append(row)
    return rows


def build(flow, dim):
    """`step_profile.build` (5 layers, hidden (64, 64), perturbed weights); also Glow."""
    if flow != "glow":
        return step_profile.build(flow, dim, False)
    keras.utils.set_random_seed(0)
    dist = flows.build_flow("glow", event_size=dim, num_layers=5, hidden_units=(64, 64))
    rng = np.random.default_rng(1)
    for v in dist.trainable_variables:
        v.assign(v + 0.05 * rng.standard_normal(v.shape).astype(v.dtype.as_numpy_dtype))
    return dist


def profile(flow, dim, x, rounds, modules, fit):
    timers, rows = {}, []
    for variant, mods in modules.items():
        with swapped(*mods):
            dist = build(flow, dim)
            fns = step_profile.functions(dist)
            row = {"flow": flow, "D": dim, "code": variant}
            row["loss at start"] = f"{float(fns['loss jit'](x)):.7f}"
            for label in ("loss jit", "grad jit", "step jit"):
                start = time.perf_counter()
                common._block(fns[label](x))
                if label == "step jit":
                    row["step first call (s)"] = time.perf_counter() - start
                timers[(variant, label)] = timed_steps(
                    lambda x, fn=fns[label]: common._block(fn(x)), x)
            row.update(step_profile.op_counts(fns["step jit"], x))
            if fit:
                run, row["fit first call (s)"] = step_profile.fit_timer(build(flow, dim), x)
                timers[(variant, "FlowModel.fit")] = run
        print(f"D={dim} {variant}: loss {row['loss at start']}", flush=True)
        rows.append(row)
    times = {key: [] for key in timers}
    loads = []
    for _ in range(rounds):
        for key, run in timers.items():
            times[key] += run(3)
        loads.append(os.getloadavg()[0])
    for row in rows:
        for (variant, label), record in times.items():
            if variant == row["code"]:
                row[f"{label} (ms)"] = 1e3 * float(np.median(record))
                q1, q3 = np.percentile(record, [25, 75])
                row[f"{label} IQR (ms)"] = f"{1e3 * q1:.3g}-{1e3 * q3:.3g}"
        row["load"] = f"{min(loads):.2f}-{max(loads):.2f}"
    ref, new = rows[0], rows[-1]
    for key in ("loss jit (ms)", "grad jit (ms)", "step jit (ms)", "FlowModel.fit (ms)"):
        if key in new:
            new[f"{key.split(' (')[0]} new / ref"] = new[key] / ref[key]
    print(rows, flush=True)
    return rows


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--ref", default="main", help="git revision of the reference spline code")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--dims", nargs="+", type=int, default=[2, 64])
    p.add_argument("--fit", action="store_true", help="also time FlowModel.fit")
    p.add_argument("--name", default="spline_ab", help="results file name (no extension)")
    p.add_argument("--flow", default="nsf", choices=("nsf", "glow"))
    p.add_argument("--values", action="store_true",
                   help="only the losses of several spline flows at both versions (no timing)")
    args = p.parse_args()
    command = "python benchmarks/spline_ab.py " + " ".join(sys.argv[1:])
    ref = (load_at(args.ref, "tfp_flows/bijectors/spline.py", "ref_spline"),
           load_at(args.ref, "tfp_flows/bijectors/one_pass.py", "ref_one_pass"),
           load_at(args.ref, "tfp_flows/bijectors/lu_linear.py", "ref_lu_linear"))
    modules = {f"ref ({args.ref})": ref, "new (working tree)": (None, None, None)}
    if args.values:
        rows = values(modules, args.seed)
        common.write_results(
            os.path.join(args.out, "results", f"{args.name}.md"),
            "Spline flows: the loss at the same weights, at both versions of the spline code",
            command, rows, list(rows[0]),
            notes="-mean log_prob under tf.function(jit_compile=True) of 512 points "
                  "1.5 N(0, I), 3 layers, hidden (32, 32), weights perturbed as in "
                  "benchmarks/step_profile.py. No timing.")
        return
    rows = []
    for dim in args.dims:
        x = tf.constant(np.random.default_rng(args.seed).standard_normal((512, dim)), tf.float32)
        rows += profile(args.flow, dim, x, args.rounds, modules, args.fit)
    columns = ["flow", "D", "code", "loss at start", "loss jit (ms)", "grad jit (ms)",
               "step jit (ms)", "step jit IQR (ms)", "FlowModel.fit (ms)", "loss jit new / ref",
               "grad jit new / ref", "step jit new / ref", "FlowModel.fit new / ref",
               "step first call (s)", "fit first call (s)", "graph ops", "Cast ops",
               "HLO instructions", "HLO fusions", "load"]
    columns = [c for c in columns if any(c in r for r in rows)]
    common.write_results(
        os.path.join(args.out, "results", f"{args.name}.md"),
        f"{args.flow}: the spline / LU code at a git revision against the working tree",
        command, rows, columns,
        notes=f"Batch 512, 5 layers, hidden (64, 64) (NSF: 8 bins on [-4, 4]), the perturbed start "
              f"weights of benchmarks/step_profile.py, both versions in one process. Medians "
              f"(and quartiles) of {args.rounds} interleaved rounds of 3 calls each; 'step jit' "
              "is a hand-written tf.function(jit_compile=True) Adam step; op counts are of it "
              "(TF graph ops before XLA, HLO instructions after XLA's optimisation). First "
              "calls (trace + XLA compile + one step) are measured once each, so noisy. "
              "'load' is the range of the 1-minute load average over the rounds (2 cores).")


if __name__ == "__main__":
    main()
