"""Where the wrappers' training steps go: XLA:CPU time per network, direction and op class.

For each pair of `benchmarks/wrapper_cost.py` (a wrapper and its base flow, the
same specs), a hand-written jit Adam step of the objective (`tf.function(jit_compile=True)`,
learning rate 0, a fresh seed per step) is timed unprofiled (all contenders in
interleaved rounds, median wall time) and then run under the TF profiler, and the time of every
XLA:CPU thunk is attributed through the optimised HLO's metadata to

* a network: the TF name scope the op was traced in (`Adam update`, `MADE`, the LGF layer's
  `s/t MLP`, LGF's prior `p(u | z)` and posterior `q(u | z)`, a coupling /
  spline conditioner, the funnel's decoder, ...; `other` for the rest: the
  bijectors' elementwise maps, log-dets, base log-prob, sampling of `u`);
* a direction: `backward` for ops under the gradient tape, else `forward`;
* an op class: `dot`, `fusion` (elementwise / reductions fused by XLA), `copy`
  (copies, transposes), `rng` and `other`.

A thunk's time is its median over the profiled steps, so a preemption by another
process on a shared machine does not land on one network.

It also counts the dots of each network and direction and their FLOPs (from the
operand shapes), which is what the extra networks predict.

    python benchmarks/wrapper_profile.py --out docs --pairs lgf funnel_nsf funnel_glow --steps 30
"""

import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402,I001  (sets TF env vars before TF loads)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from benchmarks import wrapper_cost  # noqa: E402
from benchmarks.wrapper_cost import PAIRS  # noqa: E402
from tfp_flows import flows  # noqa: E402
from tfp_flows.keras import FlowModel, objectives  # noqa: E402

# (substring of the TF op name, network); the first match wins.
NETWORKS = (("_st_net", "s/t MLP"), ("_p_", "prior p(u|z)"), ("_q_", "posterior q(u|z)"),
            ("decoder", "decoder"), ("made", "MADE"), ("funnel_spline", "funnel map"),
            ("funnel_affine", "funnel map"),
            ("spline_coupling", "spline conditioner"), ("coupling", "coupling conditioner"),
            ("mlp", "other MLP"))


def network(op_name):
    low = op_name.lower()
    if "adam" in low or "apply_gradients" in low:
        return "Adam update"
    for key, label in NETWORKS:
        if key in low:
            return label
    return "other"


def op_class(op):
    if op in ("dot", "convolution"):
        return "dot"
    if op == "fusion":
        return "fusion"
    if op in ("copy", "transpose", "copy-start", "copy-done"):
        return "copy"
    if op.startswith("rng"):
        return "rng"
    return "other"


def hlo_ops(hlo):
    """HLO instruction name -> (network, direction, op class, dot FLOPs)."""
    shapes = {n: [int(s) for s in dims.split(",") if s]
              for n, dims in re.findall(r"%([\w.\-]+) = \w+\[([\d,]*)\]", hlo)}
    shapes.update({n: [int(s) for s in dims.split(",") if s]
                   for n, dims in re.findall(r"%([\w.\-]+): \w+\[([\d,]*)\]", hlo)})
    ops = {}
    for line in hlo.splitlines():
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = \S+? ([a-z][\w\-]*)\((.*)", line)
        if not m:
            continue
        name, op, rest = m.groups()
        op_name = re.search(r'op_name="([^"]*)"', rest)
        op_name = op_name.group(1) if op_name else ""
        flops = 0
        dims = re.match(r"%([\w.\-]+), %([\w.\-]+)\), lhs_contracting_dims=\{(\d)\}", rest)
        if op == "dot" and dims:
            flops = 2 * shapes.get(dims.group(1), [0] * 3)[int(dims.group(3))] * int(
                np.prod(shapes.get(name, [0])))
        direction = "backward" if op_name.startswith("gradient_tape") else "forward"
        ops[name] = (network(op_name), direction, op_class(op), flops)
    return ops


def adam_step(spec, seed):
    """The jit Adam step of `spec` (a `wrapper_cost.PAIRS` entry; learning rate 0, so every
    step sees the same weights) with a fresh stateless seed per step, and its batch."""
    name, kwargs, objective, dim, rows = spec
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(seed).standard_normal((rows, dim)), tf.float32)
    objective = objectives.get(objective)
    model = FlowModel(flows.build_flow(name, **kwargs), objective=objective)
    model.initialize_from_data(x)
    return wrapper_cost.hand_step(model, objective, keras.optimizers.Adam(0.0), seed), x


