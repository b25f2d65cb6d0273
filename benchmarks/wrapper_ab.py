"""The wrappers' training steps at two versions of the library, side by side in one process.

The package at a git revision (`--ref`, default `main`) is extracted with `git archive`
into a temporary directory and imported under another name (`tfp_flows_ref`, its
imports rewritten), beside the working tree's `tfp_flows`. For each contender of
`benchmarks/wrapper_cost.py`'s pairs (wrapper and base) both versions are built with
the same initial weights, perturbed the same way, and:

* their loss and gradients at a fixed seed are compared (max relative difference);
* a hand-written jit Adam step (learning rate 0, a fresh seed per step) is timed in
  `--rounds` paired rounds of `--steps` steps, the order of the two alternated per
  round; a pair's "new / ref" is the median over rounds of the ratio of the round's
  two medians (quartiles given). The bases' ratio is the noise floor when their code
  did not change. The load average is printed.

    python benchmarks/wrapper_ab.py --pairs lgf funnel_nsf funnel_glow --rounds 40
"""

import argparse
import importlib
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common, wrapper_cost  # noqa: E402
from benchmarks.wrapper_cost import PAIRS  # noqa: E402

PACKAGES = ("tfp_flows_ref", "tfp_flows")


def build(package, spec, seed):
    """`(loss and gradients fn, Adam step fn, batch)` of `spec` with `package`'s code."""
    flows = importlib.import_module(package + ".flows")
    library_keras = importlib.import_module(package + ".keras")
    name, kwargs, objective, dim, rows = spec
    keras.utils.set_random_seed(0)
    x = tf.constant(np.random.default_rng(seed).standard_normal((rows, dim)), tf.float32)
    objective = library_keras.objectives.get(objective)
    model = library_keras.FlowModel(flows.build_flow(name, **kwargs), objective=objective)
    model.initialize_from_data(x)
    # The distribution's variables, in tf.Module order (by attribute, the same in both
    # versions; Keras' order follows layer names, which differ between the two builds).
    variables = model.distribution.trainable_variables
    rng = np.random.default_rng(1)  # zero-initialised output layers made non-trivial
    for v in variables:
        v.assign(v.numpy() + 0.1 * rng.standard_normal(v.shape).astype(np.float32))
    fixed_seed = tf.constant([3, 4])

    @tf.function(jit_compile=True)
    def grad(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(objective(model.distribution, x, seed=fixed_seed,
                                             training=True))
        return loss, tape.gradient(loss, variables)

    return grad, wrapper_cost.hand_step(model, objective, keras.optimizers.Adam(0.0), seed), x


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", default="main")
    p.add_argument("--pairs", nargs="+", default=["lgf", "funnel_nsf", "funnel_glow"],
                   choices=list(PAIRS))
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    common.import_revision(args.ref)
    print("load", os.getloadavg(), flush=True)
    steps = {}
    for pair in args.pairs:
        for role, spec in zip(("wrapper", "base"), PAIRS[pair], strict=True):
            values = {}
            for package in PACKAGES:
                grad, step, x = build(package, spec, args.seed)
                loss, grads = grad(x)
                values[package] = (float(loss), [g.numpy() for g in grads])
                step(x).numpy()
                steps[(pair, role, package)] = (step, x)
            (ref_loss, ref_grads), (new_loss, new_grads) = values[PACKAGES[0]], values[PACKAGES[1]]
            rel = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-30))
                      for a, b in zip(ref_grads, new_grads, strict=True))
            print(f"{pair} {role} ({spec[0]}): loss ref {ref_loss:.7g} new {new_loss:.7g}, "
                  f"max relative gradient difference {rel:.3g}", flush=True)
    ratios, loads = {}, []
    for r in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for pair in args.pairs:
            for role in ("wrapper", "base"):
                medians = {}
                for package in (PACKAGES if r % 2 == 0 else PACKAGES[::-1]):
                    step, x = steps[(pair, role, package)]
                    times = []
                    for _ in range(args.steps):
                        start = time.perf_counter()
                        step(x).numpy()
                        times.append(time.perf_counter() - start)
                    medians[package] = np.median(times)
                ratios.setdefault((pair, role), []).append(medians["tfp_flows"]
                                                           / medians["tfp_flows_ref"])
    print(f"load (1 min) over the rounds {min(loads):.1f}-{max(loads):.1f}")
    for (pair, role), values in ratios.items():
        q1, q2, q3 = np.percentile(values, [25, 50, 75])
        print(f"{pair:12s} {role:8s} new / {args.ref}: {q2:.3f} (quartiles {q1:.3f}-{q3:.3f})")


if __name__ == "__main__":
    main()
