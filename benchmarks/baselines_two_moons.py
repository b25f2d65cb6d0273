"""Baseline flows on two moons: `FlowModel.fit` vs TFP driven by a plain GradientTape loop.

For RealNVP, Glow-style, MAF and neural-spline flows from `tfp_flows.flows`,
trained by Keras 3 `model.fit` (with and without XLA), this prints test NLL,
trainable parameters and seconds per training step. Where TFP has the same
model (`tfb.RealNVP`, `tfb.MaskedAutoregressiveFlow`), the peer a user would
otherwise write runs side by side in the same process: the TFP bijector with
a conditioner of plain `tf.Variable`s (same widths, same soft-clamped
log-scale, zero-initialised output layer), trained by a `tf.function` step
with `tf.GradientTape` and a hand-written Adam, on the same batches. TFP's own
`tfb.AutoregressiveNetwork` / `real_nvp_default_template` are Keras 2 /
TF1-template objects, which this project does not use, hence the plain
variables. Glow (vector form) and the neural-spline coupling flow have no
ready-made TFP counterpart and are reported without a peer.

Seconds per step are the median over the training steps after the first
epoch (tracing and compilation excluded). The machine is shared; compare the
ratios measured in one run, not absolute seconds across runs.

    python benchmarks/baselines_two_moons.py        # full run (~10 min, idle 2-core machine)
    python benchmarks/baselines_two_moons.py --epochs 2 # a short run
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from benchmarks import common  # noqa: E402
from tfp_flows import plotting  # noqa: E402
from tfp_flows.datasets import load  # noqa: E402
from tfp_flows.evaluation import mean_of_batches  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate, fit  # noqa: E402

tfb = tfp.bijectors
tfd = tfp.distributions

FLOWS = ("real_nvp", "glow", "maf", "neural_spline")
PEERS = {"real_nvp": "tfb.RealNVP", "maf": "tfb.MaskedAutoregressiveFlow"}
LOG_SCALE_BOUND = 3.0  # the library's default soft clamp, reproduced in the peers


# -- Peers: TFP bijectors with plain tf.Variable conditioners ------------------------------


class _Dense(tf.Module):
    """`x @ (W * mask) + b` with Glorot-uniform W (zeros for output layers)."""

    def __init__(self, n_in, n_out, mask=None, zeros=False, seed=0, name=None):
        super().__init__(name=name)
        limit = np.sqrt(6.0 / (n_in + n_out))
        init = (np.zeros((n_in, n_out)) if zeros else
                np.random.default_rng(seed).uniform(-limit, limit, (n_in, n_out)))
        self.w = tf.Variable(init.astype(np.float32), name="w")
        self.b = tf.Variable(tf.zeros([n_out]), name="b")
        self.mask = None if mask is None else tf.constant(mask, tf.float32)

    def __call__(self, x):
        w = self.w if self.mask is None else self.w * self.mask
        return tf.matmul(x, w) + self.b


class _MLP(tf.Module):
    def __init__(self, n_in, n_out, hidden_units, masks=None, seed=0, name=None):
        super().__init__(name=name)
        sizes = [n_in, *hidden_units, n_out]
        masks = masks or [None] * (len(sizes) - 1)
        self.layers = [_Dense(a, b, m, zeros=(i == len(sizes) - 2), seed=seed + i)
                       for i, (a, b, m) in enumerate(zip(sizes[:-1], sizes[1:], masks,
                                                         strict=True))]

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = tf.nn.relu(layer(x))
        return self.layers[-1](x)


def _soft_clamp(log_scale):
    return LOG_SCALE_BOUND * tf.tanh(log_scale / LOG_SCALE_BOUND)


class _CouplingFn(tf.Module):
    """`shift_and_log_scale_fn` for `tfb.RealNVP`."""

    def __init__(self, num_masked, num_out, hidden_units, seed):
        super().__init__()
        self.net = _MLP(num_masked, 2 * num_out, hidden_units, seed=seed)

    def __call__(self, x, output_units):
        shift, log_scale = tf.split(self.net(x), 2, axis=-1)
        return shift, _soft_clamp(log_scale)


class _MADEFn(tf.Module):
    """`shift_and_log_scale_fn` for `tfb.MaskedAutoregressiveFlow` (Germain et al. masks)."""

    def __init__(self, event_size, hidden_units, seed):
        super().__init__()
        d = event_size
        degrees = [np.arange(1, d + 1)]
        for h in hidden_units:
            degrees.append(np.arange(h) % max(1, d - 1) + 1)
        masks = [(degrees[i + 1][None, :] >= degrees[i][:, None]).astype(np.float32)
                 for i in range(len(hidden_units))]
        out = (np.arange(1, d + 1)[None, :] > degrees[-1][:, None]).astype(np.float32)
        masks.append(np.concatenate([out, out], axis=1))  # shift block, log-scale block
        self.event_size = d
        self.net = _MLP(d, 2 * d, hidden_units, masks=masks, seed=seed)

    def __call__(self, x):
        shift, log_scale = tf.split(self.net(x), 2, axis=-1)
        return shift, _soft_clamp(log_scale)


def peer_flow(name, event_size, num_layers, hidden_units, seed=0):
    """The TFP-only flow a user would write for `name`: returns `(distribution, modules)`."""
    reverse = list(range(event_size))[::-1]
    bijectors, modules = [], []
    for i in range(num_layers):
        if i > 0 or name == "real_nvp":
            bijectors.append(tfb.Permute(reverse))
        if name == "real_nvp":
            fn = _CouplingFn(event_size // 2, event_size - event_size // 2, hidden_units,
                             seed + 10 * i)
            bijectors.append(tfb.RealNVP(num_masked=event_size // 2,
                                         shift_and_log_scale_fn=fn))
        else:
            fn = _MADEFn(event_size, hidden_units, seed + 10 * i)
            bijectors.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=fn))
        modules.append(fn)
    base = tfd.MultivariateNormalDiag(loc=tf.zeros([event_size]))
    return tfd.TransformedDistribution(base, tfb.Chain(bijectors)), modules


class _Adam:
    """Plain Adam on a list of `tf.Variable`s (what a custom loop without Keras needs)."""

    def __init__(self, variables, learning_rate, beta1=0.9, beta2=0.999, eps=1e-7):
        self.variables = variables
        self.lr, self.b1, self.b2, self.eps = learning_rate, beta1, beta2, eps
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.t = tf.Variable(0.0)

    def apply(self, grads):
        self.t.assign_add(1.0)
        lr = self.lr * tf.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for g, var, m, v in zip(grads, self.variables, self.m, self.v, strict=True):
            m.assign(self.b1 * m + (1 - self.b1) * g)
            v.assign(self.b2 * v + (1 - self.b2) * tf.square(g))
            var.assign_sub(lr * m / (tf.sqrt(v) + self.eps))


def train_peer(name, split, args, jit):
    dist, modules = peer_flow(name, split.dim, args.num_layers, args.hidden_units, args.seed)
    variables = [v for m in modules for v in m.trainable_variables]
    opt = _Adam(variables, args.learning_rate)

    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            # Fresh tensor: TFP caches inverse() by input tensor.
            loss = -tf.reduce_mean(dist.log_prob(tf.identity(x)))
        opt.apply(tape.gradient(loss, variables))
        return loss

    steps_per_epoch = int(np.ceil(len(split.train) / args.batch_size))
    times = []
    for epoch in range(args.epochs):
        data = tf.data.Dataset.from_tensor_slices(split.train).shuffle(
            len(split.train), seed=args.seed + epoch).batch(args.batch_size)
        iterator = iter(data)
        while True:
            # The batch fetch is timed too: Keras fetches inside its timed train_function.
            start = time.perf_counter()
            x = next(iterator, None)
            if x is None:
                break
            step(x).numpy()
            if epoch > 0 or args.epochs == 1:
                times.append(time.perf_counter() - start)
    # Evaluation is not timed: no XLA, so new batch shapes do not recompile.
    log_prob = tf.function(lambda x: dist.log_prob(x), reduce_retracing=True)
    return {"nll": mean_of_batches(lambda x: -log_prob(x), split.test),
            "params": count_parameters(variables),
            "sec_per_step": float(np.median(times)), "steps": args.epochs * steps_per_epoch,
            "log_prob": lambda p: log_prob(tf.constant(p)).numpy()}


# -- Ours: FlowModel.fit ------------------------------------------------------------------


class _StepTimer(keras.callbacks.Callback):
    """Wall time of every training batch after the first epoch (tracing excluded)."""

    def __init__(self, skip_first_epoch):
        super().__init__()
        self.skip = skip_first_epoch
        self.times = []
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch > 0 or not self.skip:
            self.times.append(time.perf_counter() - self._start)


def train_ours(name, split, args, jit):
    # The pipeline seeds Keras first (weights, fit's shuffling), initialises from the first
    # training rows, compiles and fits.
    kwargs = {"num_layers": args.num_layers, "hidden_units": tuple(args.hidden_units)}
    timer = _StepTimer(skip_first_epoch=args.epochs > 1)
    result = fit(name, split.train, flow_kwargs={"event_size": split.dim, **kwargs},
                 seed=args.seed, learning_rate=args.learning_rate, jit_compile=jit,
                 batch_size=args.batch_size, epochs=args.epochs, callbacks=[timer])
    model = result.model
    log_prob = tf.function(lambda x: model.log_prob(x), reduce_retracing=True)
    return {"nll": evaluate(model, split.test).nll, "params": count_parameters(model),
            "sec_per_step": float(np.median(timer.times)), "steps": result.steps,
            "final_train_loss": result.history["loss"][-1],
            "log_prob": lambda p: log_prob(tf.constant(p)).numpy()}


# -- Driver -------------------------------------------------------------------------------


def parse_args(argv):
    p = common.base_parser(__doc__.splitlines()[0])
    p.set_defaults(out="docs")
    p.add_argument("--flows", nargs="+", default=list(FLOWS), choices=FLOWS)
    p.add_argument("--num-samples", type=int, default=2048, help="training points")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--hidden-units", type=int, nargs="+", default=[64, 64])
    p.add_argument("--modes", nargs="+", default=["jit", "nojit"], choices=["jit", "nojit"])
    p.add_argument("--no-peers", action="store_true", help="skip the TFP peers")
    args = p.parse_args(argv)
    for name in ("num_samples", "epochs", "batch_size", "num_layers"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer; "
                    f"got {getattr(args, name)}")
    if args.learning_rate <= 0:
        p.error(f"--learning-rate must be positive; got {args.learning_rate}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    # The machine line (a matmul timing) is printed once, with the results (write_results).
    split = load("moons", num_samples=args.num_samples, seed=args.seed)
    rows, densities = [], []
    for name in args.flows:
        for mode in args.modes:
            jit = mode == "jit"
            ours = train_ours(name, split, args, jit)
            row = {"flow": name, "xla": jit, "test NLL": ours["nll"], "params": ours["params"],
                   "s/step": ours["sec_per_step"], "steps": ours["steps"]}
            if name in PEERS and not args.no_peers:
                peer = train_peer(name, split, args, jit)
                row.update({"peer": PEERS[name], "peer test NLL": peer["nll"],
                            "peer params": peer["params"], "peer s/step": peer["sec_per_step"],
                            "ours/peer time": ours["sec_per_step"] / peer["sec_per_step"]})
                if jit or "jit" not in args.modes:
                    densities.append((f"{PEERS[name]} (peer)", peer["log_prob"]))
            if jit or "jit" not in args.modes:
                densities.append((f"{name} (FlowModel)", ours["log_prob"]))
            print({k: v for k, v in row.items()}, flush=True)
            rows.append(row)

    img = os.path.join(args.out, "img", "baselines_moons.png")
    bounds = plotting.data_bounds(split.train)
    cols = 4
    nrows = int(np.ceil((len(densities) + 1) / cols))
    fig, axes = plotting.figure_grid(nrows, cols)
    axes = axes.ravel()
    plotting.plot_samples(axes[0], split.train, bounds, title="two moons (train)", color="k")
    for ax, (title, fn) in zip(axes[1:], densities, strict=False):
        plotting.plot_density(ax, fn, bounds, num_points=80, title=title)
    for ax in axes[len(densities) + 1:]:
        ax.axis("off")
    fig.tight_layout()
    plotting.save_figure(fig, img)

    command = " ".join(["python benchmarks/baselines_two_moons.py", *argv])
    columns = ["flow", "xla", "test NLL", "params", "s/step", "steps", "peer", "peer test NLL",
               "peer params", "peer s/step", "ours/peer time"]
    notes = (
        f"Two moons, {len(split.train)} training / {len(split.test)} test points, batch "
        f"{args.batch_size}, {args.epochs} epochs, Adam lr {args.learning_rate}, "
        f"{args.num_layers} layers of hidden units {tuple(args.hidden_units)}. "
        "`s/step`: median seconds per training step after the first epoch (ours: "
        "`FlowModel.fit`, per batch incl. Keras callback overhead; peer: the TFP bijector with "
        "plain `tf.Variable` conditioners and a `tf.function` GradientTape step with a "
        "hand-written Adam). `ours/peer time` < 1 means FlowModel is faster. Glow (vector form) "
        "and the neural-spline coupling flow have no ready-made TFP equivalent.\n\n"
        f"![densities](img/{os.path.basename(img)})\n")
    common.write_results(os.path.join(args.out, "baselines.md"),
                         "Baseline flows on two moons", command, rows, columns, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
