"""What a compiled step pays per variable, apart from the variables' size.

A `tf.function(jit_compile=True)` updates N variables holding 24,000 floats in
all (`v += 1e-6 x v`, the shape of an optimizer update), for N = 1 to 300; the
calls are timed in interleaved rounds in one process. The time that grows with N
at a fixed number of floats is the per-variable cost of XLA's launch (reading
and writing back every captured resource variable), which is why the library's
networks keep their weights in one packed variable (`nets.mlp.PackedWeights`).

    python benchmarks/variable_cost.py --out docs/results
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402

TOTAL = 24_000
COUNTS = (1, 5, 10, 30, 100, 300)


def updater(count):
    variables = [tf.Variable(tf.ones([TOTAL // count])) for _ in range(count)]

    @tf.function(jit_compile=True)
    def update(scale):
        for v in variables:
            v.assign_add(scale * v)
        return scale

    return update


def main():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args()
    fns = {n: updater(n) for n in COUNTS}
    scale = tf.constant(1e-6)
    for fn in fns.values():
        for _ in range(10):
            fn(scale).numpy()
    times = {n: [] for n in fns}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for n, fn in fns.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                fn(scale).numpy()
            times[n].append((time.perf_counter() - start) / args.calls)
    load.append(os.getloadavg()[0])
    one = statistics.median(times[1])
    rows = [{"variables": n, "us / call": 1e6 * statistics.median(v),
             "q1-q3": f"{1e6 * np.quantile(v, 0.25):.0f}-{1e6 * np.quantile(v, 0.75):.0f}",
             "us per extra variable": (1e6 * (statistics.median(v) - one) / (n - 1)
                                       if n > 1 else float("nan")),
             "load": f"{min(load):.1f}-{max(load):.1f}"} for n, v in times.items()]
    common.write_results(
        os.path.join(args.out, "variable_cost.md"), "Per-variable cost of a compiled update",
        "python benchmarks/variable_cost.py " + " ".join(sys.argv[1:]), rows, list(rows[0]),
        notes=f"{TOTAL} float32 values in all, split over N variables; median of "
              f"{args.rounds} interleaved rounds of {args.calls} calls.")


if __name__ == "__main__":
    main()
