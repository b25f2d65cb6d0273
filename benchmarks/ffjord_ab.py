"""FFJORD training step: another revision's tfp_flows against this checkout's, in one process.

The reference revision's `tfp_flows` (`git archive` of `--rev` in the repository
`--ref`) is imported as `tfp_flows_ref` (`benchmarks.common.import_revision`),
beside this checkout's `tfp_flows`. Both build `benchmarks/ffjord_speed.py`'s step
(two moons, batch 512, 64x64 tanh, dopri5 rtol = atol = 1e-5, adjoint gradients,
`jit_compile=True`) at the same weights (after `--pretrain` of this checkout's
Hutchinson steps) and batch, and are timed in interleaved rounds of `--steps` steps
(alternating which goes first); `--tfb` adds `tfb.FFJORD` (a `tf.function`) to the
rounds. Printed per trace: the first-step losses, the gradients' relative difference
in global norm, median ms / step, the median and quartiles of the per-round ratios,
and the load.

    python benchmarks/ffjord_ab.py --ref /work/main --rounds 12 --tfb
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402,I001  (sets TF env vars before TF loads)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import tfp_flows  # noqa: E402
from benchmarks import ffjord_speed  # noqa: E402

tfd = tfp.distributions


def make_steps(pkg, trace, weights):
    """`(train step, loss-and-gradients)` of `pkg`'s FFJORD at `weights`, both jit-compiled."""
    keras.utils.set_random_seed(0)
    net = pkg.nets.ODENet(2, (64, 64), "tanh")
    net.set_weights(weights)
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)),
                                       pkg.bijectors.FFJORD(net, trace=trace, rtol=1e-5,
                                                            atol=1e-5))
    variables = [v.value for v in net.trainable_weights]

    def loss_and_grads(x, seed):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x, bijector_kwargs={"seed": seed}))
        return loss, tape.gradient(loss, variables)

    step = ffjord_speed.train_step_fn(dist, net, keras.optimizers.Adam(0.0), True, True)
    return step, tf.function(loss_and_grads, jit_compile=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", required=True, help="git repository of the reference revision")
    p.add_argument("--rev", default="HEAD", help="the reference revision (default HEAD)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--pretrain", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--traces", nargs="+", default=["hutchinson", "exact"])
    p.add_argument("--tfb", action="store_true", help="also time tfb.FFJORD in the rounds")
    args = p.parse_args()
    ref = common.import_revision(args.rev, args.ref)
    print("this checkout:", tfp_flows.__file__, "reference:", ref.__file__, flush=True)
    split = tfp_flows.datasets.load("moons", num_samples=20000, seed=args.seed)
    train = np.asarray(split.train, np.float32)
    weights = ffjord_speed.pretrained_weights(args, train)
    rng = np.random.default_rng(args.seed)
    batch = tf.constant(train[rng.choice(len(train), 512, replace=False)])
    seed = tf.constant([1, 2])
    for trace in args.traces:
        steps, values = {}, {}
        for name, pkg in (("reference", ref), ("this", tfp_flows)):
            step, loss_and_grads = make_steps(pkg, trace, weights)
            start = time.perf_counter()
            step(batch, seed).numpy()
            first = time.perf_counter() - start
            loss, grads = loss_and_grads(batch, seed)
            steps[name], values[name] = step, (float(loss), [g.numpy() for g in grads], first)
        if args.tfb:
            net = ffjord_speed.make_net(0, weights)
            steps["tfb"] = ffjord_speed.train_step_fn(ffjord_speed.theirs(net, trace), net,
                                                      keras.optimizers.Adam(0.0), False, False)
            steps["tfb"](batch, seed).numpy()
        (loss_a, grads_a, first_a), (loss_b, grads_b, first_b) = values.values()
        diff = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(grads_a, grads_b, strict=True)))
        rel = diff / np.sqrt(sum(np.sum(a ** 2) for a in grads_a))
        print(f"{trace}: loss reference {loss_a:.7f} this {loss_b:.7f}; gradients' relative "
              f"difference {rel:.2e}; first call {first_a:.1f} / {first_b:.1f} s", flush=True)
        times = {name: [] for name in steps}
        for r in range(args.rounds):
            for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                start = time.perf_counter()
                for _ in range(args.steps):
                    steps[name](batch, seed).numpy()
                times[name].append((time.perf_counter() - start) / args.steps)
        ratios = np.array(times["reference"]) / np.array(times["this"])
        ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
        print(f"{trace}: reference {ms['reference']:.2f} ms, this {ms['this']:.2f} ms; "
              f"reference / this: median per-round ratio {np.median(ratios):.3f} "
              f"(quartiles {np.quantile(ratios, 0.25):.3f}-{np.quantile(ratios, 0.75):.3f}), "
              f"ratio of medians {ms['reference'] / ms['this']:.3f}; load {os.getloadavg()}",
              flush=True)
        if args.tfb:
            print(f"{trace}: tfb.FFJORD {ms['tfb']:.2f} ms: tfb / reference "
                  f"{ms['tfb'] / ms['reference']:.2f}x, tfb / this {ms['tfb'] / ms['this']:.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
