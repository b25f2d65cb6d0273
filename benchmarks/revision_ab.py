"""`FlowModel.fit` step time of this checkout against an earlier revision, in one process.

The package at `--base` (a git revision) is imported as `tfp_flows_base` beside this
checkout's (`benchmarks.common.import_revision`); both build the same flow from the
same seed, and their training steps (`FlowModel.fit` on one fixed batch of 512,
Adam, `jit_compile=True`) are timed in interleaved rounds in the same process, so
the machine's load falls on both alike. Printed per flow: median ms per step
(q1-q3), this / base, the number of trainable variables of each, the first-step
losses (which must agree: the same model), and the load average.

    python benchmarks/revision_ab.py --base 3d3d275 --cases real_nvp/2 maf/2 neural_spline/64
"""

import importlib
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.peers import _fit_stepper  # noqa: E402

EXTRA = {"neural_spline": {"num_bins": 8, "bound": 4.0}}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stepper(package, flow, dim, x, values):
    """A fit stepper for `flow` from `package`, its weights set from `values` (one flat
    vector, laid out in the order of the trainable weights: the same parameters whether
    a revision keeps one variable per tensor or packs them)."""
    importlib.import_module(f"{package.__name__}.flows")
    importlib.import_module(f"{package.__name__}.keras")
    keras.utils.set_random_seed(0)
    dist = package.flows.build_flow(flow, event_size=dim, num_layers=5, hidden_units=(64, 64),
                                    **EXTRA.get(flow, {}))
    model = package.keras.FlowModel(dist)
    model.compile(keras.optimizers.Adam(0.0), jit_compile=True)
    model.distribution.log_prob(x[:1])  # builds the networks
    weights = model.trainable_weights
    if values is None:  # a generic point (non-zero output layers), not the identity
        flat = np.concatenate([np.ravel(w.numpy()) for w in weights])
        values = flat + 0.05 * np.random.default_rng(1).standard_normal(flat.shape)
    offset = 0
    for w in weights:
        size = int(np.prod(w.shape))
        w.assign(values[offset:offset + size].reshape(w.shape).astype(w.dtype))
        offset += size
    if offset != values.size:
        raise SystemExit(f"{flow}: the two revisions' parameter counts differ")
    run = _fit_stepper(model, x)
    run(2)
    loss = float(-tf.reduce_mean(dist.log_prob(x)))
    return run, len(weights), loss, values


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--name", default="revision_ab", help="results file name (in --out)")
    p.add_argument("--base", required=True, help="git revision to compare against")
    p.add_argument("--cases", nargs="+", default=["real_nvp/2", "maf/2", "neural_spline/2"],
                   help="flow/dimension pairs")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    import tfp_flows
    base = common.import_revision(args.base, name="tfp_flows_base")
    print(common.machine_line())
    rows = []
    for case in args.cases:
        flow, dim = case.split("/")
        dim = int(dim)
        x = tf.constant(np.random.default_rng(0).standard_normal((512, dim)).astype("float32"))
        runs = {"base": stepper(base, flow, dim, x, None)}
        runs["this"] = stepper(tfp_flows, flow, dim, x, runs["base"][3])
        times = {name: [] for name in runs}
        load = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            for name, (run, *_) in runs.items():
                times[name].append(statistics.median(run(args.steps)))
        load.append(os.getloadavg()[0])
        ms = {n: 1e3 * np.quantile(v, [0.25, 0.5, 0.75]) for n, v in times.items()}
        rows.append({
            "case": case,
            "base ms": f"{ms['base'][1]:.3f} ({ms['base'][0]:.2f}-{ms['base'][2]:.2f})",
            "this ms": f"{ms['this'][1]:.3f} ({ms['this'][0]:.2f}-{ms['this'][2]:.2f})",
            "this / base": f"{ms['this'][1] / ms['base'][1]:.3f}",
            "variables (base / this)": f"{runs['base'][1]} / {runs['this'][1]}",
            "loss (base / this)": f"{runs['base'][2]:.6f} / {runs['this'][2]:.6f}",
            "load": f"{min(load):.1f}-{max(load):.1f}"})
        print(rows[-1], flush=True)
    common.write_results(
        os.path.join(args.out, f"{args.name}.md"),
        f"FlowModel.fit step: this checkout / {args.base}",
        "python benchmarks/revision_ab.py " + " ".join(sys.argv[1:]), rows, list(rows[0]),
        notes=f"Median of {args.rounds} interleaved rounds of {args.steps} steps (per-round "
              "medians), one process, batch 512, 5 layers, hidden (64, 64), Adam, "
              "jit_compile=True; the same parameters in both (losses must agree).")


if __name__ == "__main__":
    main()