def profile(step, x, steps):
    """`{(network, direction, op class): [ms / step, thunks / step, dots, dot MFLOP]}`."""
    for _ in range(3):
        step(x).numpy()
    ops = hlo_ops(step.experimental_get_compiler_ir(x)(stage="optimized_hlo"))
    out = collections.defaultdict(lambda: [0.0, 0.0, 0, 0.0])
    for net, direction, cls, flops in ops.values():
        if cls == "dot":
            out[(net, direction, cls)][2] += 1
            out[(net, direction, cls)][3] += flops / 1e6
    logdir = tempfile.mkdtemp()
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        step(x).numpy()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    durations = collections.defaultdict(list)
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if name in ops:
                    durations[name].append(event.duration_ps / 1e9)
    # Per thunk its median over the steps (times its calls per step): robust to the
    # preemptions of a shared machine, which hit a few thunks of a few steps.
    for name, times in durations.items():
        calls = len(times) / steps
        out[ops[name][:3]][0] += float(np.median(times)) * calls
        out[ops[name][:3]][1] += calls
    return out


def wall_times(steps, rounds):
    """Median wall ms per step of each `(step, x)`, timed in interleaved rounds of 3 steps."""
    times = [[] for _ in steps]
    for _ in range(rounds):
        for i, (step, x) in enumerate(steps):
            for _ in range(3):
                start = time.perf_counter()
                step(x).numpy()
                times[i].append(time.perf_counter() - start)
    return [1e3 * float(np.median(t)) for t in times]


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="profiled steps per contender")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds of wall timing")
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    args = p.parse_args()
    command = "python benchmarks/wrapper_profile.py " + " ".join(sys.argv[1:])
    loads, detail, summary = [os.getloadavg()[0]], [], []
    contenders = {(pair, role): adam_step(spec, args.seed) for pair in args.pairs
                  for role, spec in zip(("wrapper", "base"), PAIRS[pair], strict=True)}
    for step, x in contenders.values():
        step(x).numpy()  # compile
    walls = dict(zip(contenders, wall_times(list(contenders.values()), args.rounds),
                     strict=True))
    loads.append(os.getloadavg()[0])
    for pair in args.pairs:
        totals = {}
        for role, spec in zip(("wrapper", "base"), PAIRS[pair], strict=True):
            out = profile(*contenders[(pair, role)], args.steps)
            loads.append(os.getloadavg()[0])
            total = sum(v[0] for v in out.values())
            totals[role] = (walls[(pair, role)], total, sum(v[3] for v in out.values()),
                            sum(v[2] for v in out.values()), sum(v[1] for v in out.values()))
            by_net = collections.defaultdict(lambda: [0.0, 0.0, 0, 0.0])
            for (net, direction, _), v in out.items():
                for i in range(4):
                    by_net[(net, direction)][i] += v[i]
            for (net, direction), (ms, thunks, dots, mflop) in sorted(
                    by_net.items(), key=lambda kv: -kv[1][0]):
                dot_ms = out.get((net, direction, "dot"), [0.0])[0]
                detail.append({"pair": pair, "role": role, "flow": spec[0], "network": net,
                               "direction": direction, "ms / step": ms, "share": ms / total,
                               "dot ms": dot_ms, "thunks / step": thunks, "dots": dots,
                               "dot MFLOP": mflop})
            print(detail[-len(by_net):], flush=True)
        (ww, wt, wf, wd, wn), (bw, bt, bf, bd, bn) = totals["wrapper"], totals["base"]
        summary.append({"pair": pair, "wall ms (wrapper / base)": f"{ww:.2f} / {bw:.2f}",
                        "wall ratio": ww / bw, "thunk ms (wrapper / base)": f"{wt:.2f} / {bt:.2f}",
                        "thunk-time ratio": wt / bt,
                        "dot MFLOP (wrapper / base)": f"{wf:.1f} / {bf:.1f}",
                        "FLOP ratio": wf / bf, "dots (wrapper / base)": f"{wd} / {bd}",
                        "thunks (wrapper / base)": f"{wn:.0f} / {bn:.0f}", "thunk ratio": wn / bn})
    load = f"load (1 min) {min(loads):.1f}-{max(loads):.1f}"
    notes = (f"TF profiler, {args.steps} jit Adam steps per contender (learning rate 0), "
             f"wall: median of {args.rounds} interleaved rounds of 3 unprofiled steps; per "
             "thunk the median over the steps, summed over both threads (so a step's total "
             f"can exceed its wall time), {load}. Only ratios and shares are comparable "
             "across runs.")
    common.write_results(
        os.path.join(args.out, "results", "wrapper_profile.md"),
        "Wrappers' training steps per network, direction and op class (XLA:CPU profile)",
        command, summary,
        ["pair", "wall ms (wrapper / base)", "wall ratio", "thunk ms (wrapper / base)",
         "thunk-time ratio", "dot MFLOP (wrapper / base)", "FLOP ratio", "dots (wrapper / base)",
         "thunks (wrapper / base)", "thunk ratio"], notes=notes)
    common.write_results(
        os.path.join(args.out, "results", "wrapper_profile_networks.md"),
        "Wrappers' training steps: time per network and direction (XLA:CPU profile)",
        command, detail,
        ["pair", "role", "flow", "network", "direction", "ms / step", "share", "dot ms",
         "thunks / step", "dots", "dot MFLOP"], notes=notes)


if __name__ == "__main__":
    main()
