"""Where a tfp_flows training step goes: XLA vs graph mode, forward vs backward, op counts.

For each flow (MAF, RealNVP, NSF coupling; 5 layers, hidden (64, 64) ReLU, batch
512) on 2-D and 64-D data, and for two builds of it (`tfp`: the coupling and MAF
layers as TFP's `tfb.RealNVP` / `tfb.MaskedAutoregressiveFlow`, which evaluate the
conditioner in `inverse` and again in the log-det; `one_pass`: the library's
`bijectors.one_pass` classes, one evaluation per layer), this times in interleaved
rounds, all in one process:

* `loss jit`: the forward pass only (`-mean log_prob`), `tf.function(jit_compile=True)`;
* `grad jit`: loss and gradients (forward + backward), no optimiser;
* `step jit`: a full Adam step (`jit_compile=True`), and `step graph`: the same
  step as a plain `tf.function` (graph mode, no XLA);
* `FlowModel.fit`: the library's Keras path (`jit_compile=True`), per step between
  Keras' batch ends.

A third build, `floor` (MAF and RealNVP), is `benchmarks/floor.py`: the same
flow at the same weights as a hand-written pure-TF step (raw matmuls and MADE
masks, hand-written Adam; no TFP, no Keras), its loss checked equal to the
library's: what TF and XLA on CPU cost without the library's graph.

It also counts ops: TF graph ops of the traced step (total, `Cast`, `MatMul` /
`BatchMatMulV2` / `Einsum`) and HLO instructions after XLA's optimisation passes,
and times the first call (trace + compile + one step).

    python benchmarks/step_profile.py --out docs --rounds 10
"""

import contextlib
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from benchmarks import common, floor  # noqa: E402
from benchmarks.peers import _fit_stepper, timed_steps  # noqa: E402
from tfp_flows import flows  # noqa: E402
from tfp_flows.bijectors import coupling  # noqa: E402
from tfp_flows.flows import baselines  # noqa: E402
from tfp_flows.keras import FlowModel  # noqa: E402

tfb = tfp.bijectors
FLOWS = {"maf": ("maf", {}), "real_nvp": ("real_nvp", {}),
         "nsf": ("neural_spline", {"num_bins": 8, "bound": 4.0})}
FLOOR_VARIANTS = ("floor", "floor+keras adam", "library+hand adam")
VARIANTS = ("tfp", "one_pass", *FLOOR_VARIANTS)


def fit_timer(distribution, x):
    """A `FlowModel.fit` stepper on the fixed batch `x` (Adam with learning rate 0, XLA)
    and the seconds of its first call (trace + compile + one step)."""
    model = FlowModel(distribution)
    model.compile(keras.optimizers.Adam(0.0), jit_compile=True)
    run = _fit_stepper(model, x)
    start = time.perf_counter()
    run(1)
    return run, time.perf_counter() - start


@contextlib.contextmanager
def tfp_layers(enabled):
    """Builds with TFP's RealNVP / MAF classes (the library before `one_pass`)."""
    saved = coupling.OnePassRealNVP, baselines.OnePassMaskedAutoregressiveFlow
    if enabled:
        coupling.OnePassRealNVP = tfb.RealNVP
        baselines.OnePassMaskedAutoregressiveFlow = tfb.MaskedAutoregressiveFlow
    try:
        yield
    finally:
        coupling.OnePassRealNVP, baselines.OnePassMaskedAutoregressiveFlow = saved


def build(flow, dim, tfp_classes):
    name, extra = FLOWS[flow]
    keras.utils.set_random_seed(0)
    with tfp_layers(tfp_classes):
        dist = flows.build_flow(name, event_size=dim, num_layers=5, hidden_units=(64, 64),
                                **extra)
    rng = np.random.default_rng(1)  # non-zero output layers: a generic point, not the identity
    for v in dist.trainable_variables:
        v.assign(v + 0.05 * rng.standard_normal(v.shape).astype(v.dtype.as_numpy_dtype))
    return dist


def functions(dist):
    variables = list(dist.trainable_variables)
    optimizer = keras.optimizers.Adam(0.0)
    optimizer.build(variables)  # slots before tracing: one trace, one XLA compile (as `fit`)

    def loss(x):
        return -tf.reduce_mean(dist.log_prob(x))

    def grad(x):
        with tf.GradientTape() as tape:
            value = loss(x)
        return value, tape.gradient(value, variables)

    def step(x):
        value, grads = grad(x)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return value

    return {"loss jit": tf.function(loss, jit_compile=True),
            "grad jit": tf.function(grad, jit_compile=True),
            "step jit": tf.function(step, jit_compile=True),
            "step graph": tf.function(step)}


def op_counts(fn, x):
    graph = fn.get_concrete_function(x).graph
    ops = [op.type for op in graph.get_operations()]
    hlo = fn.experimental_get_compiler_ir(x)(stage="optimized_hlo")
    instructions = [line for line in hlo.splitlines() if re.match(r"\s+(ROOT )?%?\S+ = ", line)]
    return {"graph ops": len(ops), "Cast ops": ops.count("Cast"),
            "matmul ops": sum(ops.count(t) for t in ("MatMul", "BatchMatMulV2", "Einsum")),
            "HLO instructions": len(instructions),
            "HLO dots": sum(" dot(" in line for line in instructions),
            "HLO fusions": sum(" fusion(" in line for line in instructions)}


