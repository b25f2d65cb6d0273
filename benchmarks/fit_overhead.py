"""Where `FlowModel.fit` spends a step beyond the compiled program, in one process.

Times, in interleaved rounds, `FlowModel.fit` on one fixed batch (as `peers.py`
does) and a hand-written `tf.function(jit_compile=True)` step on the same batch;
then profiles `fit` (cProfile, one long epoch) and splits its wall time per step
into: the compiled step's call (`tfp_compat.call_flat`), the batch read
(`tfp_compat.flat_reader`'s reader), the rest of the library's step function, and
Keras' loop around it (callbacks, logs, the epoch iterator), with the Python
functions that cost most outside the step. cProfile slows Python down, so the
profile's microseconds are larger than the unprofiled ones; its shares say where
the difference between `fit` and the hand step lies.

It also times a `fit` call's fixed cost (the wall time of a one-step `fit` call on a
compiled model: the data stream, the iterator, callbacks), and with `--base REV` the
same for a git revision's package, in interleaved rounds.

    python benchmarks/fit_overhead.py --out docs/results --cases real_nvp/2 maf/2 --rounds 10
"""

import argparse
import cProfile
import importlib
import os
import pstats
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_flows  # noqa: E402
from benchmarks import common  # noqa: E402
from benchmarks.peers import _fit_stepper, _hand_stepper  # noqa: E402


def build(flow, dim, package=tfp_flows):
    """A compiled 5-layer `flow` model from `package` (this checkout's or a revision's)."""
    keras.utils.set_random_seed(0)
    dist = importlib.import_module(f"{package.__name__}.flows").build_flow(
        flow, event_size=dim, num_layers=5, hidden_units=(64, 64))
    model = importlib.import_module(f"{package.__name__}.keras").FlowModel(dist)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    return model


def fit_call(model, x):
    """Seconds of a one-step `fit` call (the model compiled and trained before)."""
    start = time.perf_counter()
    model.fit(x, batch_size=len(x), shuffle=True, steps_per_epoch=1, epochs=1, verbose=0)
    return time.perf_counter() - start


def profile_fit(model, x, steps):
    """Per-step microseconds of `fit` (profiled) by part, and its costliest functions."""
    rows = len(x)
    profiler = cProfile.Profile()
    profiler.enable()
    model.fit(x, batch_size=rows, shuffle=False, steps_per_epoch=steps, epochs=1, verbose=0)
    profiler.disable()
    stats = pstats.Stats(profiler).stats

    def cumulative(path_end, name):
        return sum(v[3] for k, v in stats.items() if k[0].endswith(path_end) and k[2] == name)

    total = max(v[3] for k, v in stats.items() if k[2] == "fit")
    step_fn = cumulative(os.path.join("keras", "steps.py"), "function")
    read = cumulative("tfp_compat.py", "read")
    call = cumulative("tfp_compat.py", "call_flat")
    parts = {"fit, total": total, "step function": step_fn, "  compiled call": call,
             "  batch read": read, "  rest of the step function": step_fn - call - read,
             "Keras' loop around the step": total - step_fn}
    per_step = {k: 1e6 * v / steps for k, v in parts.items()}
    top = sorted(((v[2], k) for k, v in stats.items()), reverse=True)[:10]
    top = [(f"{os.path.basename(k[0])}:{k[1]} {k[2]}", 1e6 * t / steps, stats[k][1] / steps)
           for t, k in top]
    return per_step, top


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--cases", nargs="+", default=["real_nvp/2", "maf/2"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="steps per contender per round")
    parser.add_argument("--profile-steps", type=int, default=1000)
    parser.add_argument("--name", default="fit_overhead")
    parser.add_argument("--base", default=None,
                        help="a git revision: also time its one-step fit call")
    args = parser.parse_args()
    base = common.import_revision(args.base) if args.base else None

    rows, profiles = [], []
    for case in args.cases:
        flow, dim = case.split("/")
        dim = int(dim)
        x = np.random.default_rng(0).standard_normal((512, dim)).astype("float32")
        model = build(flow, dim)
        fit_run = _fit_stepper(model, x)
        hand_model = build(flow, dim)
        hand_run = _hand_stepper(hand_model.distribution, keras.optimizers.Adam(1e-3), x)
        base_model = build(flow, dim, base) if base else None
        fit_run(3)
        hand_run(3)
        if base_model is not None:
            fit_call(base_model, x)
        fits, hands, calls, base_calls, loads = [], [], [], [], []
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            fits.append(statistics.median(fit_run(args.steps)))
            hands.append(statistics.median(hand_run(args.steps)))
            calls.append(fit_call(model, x))
            if base_model is not None:
                base_calls.append(fit_call(base_model, x))
        f, h = statistics.median(fits), statistics.median(hands)
        row = {"case": case, "fit ms": f"{1e3 * f:.3f}", "hand step ms": f"{1e3 * h:.3f}",
               "fit - hand (µs)": f"{1e6 * (f - h):.0f}", "fit / hand": f"{f / h:.2f}",
               "one-step fit call ms": f"{1e3 * statistics.median(calls):.0f}"}
        if base_model is not None:
            row[f"one-step fit call ms, {args.base}"] = (
                f"{1e3 * statistics.median(base_calls):.0f}")
        rows.append(dict(row, load=f"{min(loads):.1f}-{max(loads):.1f}"))
        print(rows[-1], flush=True)
        profiles.append((case, *profile_fit(model, x, args.profile_steps)))

    notes = [f"Median of {args.rounds} interleaved rounds of {args.steps} steps (per-round "
             "medians), one process, batch 512, 5 layers, hidden (64, 64), Adam, "
             "jit_compile=True; `fit` timed between Keras' batch ends (as peers.py), the hand "
             "step per call on the fixed batch.", ""]
    for case, per_step, top in profiles:
        notes += [f"### {case}: `fit` under cProfile, {args.profile_steps} steps, µs per step",
                  "", "| part | µs / step |", "|---|---|"]
        notes += [f"| {k} | {v:.0f} |" for k, v in per_step.items()]
        notes += ["", "The functions with the most time of their own, anywhere in `fit` (µs "
                  "per step, calls per step; builtins are where TF's C++ runs):", "",
                  "| function | µs / step | calls / step |",
                  "|---|---|---|"]
        notes += [f"| `{name}` | {us:.1f} | {calls:.1f} |" for name, us, calls in top]
        notes.append("")
    common.write_results(
        os.path.join(args.out, f"{args.name}.md"), "`FlowModel.fit` beyond the compiled step",
        "python benchmarks/fit_overhead.py " + " ".join(sys.argv[1:]), rows, list(rows[0]),
        notes="\n".join(notes))


if __name__ == "__main__":
    main()
