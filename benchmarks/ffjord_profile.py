"""Where our FFJORD training step's time goes: NFE per solve and XLA:CPU time per HLO op.

At `benchmarks/ffjord_speed.py`'s net and batch (two moons, batch 512, 64x64 tanh,
dopri5 rtol = atol = 1e-5, adjoint gradients) and the weights after `--pretrain`
of our Hutchinson steps, for each trace:

* function evaluations of the density solve and of the adjoint's backward solve,
  ours and `tfb.FFJORD`'s (counted by wrapping the augmented dynamics, in a
  `tf.function` without XLA; the same solves as under XLA);
* the jit-compiled step under the TF profiler: the time of every XLA:CPU thunk,
  summed by kind (a dot by its operand shapes and contracting dimensions, a
  fusion by its output shape), per step.

    python benchmarks/ffjord_profile.py --out docs
"""

import collections
import glob
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402,I001  (sets TF env vars before TF loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from benchmarks import ffjord_speed  # noqa: E402
from tfp_flows import datasets  # noqa: E402
from tfp_flows.ode import trace as trace_lib  # noqa: E402


def _counted(counter, fn):
    def wrapped(*args):
        counter.assign_add(1)
        return fn(*args)
    return wrapped


def count_nfe(dist, variables, batch, seed, counter, pass_seed):
    kwargs = {"bijector_kwargs": {"seed": seed}} if pass_seed else {}

    @tf.function
    def forward(x):
        return dist.log_prob(x, **kwargs)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x, **kwargs))
        return tape.gradient(loss, variables)

    counter.assign(0)
    forward(batch)
    density = int(counter.numpy())
    counter.assign(0)
    step(batch)
    return density, int(counter.numpy()) - density


def nfe_rows(trace, weights, batch, seed):
    counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    original = trace_lib.augmented_dynamics
    trace_lib.augmented_dynamics = lambda *a, **k: _counted(counter, original(*a, **k))
    try:
        net = ffjord_speed.make_net(0, weights)
        ours = count_nfe(ffjord_speed.ours(net, trace), [w.value for w in net.trainable_weights],
                         batch, seed, counter, True)
    finally:
        trace_lib.augmented_dynamics = original
    net = ffjord_speed.make_net(0, weights)
    field = net.call
    net.call = _counted(counter, field)  # tfb.FFJORD calls the field once per evaluation
    theirs = count_nfe(ffjord_speed.theirs(net, trace), [w.value for w in net.trainable_weights],
                       batch, seed, counter, False)
    return [{"trace": trace, "implementation": impl, "NFE density solve": a,
             "NFE adjoint solve": b} for impl, (a, b) in (("tfp_flows", ours),
                                                          ("tfb.FFJORD", theirs))]


def op_kinds(hlo):
    """HLO instruction name -> kind (dots by operand shapes and contracting dims)."""
    shapes = dict(re.findall(r"%([\w.\-]+) = (\S+?)\{", hlo))
    shapes.update(re.findall(r"%([\w.\-]+): (\S+?)\{", hlo))
    kinds = {}
    for name, shape, op, rest in re.findall(r"%([\w.\-]+) = (\S+?)(?:\{\S*\})? (\w[\w\-]*)\((.*)",
                                            hlo):
        kind = f"{op} {shape}"
        dims = re.match(r"%([\w.\-]+), %([\w.\-]+)\), lhs_contracting_dims=\{(\d)\}, "
                        r"rhs_contracting_dims=\{(\d)\}", rest)
        if op == "dot" and dims:
            lhs, rhs, cl, cr = dims.groups()
            kind += f" = {shapes.get(lhs, '?')} x {shapes.get(rhs, '?')}, contracting ({cl}, {cr})"
        kinds[name] = kind
    return kinds


def profile_rows(trace, weights, batch, seed, steps):
    net = ffjord_speed.make_net(0, weights)
    dist = ffjord_speed.ours(net, trace)
    variables = [w.value for w in net.trainable_weights]

    def step(x, s):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x, bijector_kwargs={"seed": s}))
        return loss, tape.gradient(loss, variables)

    fn = tf.function(step, jit_compile=True)
    for _ in range(3):
        fn(batch, seed)[0].numpy()
    kinds = op_kinds(fn.experimental_get_compiler_ir(batch, seed)(stage="optimized_hlo"))
    logdir = tempfile.mkdtemp()
    tf.profiler.experimental.start(logdir)
    for _ in range(steps):
        fn(batch, seed)[0].numpy()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    total, calls = collections.defaultdict(float), collections.defaultdict(int)
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                kind = kinds.get(names.get(event.metadata_id, ""))
                if line.name != "python" and kind and not kind.startswith("while"):
                    total[kind] += event.duration_ps / 1e9 / steps
                    calls[kind] += 1
    all_ms = sum(total.values())
    return [{"trace": trace, "op": kind, "ms / step": ms, "share": ms / all_ms,
             "calls / step": calls[kind] / steps, "us / call": 1e3 * ms * steps / calls[kind]}
            for kind, ms in sorted(total.items(), key=lambda kv: -kv[1]) if ms / all_ms > 0.005]


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--pretrain", type=int, default=300)
    p.add_argument("--steps", type=int, default=5, help="profiled steps per trace")
    args = p.parse_args()
    split = datasets.load("moons", num_samples=20000, seed=args.seed)
    train = np.asarray(split.train, np.float32)
    weights = ffjord_speed.pretrained_weights(args, train)
    rng = np.random.default_rng(args.seed)
    batch = tf.constant(train[rng.choice(len(train), 512, replace=False)])
    seed = tf.constant([1, 2])
    nfe, ops = [], []
    for trace in ("exact", "hutchinson"):
        nfe += nfe_rows(trace, weights, batch, seed)
        ops += profile_rows(trace, weights, batch, seed, args.steps)
        print(nfe[-2:], ops[:5], flush=True)
    command = "python benchmarks/ffjord_profile.py " + " ".join(sys.argv[1:])
    load = "load (1, 5, 15 min) {:.1f}, {:.1f}, {:.1f}".format(*os.getloadavg())
    path = os.path.join(args.out, "results", "ffjord_profile_nfe.md")
    common.write_results(path, "FFJORD function evaluations per training step", command, nfe,
                         ["trace", "implementation", "NFE density solve", "NFE adjoint solve"],
                         notes=f"Weights after {args.pretrain} Hutchinson steps. {load}.")
    common.write_results(
        os.path.join(args.out, "results", "ffjord_profile_ops.md"),
        "XLA:CPU time per HLO op kind in our FFJORD training step", command, ops,
        ["trace", "op", "ms / step", "share", "calls / step", "us / call"],
        notes=f"TF profiler, {args.steps} jit-compiled steps per trace, thunk times summed over "
              f"both threads; kinds below 0.5% of the step left out. {load} (the absolute "
              "times scale with the load; the shares less so).")


if __name__ == "__main__":
    main()