def floor_functions(dist, x, variant):
    """The pure-TF floor (benchmarks/floor.py) at the same weights: its step (XLA) and loss;
    `floor+keras adam` / `library+hand adam`: one half swapped for the library's."""
    step, loss = floor.build_floor(dist, 0.0, library_loss=variant.startswith("library"),
                                   keras_adam=variant.endswith("keras adam"))
    floor.check_same_loss(dist, loss, x)
    return {"loss jit": loss, "step jit": step}


def profile(flow, dim, x, rounds, variants):
    timers, rows = {}, []
    for variant in variants:
        hand = variant in FLOOR_VARIANTS
        if hand and flow not in ("maf", "real_nvp"):
            continue
        dist = build(flow, dim, variant == "tfp")
        fns = floor_functions(dist, x, variant) if hand else functions(dist)
        row = {"flow": flow, "D": dim, "layers": variant}
        if not hand:
            loss = float(fns["loss jit"](x))
            row["loss at start"] = loss
            print(f"{flow} D={dim} {variant}: loss at the start weights {loss:.7f}", flush=True)
        for label, fn in fns.items():
            start = time.perf_counter()
            common._block(fn(x))
            if label == "step jit":
                row["first call (s)"] = time.perf_counter() - start
            timers[(variant, label)] = timed_steps(lambda x, fn=fn: common._block(fn(x)), x)
        row.update(op_counts(fns["step jit"], x))
        rows.append(row)
        if hand:
            continue
        fit, row["fit first call (s)"] = fit_timer(build(flow, dim, variant == "tfp"), x)
        timers[(variant, "FlowModel.fit")] = fit
    times = {key: [] for key in timers}
    for _ in range(rounds):
        for key, run in timers.items():
            times[key] += run(3)
    for row in rows:
        for (variant, label), record in times.items():
            if variant == row["layers"]:
                row[f"{label} (ms)"] = 1e3 * float(np.median(record))
        if "grad jit (ms)" in row:
            row["backward share"] = 1 - row["loss jit (ms)"] / row["grad jit (ms)"]
            row["fit / step jit"] = row["FlowModel.fit (ms)"] / row["step jit (ms)"]
        row["load"] = os.getloadavg()[0]
        print(row, flush=True)
    by = {row["layers"]: row for row in rows}
    if "tfp" in by and "one_pass" in by:
        base, new = by["tfp"], by["one_pass"]
        new["step jit speed-up"] = base["step jit (ms)"] / new["step jit (ms)"]
        new["fit speed-up"] = base["FlowModel.fit (ms)"] / new["FlowModel.fit (ms)"]
    if "floor" in by:
        for row in by.values():
            row["step / floor"] = row["step jit (ms)"] / by["floor"]["step jit (ms)"]
    return rows


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--flows", nargs="+", default=list(FLOWS), choices=list(FLOWS))
    p.add_argument("--dims", nargs="+", type=int, default=[2, 64])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--append", action="store_true",
                   help="add to (or replace rows of) the existing results instead of starting anew")
    args = p.parse_args()
    command = "python benchmarks/step_profile.py " + " ".join(sys.argv[1:])
    path = os.path.join(args.out, "results", "step_profile.md")
    rows, commands = [], [command]
    if args.append and os.path.exists(os.path.splitext(path)[0] + ".json"):
        with open(os.path.splitext(path)[0] + ".json") as f:
            saved = json.load(f)
        rows, commands = saved["rows"], saved["command"].split("\n") + [command]
    for dim in args.dims:
        x = tf.constant(np.random.default_rng(args.seed).standard_normal((512, dim)), tf.float32)
        for flow in args.flows:
            new = profile(flow, dim, x, args.rounds, args.variants)
            keys = {(r["flow"], r["D"], r["layers"]) for r in new}
            rows = [r for r in rows if (r["flow"], r["D"], r["layers"]) not in keys] + new
            write(path, "\n".join(commands), rows, args.rounds)  # a killed run loses little


def write(path, command, rows, rounds):
    columns = ["flow", "D", "layers", "loss jit (ms)", "grad jit (ms)", "step jit (ms)",
               "step graph (ms)", "FlowModel.fit (ms)", "fit / step jit", "backward share",
               "step jit speed-up", "fit speed-up", "step / floor", "first call (s)",
               "fit first call (s)", "graph ops", "Cast ops", "matmul ops", "HLO instructions",
               "HLO dots", "HLO fusions", "load"]
    common.write_results(
        path,
        "Where a training step goes (tfp_flows, batch 512, 5 layers, hidden (64, 64))",
        command, rows, columns,
        notes=f"Medians of {rounds} interleaved rounds of 3 calls each, one process. "
              "'layers = tfp': TFP's tfb.RealNVP / tfb.MaskedAutoregressiveFlow (conditioner "
              "evaluated for the map and again for the log-det); 'one_pass': "
              "tfp_flows.bijectors.one_pass; 'floor': benchmarks/floor.py, a hand-written "
              "pure-TF step (raw matmuls and masks, hand-written Adam; no TFP, no Keras) at the "
              "same weights, same loss; 'floor+keras adam': its loss with keras.optimizers.Adam; "
              "'library+hand adam': the library's loss with the hand-written Adam. "
              "backward share = 1 - loss / (loss + grad) time. "
              "Op counts are of the full Adam step: TF graph ops before XLA, HLO instructions "
              "after XLA's optimisation (dots = matrix products that survive XLA's CSE).")


if __name__ == "__main__":
    main()
