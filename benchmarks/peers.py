"""tfp_flows vs flowjax and zuko: seconds per training step of the same flows, side by side.

One invocation; each framework runs in its own worker process (`--worker NAME`,
spoken to over a pipe), so no framework's threads, allocator or compilation
caches touch another's. For every case (flow x data set) the parent has each
worker build its model and compile one step on the same fixed batch (512 rows)
one worker at a time (the "first call": trace + compile + one step), then runs
`--rounds` interleaved rounds: in each round every contender in turn runs
`--steps` training steps while the others idle, so drifting load from other
processes on the machine hits all contenders alike. Reported: median
seconds per step with the quartiles over rounds, first-call seconds,
trainable parameter counts, the ratio to the fastest peer, the load average
and the machine's float32 matmul rate. With `--budget S` every contender then
trains for S wall seconds (first call included) on minibatches of the
training split and reports its test NLL.

Models (5 layers, hidden (64, 64) ReLU, Adam 1e-3, standard normal base):

* MAF: `flows.maf` / flowjax `masked_autoregressive_flow` / zuko `MAF`;
* RealNVP: `flows.real_nvp` / flowjax `coupling_flow` (affine) / zuko `RealNVP`;
* NSF coupling, 8 bins on [-4, 4]: `flows.neural_spline` / flowjax `coupling_flow`
  with `RationalQuadraticSpline(knots=7, interval=4)` (8 bins) / zuko `RealNVP`
  with `MonotonicRQSTransform(bound=4)`;
* Ferumal (2 blocks = 4 kernel couplings, 32 inducing points) vs RealNVP with 4
  couplings: tfp_flows only (no peer implements Ferumal flows);
* FFJORD (two moons, concat-squash field 64x64 tanh, dopri5 rtol = atol = 1e-5,
  adjoint gradients; exact and Hutchinson trace): ours (`jit_compile=True`) and
  TFP's `tfb.FFJORD` (a `tf.function`) in the TF worker with
  `benchmarks/ffjord_speed.py`'s steps, against torchdiffeq (`odeint_adjoint`,
  eager PyTorch) with the same field and weights, all at the weights after
  `--ffjord-pretrain` of our Hutchinson steps.

tfp_flows is timed twice: `FlowModel.fit` (`jit_compile=True`; per-step time
between Keras' batch ends) and a hand-written `tf.function(jit_compile=True)`
step on the same distribution (`--hand-step`; `benchmarks/step_profile.py` compares the
two in one process) and `FlowModel.fit` with `steps_per_execution` (MAF and RealNVP);
`--floor` adds `benchmarks/floor.py`'s pure-TF step (no TFP, no Keras) at the same
weights. zuko is timed with `torch.compile` on the loss (backward through
AOTAutograd, optimiser eager), and in eager mode if compiling fails. A peer that
is not installed is skipped with a message (`pip install -e .[peers]`).

    python benchmarks/peers.py --out docs --rounds 15 --steps 5 --floor --hand-step
"""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BATCH = 512
LAYERS = 5
HIDDEN = (64, 64)
LEARNING_RATE = 1e-3
WORKERS = ("tfp_flows", "flowjax", "zuko", "torchdiffeq")
# (flow, data set); Ferumal and its equal-depth RealNVP are tfp_flows only.
CASES = (
    ("maf", "moons"), ("real_nvp", "moons"), ("nsf", "moons"),
    ("maf", "digits"), ("real_nvp", "digits"), ("nsf", "digits"),
    ("ferumal", "moons"), ("real_nvp_4", "moons"),
    ("ferumal", "digits"), ("real_nvp_4", "digits"),
    ("ffjord_exact", "moons"), ("ffjord_hutchinson", "moons"),
)
# Who runs which case: Ferumal and its equal-depth RealNVP are tfp_flows only; FFJORD
# (tfp_flows and tfb.FFJORD in the TF worker) against torchdiffeq.
CASE_WORKERS = {"ferumal": ("tfp_flows",), "real_nvp_4": ("tfp_flows",),
                "ffjord_exact": ("tfp_flows", "torchdiffeq"),
                "ffjord_hutchinson": ("tfp_flows", "torchdiffeq")}
DISCRETE_WORKERS = ("tfp_flows", "flowjax", "zuko")
SPE = 10  # with --hand-step: FlowModel.fit also with steps_per_execution = SPE
FFJORD_PRETRAIN = 300  # default: FFJORD is timed at the weights after this many steps
FLOOR_FLOWS = ("maf", "real_nvp")  # benchmarks/floor.py: hand-written pure-TF steps


# --------------------------------------------------------------------------- workers

class Worker:
    """Base of the framework workers: `setup(case)` -> contenders, each with `step()`,
    `params`, `first_call`; `train(budget)` -> test NLL."""

    def __init__(self, data_file):
        import numpy as np
        data = np.load(data_file)
        self.data = {key: data[key] for key in data.files}
        self.contenders = {}

    def arrays(self, dataset):
        return (self.data[f"{dataset}_train"], self.data[f"{dataset}_test"],
                self.data[f"{dataset}_batch"])


class TFPWorker(Worker):
    name = "tfp_flows"

    def __init__(self, data_file):
        super().__init__(data_file)
        self.hand_step = os.environ.get("PEERS_HAND_STEP", "0") == "1"
        self.floor = os.environ.get("PEERS_FLOOR", "0") == "1"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from benchmarks import common  # noqa: F401  (TF env vars)

    def build(self, flow, dim):
        from tfp_flows import flows
        kwargs = {"event_size": dim}
        if flow == "ferumal":
            return flows.build_flow("ferumal", num_blocks=2, **kwargs)
        layers = 4 if flow == "real_nvp_4" else LAYERS
        name = {"nsf": "neural_spline", "real_nvp_4": "real_nvp"}.get(flow, flow)
        extra = {"num_bins": 8, "bound": 4.0} if flow == "nsf" else {}
        return flows.build_flow(name, num_layers=layers, hidden_units=HIDDEN, **kwargs, **extra)

    def setup(self, flow, dataset):
        import keras
        import tensorflow as tf

        from tfp_flows.keras import FlowModel, train
        if flow.startswith("ffjord"):
            return self.setup_ffjord(flow.split("_", 1)[1], dataset)
        train_x, _, batch = self.arrays(dataset)
        batch = tf.constant(batch)
        out = {}
        hand = self.hand_step and flow in FLOOR_FLOWS  # NSF, Ferumal: fit only (compile time)
        for mode in ("fit", "step", f"fit spe {SPE}") if hand else ("fit",):
            keras.utils.set_random_seed(0)
            model = FlowModel(self.build(flow, batch.shape[-1]))
            model.initialize_from_data(train_x[:1024])
            optimizer = keras.optimizers.Adam(LEARNING_RATE)
            start = time.perf_counter()
            if mode.startswith("fit"):
                spe = SPE if mode != "fit" else 1
                model.compile(optimizer, jit_compile=True, steps_per_execution=spe)
                step = _fit_stepper(model, batch, spe)
                step(1)
            else:
                step = _hand_stepper(model.distribution, optimizer, batch)
                step(1)
            first = time.perf_counter() - start
            label = f"tfp_flows {mode}"
            self.contenders[label] = {"step": step, "model": model, "optimizer": optimizer}
            out[label] = {"first call (s)": first, "params": train.count_parameters(model)}
        if self.floor and flow in FLOOR_FLOWS:
            from benchmarks import floor
            keras.utils.set_random_seed(0)
            model = FlowModel(self.build(flow, batch.shape[-1]))
            model.initialize_from_data(train_x[:1024])
            step, loss = floor.build_floor(model.distribution, LEARNING_RATE)
            floor.check_same_loss(model.distribution, loss, batch)  # the same model
            start = time.perf_counter()
            step(batch).numpy()
            first = time.perf_counter() - start
            self.contenders["tfp_flows floor"] = {
                "step": timed_steps(lambda x: step(x).numpy(), batch)}
            out["tfp_flows floor"] = {"first call (s)": first,
                                      "params": train.count_parameters(model)}
        return out

    def setup_ffjord(self, trace, dataset):
        """Our FFJORD (jit_compile=True, adjoint) and tfb.FFJORD (a tf.function: it does not
        compile under XLA) with `benchmarks/ffjord_speed.py`'s steps, at the shared weights."""
        import keras
        import tensorflow as tf

        from benchmarks import ffjord_speed
        _, _, batch = self.arrays(dataset)
        batch, seed = tf.constant(batch), tf.constant([1, 2])
        weights = ffjord_weights(self.data)
        out = {}
        for label, jit in (("tfp_flows ffjord", True), ("tfb.FFJORD", False)):
            net = ffjord_speed.make_net(0, weights)
            dist = (ffjord_speed.ours(net, trace) if jit else ffjord_speed.theirs(net, trace))
            step = ffjord_speed.train_step_fn(dist, net, keras.optimizers.Adam(0.0), jit,
                                              pass_seed=jit)
            start = time.perf_counter()
            loss = float(step(batch, seed))
            out[label] = {"first call (s)": time.perf_counter() - start,
                          "params": int(sum(w.size for w in weights)), "loss": loss}
            self.contenders[label] = {
                "step": timed_steps(lambda x, step=step: step(x, seed).numpy(), batch)}
        return out

    def train(self, label, flow, dataset, budget):
        import keras
        import numpy as np
        import tensorflow as tf

        from tfp_flows.keras import FlowModel, train
        train_x, test_x, _ = self.arrays(dataset)
        keras.utils.set_random_seed(1)
        model = FlowModel(self.build(flow, train_x.shape[-1]))
        model.initialize_from_data(train_x[:1024])
        optimizer = keras.optimizers.Adam(LEARNING_RATE)
        rng = np.random.default_rng(0)
        start, steps = time.perf_counter(), 0
        if label.endswith("fit"):
            model.compile(optimizer, jit_compile=True)
            while time.perf_counter() - start < budget:
                idx = rng.integers(0, len(train_x), (20, BATCH))
                model.fit(train_x[idx.ravel()], batch_size=BATCH, epochs=1, verbose=0,
                          shuffle=False)
                steps += 20
        else:
            step = None
            while time.perf_counter() - start < budget:
                batch = tf.constant(train_x[rng.integers(0, len(train_x), BATCH)])
                if step is None:
                    step = _hand_stepper(model.distribution, optimizer, batch, fixed=False)
                step(batch)
                steps += 1
        return {"steps done": steps, "test NLL": train.evaluate(model, test_x).nll}


def timed_steps(step, batch):
    """`run(n)`: calls `step(batch)` n times (each call blocks until done); the seconds of each."""

    def run(n):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            step(batch)
            times.append(time.perf_counter() - start)
        return times

    return run


def _fit_stepper(model, batch, steps_per_execution=1):
    """Runs `model.fit` for n steps on the fixed batch, given as an array (the usual
    `fit(x, batch_size=...)`: the library's own padded batches, here one batch of all
    the rows, in order); returns per-step seconds measured between Keras' batch ends (the
    first step of each call, which builds the iterator, is not counted). With
    `steps_per_execution = k` (as compiled) Keras runs k steps per call and reports
    once: each of the n values is then the mean of k steps."""
    import keras
    import numpy as np
    import tensorflow as tf

    data = tf.nest.map_structure(np.asarray, batch)
    rows = len(tf.nest.flatten(data)[0])
    k = steps_per_execution

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # the step has finished
            self.ends.append(time.perf_counter())

    def run(n):
        timer = Timer()
        timer.ends = []
        model.fit(data, batch_size=rows, shuffle=False, steps_per_epoch=(n + 1) * k,
                  epochs=1, verbose=0, callbacks=[timer])
        ends = timer.ends
        return [(b - a) / k for a, b in zip(ends[:-1], ends[1:], strict=True)]

    return run


def _hand_stepper(distribution, optimizer, batch, fixed=True):
    """A hand-written `tf.function(jit_compile=True)` step; `run(n)` times n calls."""
    import tensorflow as tf

    from tfp_flows.internal import keras_owned
    layers = keras_owned.find_keras_layers(distribution)
    weights = [w for layer in layers for w in layer.trainable_weights]
    variables = [w.value for w in weights]
    optimizer.build(weights)  # slots before tracing: one trace, one XLA compile (as `fit`)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(distribution.log_prob(x))
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, weights, strict=True))
        return loss

    if not fixed:
        return lambda x: step(x).numpy()

    return timed_steps(lambda x: step(x).numpy(), batch)


class FlowjaxWorker(Worker):
    name = "flowjax"

    def __init__(self, data_file):
        super().__init__(data_file)
        import flowjax  # noqa: F401  (ImportError: skipped)
        import jax
        jax.config.update("jax_platform_name", "cpu")

    def build(self, flow, dim, seed=0):
        import jax
        import jax.numpy as jnp
        from flowjax.bijections import RationalQuadraticSpline
        from flowjax.distributions import Normal
        from flowjax.flows import coupling_flow, masked_autoregressive_flow
        key = jax.random.key(seed)
        common = dict(base_dist=Normal(jnp.zeros(dim)), flow_layers=LAYERS,
                      nn_width=HIDDEN[0], nn_depth=len(HIDDEN), nn_activation=jax.nn.relu)
        if flow == "maf":
            return masked_autoregressive_flow(key, **common)
        if flow == "real_nvp":
            return coupling_flow(key, **common)
        return coupling_flow(key, transformer=RationalQuadraticSpline(knots=7, interval=4.0),
                             **common)

    def _stepper(self, flow):
        import equinox as eqx
        import optax
        import paramax
        params, static = eqx.partition(flow, eqx.is_inexact_array,
                                       is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable))
        optimizer = optax.adam(LEARNING_RATE)
        state = {"params": params, "opt": optimizer.init(params)}

        @eqx.filter_jit
        def step(params, opt_state, x):
            def loss_fn(p):
                return -paramax.unwrap(eqx.combine(p, static)).log_prob(x).mean()
            loss, grads = eqx.filter_value_and_grad(loss_fn)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return eqx.apply_updates(params, updates), opt_state, loss

        def one(x):
            state["params"], state["opt"], loss = step(state["params"], state["opt"], x)
            return loss.block_until_ready()

        count = sum(leaf.size for leaf in __import__("jax").tree_util.tree_leaves(params))
        return one, count, state, static

    def setup(self, flow, dataset):
        import jax.numpy as jnp
        _, _, batch = self.arrays(dataset)
        batch = jnp.asarray(batch)
        start = time.perf_counter()
        one, count, _, _ = self._stepper(self.build(flow, batch.shape[-1]))
        one(batch)
        first = time.perf_counter() - start

        self.contenders["flowjax jit"] = {"step": timed_steps(one, batch)}
        return {"flowjax jit": {"first call (s)": first, "params": int(count)}}

    def train(self, label, flow, dataset, budget):
        import equinox as eqx
        import jax.numpy as jnp
        import numpy as np
        import paramax
        train_x, test_x, _ = self.arrays(dataset)
        one, _, state, static = self._stepper(self.build(flow, train_x.shape[-1], seed=1))
        rng = np.random.default_rng(0)
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < budget:
            one(jnp.asarray(train_x[rng.integers(0, len(train_x), BATCH)]))
            steps += 1
        model = paramax.unwrap(eqx.combine(state["params"], static))
        nll = -float(np.mean(np.asarray(eqx.filter_jit(model.log_prob)(jnp.asarray(test_x)))))
        return {"steps done": steps, "test NLL": nll}


class ZukoWorker(Worker):
    name = "zuko"

    def __init__(self, data_file):
        super().__init__(data_file)
        import torch  # noqa: F401
        import zuko  # noqa: F401

    def build(self, flow, dim, seed=0):
        import functools

        import torch
        import zuko
        torch.manual_seed(seed)
        if flow == "maf":
            return zuko.flows.MAF(dim, transforms=LAYERS, hidden_features=HIDDEN)
        if flow == "real_nvp":
            return zuko.flows.RealNVP(dim, transforms=LAYERS, hidden_features=HIDDEN)
        spline = functools.partial(zuko.transforms.MonotonicRQSTransform, bound=4.0)
        return zuko.flows.RealNVP(dim, transforms=LAYERS, hidden_features=HIDDEN,
                                  univariate=spline, shapes=[(8,), (8,), (7,)])

    def _stepper(self, flow, compiled):
        import torch
        optimizer = torch.optim.Adam(flow.parameters(), lr=LEARNING_RATE)

        def loss_fn(x):
            return -flow().log_prob(x).mean()

        loss_fn = torch.compile(loss_fn) if compiled else loss_fn

        def one(x):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(x)
            loss.backward()
            optimizer.step()
            return float(loss)

        return one

    def setup(self, flow, dataset):
        import torch
        _, _, batch = self.arrays(dataset)
        batch = torch.as_tensor(batch)
        out = {}
        for mode in ("compile", "eager"):
            if mode == "eager" and out:
                break  # eager is the fallback when torch.compile fails
            model = self.build(flow, batch.shape[-1])
            count = sum(p.numel() for p in model.parameters() if p.requires_grad)
            label = f"zuko {mode}"
            start = time.perf_counter()
            try:
                one = self._stepper(model, mode == "compile")
                one(batch)
            except Exception as error:  # noqa: BLE001 - a compile failure skips the contender
                print(f"{label} failed: {error!r}", file=sys.stderr)
                continue
            first = time.perf_counter() - start

            self.contenders[label] = {"step": timed_steps(one, batch)}
            out[label] = {"first call (s)": first, "params": int(count)}
        return out

    def train(self, label, flow, dataset, budget):
        import numpy as np
        import torch
        train_x, test_x, _ = self.arrays(dataset)
        model = self.build(flow, train_x.shape[-1], seed=1)
        one = self._stepper(model, label.endswith("compile"))
        rng = np.random.default_rng(0)
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < budget:
            one(torch.as_tensor(train_x[rng.integers(0, len(train_x), BATCH)]))
            steps += 1
        with torch.no_grad():
            nll = -float(model().log_prob(torch.as_tensor(test_x)).mean())
        return {"steps done": steps, "test NLL": nll}


def ffjord_weights(data):
    return [data[f"ffjord_w{i}"] for i in range(int(data["ffjord_num_weights"]))]


class TorchdiffeqWorker(Worker):
    """FFJORD in PyTorch with torchdiffeq (eager): the same concat-squash field and weights,
    dopri5 with rtol = atol = 1e-5, adjoint gradients (`odeint_adjoint`), exact trace (one
    autograd call per dimension) or Hutchinson (one Rademacher probe per step, as ours)."""

    name = "torchdiffeq"

    def __init__(self, data_file):
        super().__init__(data_file)
        import torch  # noqa: F401
        import torchdiffeq  # noqa: F401

    def setup(self, flow, dataset):
        import math

        import torch
        import torchdiffeq
        trace = flow.split("_", 1)[1]
        _, _, batch = self.arrays(dataset)
        batch = torch.as_tensor(batch)
        blocks = [[torch.nn.Parameter(torch.as_tensor(w)) for w in ffjord_weights(self.data)[
            i:i + 5]] for i in range(0, int(self.data["ffjord_num_weights"]), 5)]

        class Field(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.params = torch.nn.ParameterList([p for block in blocks for p in block])
                self.noise = None

            def field(self, t, z):
                h = z
                for i, (kernel, bias, gate_w, gate_b, shift) in enumerate(blocks):
                    h = (h @ kernel + bias) * torch.sigmoid(gate_w * t + gate_b) + shift * t
                    if i < len(blocks) - 1:
                        h = torch.tanh(h)
                return h

            def forward(self, t, state):
                z = state[0]
                with torch.enable_grad():
                    z = z.requires_grad_(True)
                    dz = self.field(t, z)
                    if trace == "exact":
                        tr = sum(torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i]
                                 for i in range(z.shape[-1]))
                    else:
                        vjp = torch.autograd.grad(dz, z, self.noise, create_graph=True)[0]
                        tr = (vjp * self.noise).sum(-1)
                return dz, tr

        field = Field()
        optimizer = torch.optim.Adam(field.parameters(), lr=0.0)
        times = torch.tensor([1.0, 0.0])
        dim = batch.shape[-1]

        def one(x):
            optimizer.zero_grad(set_to_none=True)
            field.noise = torch.randint(0, 2, x.shape).to(x.dtype) * 2 - 1
            z, delta = torchdiffeq.odeint_adjoint(
                field, (x, torch.zeros(x.shape[0])), times, rtol=1e-5, atol=1e-5,
                method="dopri5", adjoint_params=tuple(field.parameters()))
            z, delta = z[-1], delta[-1]
            log_prob = -0.5 * (z * z).sum(-1) - 0.5 * dim * math.log(2 * math.pi) + delta
            loss = -log_prob.mean()
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        start = time.perf_counter()
        loss = one(batch)
        first = time.perf_counter() - start
        self.contenders["torchdiffeq"] = {"step": timed_steps(one, batch)}
        count = sum(p.numel() for p in field.parameters())
        return {"torchdiffeq": {"first call (s)": first, "params": int(count), "loss": loss}}

    def train(self, label, flow, dataset, budget):
        raise NotImplementedError("torchdiffeq: no equal-budget training (timing only)")


WORKER_CLASSES = {"tfp_flows": TFPWorker, "flowjax": FlowjaxWorker, "zuko": ZukoWorker,
                  "torchdiffeq": TorchdiffeqWorker}


def worker_main(name, data_file):
    """Serves JSON requests on stdin; replies on the original stdout (library output goes
    to stderr so it cannot corrupt the protocol)."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    try:
        worker = WORKER_CLASSES[name](data_file)
    except ImportError as error:
        reply.write(json.dumps({"error": f"{name} is not installed ({error}); "
                                         "`pip install -e .[peers]`"}) + "\n")
        return
    reply.write(json.dumps({"ready": name}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        try:
            if cmd == "setup":
                worker.contenders = {}
                result = worker.setup(request["flow"], request["dataset"])
            elif cmd == "time":
                result = worker.contenders[request["label"]]["step"](request["steps"])
            elif cmd == "train":
                result = worker.train(request["label"], request["flow"], request["dataset"],
                                      request["budget"])
            elif cmd == "quit":
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply.write(json.dumps({"ok": result}) + "\n")
        except Exception as error:  # noqa: BLE001 - reported to the parent, which skips
            import traceback
            traceback.print_exc()
            reply.write(json.dumps({"error": repr(error)}) + "\n")


# --------------------------------------------------------------------------- parent

class Client:
    def __init__(self, name, data_file):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", name, "--data", data_file],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")})
        first = json.loads(self.proc.stdout.readline() or '{"error": "worker died"}')
        self.error = first.get("error")

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        answer = json.loads(self.proc.stdout.readline() or '{"error": "worker died"}')
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer["ok"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            self.proc.wait(timeout=60)


def make_data(path, seed, ffjord_pretrain=None):
    import numpy as np

    from tfp_flows import datasets
    out = {}
    rng = np.random.default_rng(seed)
    for name, split in (("moons", datasets.load("moons", num_samples=20000, seed=seed)),
                        ("digits", datasets.load_digits(seed=seed))):
        train = np.asarray(split.train, np.float32)
        out[f"{name}_train"] = train
        out[f"{name}_test"] = np.asarray(split.test, np.float32)
        out[f"{name}_batch"] = train[rng.choice(len(train), BATCH, replace=len(train) < BATCH)]
    if ffjord_pretrain is not None:  # shared FFJORD weights: ffjord_speed.py's net after its
        # Hutchinson pretraining (the dynamics, hence the solver's steps, grow in training)
        import argparse

        from benchmarks import ffjord_speed
        weights = ffjord_speed.pretrained_weights(
            argparse.Namespace(seed=0, pretrain=ffjord_pretrain), out["moons_train"])
        out["ffjord_num_weights"] = np.array(len(weights))
        out.update({f"ffjord_w{i}": np.asarray(w, np.float32) for i, w in enumerate(weights)})
    np.savez(path, **out)


def quartiles(times):
    import numpy as np
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return float(med), float(q1), float(q3)


def run_case(clients, flow, dataset, args):
    rows = {}
    for client in clients:
        if client.name not in CASE_WORKERS.get(flow, DISCRETE_WORKERS):
            continue
        try:
            setup = client.ask(cmd="setup", flow=flow, dataset=dataset)
        except RuntimeError as error:
            print(f"skipping {client.name} on {flow}/{dataset}: {error}", flush=True)
            continue
        for label, info in setup.items():
            rows[label] = {"flow": flow, "data": dataset, "framework": label, **info,
                           "_client": client, "_times": []}
            print(f"{flow}/{dataset} {label}: first call {info['first call (s)']:.1f} s, "
                  f"{info['params']} parameters", flush=True)
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for label, row in rows.items():
            row["_times"] += row["_client"].ask(cmd="time", label=label, steps=args.steps)
    for row in rows.values():
        row["s / step"], row["q1"], row["q3"] = quartiles(row["_times"])
        row["load (1 min)"] = f"{min(loads):.1f}-{max(loads):.1f}"
    peers = [r["s / step"] for r in rows.values() if not r["framework"].startswith("tfp_flows")]
    fastest = min(peers) if peers else None
    for row in rows.values():
        row["vs fastest peer"] = row["s / step"] / fastest if fastest else None
    if args.budget:
        for label, row in rows.items():
            try:
                row.update(row["_client"].ask(cmd="train", label=label, flow=flow,
                                              dataset=dataset, budget=args.budget))
            except RuntimeError as error:
                print(f"training {label} failed: {error}", flush=True)
    out = []
    for row in rows.values():
        row = {k: v for k, v in row.items() if not k.startswith("_")}
        print(row, flush=True)
        out.append(row)
    return out


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    cases = list(dict.fromkeys((r["flow"], r["data"]) for r in rows))
    labels = list(dict.fromkeys(r["framework"] for r in rows))
    colors = dict(zip(labels, plt.cm.tab10.colors, strict=False))
    fig, ax = plt.subplots(figsize=(12, 4))
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        for i, case in enumerate(cases):
            row = next((r for r in rows if (r["flow"], r["data"]) == case
                        and r["framework"] == label), None)
            if row is None:
                continue
            err = [[row["s / step"] - row["q1"]], [row["q3"] - row["s / step"]]]
            ax.bar(i + j * width, row["s / step"] * 1e3, width, yerr=np.array(err) * 1e3,
                   color=colors[label], label=label if i == 0 or label not in
                   ax.get_legend_handles_labels()[1] else None)
    ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2, [f"{f}\n{d}" for f, d in cases])
    ax.set_ylabel("ms per training step (median, quartiles)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"batch {BATCH}, hidden {HIDDEN} ReLU, Adam; interleaved rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    from benchmarks import common
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    p.add_argument("--steps", type=int, default=5, help="steps per contender per round")
    p.add_argument("--budget", type=float, default=0.0,
                   help="wall seconds of training per contender for test NLL (0: skip)")
    p.add_argument("--hand-step", action="store_true",
                   help="MAF and RealNVP: also time a hand-written tf.function(jit_compile=True) "
                        f"step and FlowModel.fit with steps_per_execution={SPE}")
    p.add_argument("--floor", action="store_true",
                   help="also time the pure-TF floor (benchmarks/floor.py) for MAF and RealNVP")
    p.add_argument("--ffjord-pretrain", type=int, default=FFJORD_PRETRAIN,
                   help="FFJORD is timed at the weights after this many Hutchinson steps")
    p.add_argument("--workers", nargs="+", default=list(WORKERS), choices=WORKERS)
    p.add_argument("--cases", nargs="+", default=None,
                   help="flow/data pairs, e.g. maf/moons nsf/digits (default: all)")
    p.add_argument("--report", default=None,
                   help="only write the table and plot from a saved rows JSON (e.g. the "
                        "peers_partial.json of an interrupted run)")
    p.add_argument("--command", default=None,
                   help="with --report: the command that produced the rows")
    args = p.parse_args()
    if args.report:
        with open(args.report) as f:
            rows = json.load(f)
        report(rows, args, args.command or "python benchmarks/peers.py " + " ".join(sys.argv[1:]),
               common)
        return
    os.environ["PEERS_HAND_STEP"] = "1" if args.hand_step else "0"
    os.environ["PEERS_FLOOR"] = "1" if args.floor else "0"
    cases = CASES if args.cases is None else [tuple(c.split("/")) for c in args.cases]
    command = "python benchmarks/peers.py " + " ".join(sys.argv[1:])
    os.makedirs(os.path.join(args.out, "results"), exist_ok=True)
    data_file = os.path.join(args.out, "results", ".peers_data.npz")
    ffjord = any(f.startswith("ffjord") for f, _ in cases)
    make_data(data_file, args.seed, args.ffjord_pretrain if ffjord else None)
    machine = common.machine_line()
    print(machine, "load", os.getloadavg(), flush=True)
    clients = []
    for name in args.workers:
        client = Client(name, data_file)
        if client.error:
            print(f"skipping {name}: {client.error}", flush=True)
            client.close()
        else:
            clients.append(client)
    rows = []
    partial = os.path.join(args.out, "results", "peers_partial.json")
    try:
        for flow, dataset in cases:
            rows += run_case(clients, flow, dataset, args)
            with open(partial, "w") as f:  # a killed run loses little
                json.dump(rows, f, indent=1)
    finally:
        for client in clients:
            client.close()
        os.remove(data_file)
    report(rows, args, command, common)
    os.remove(partial)


def report(rows, args, command, common):
    os.makedirs(os.path.join(args.out, "img"), exist_ok=True)
    plot(rows, os.path.join(args.out, "img", "peers.png"))
    columns = ["flow", "data", "framework", "params", "first call (s)", "s / step", "q1", "q3",
               "vs fastest peer", "load (1 min)"]
    if any("loss" in r for r in rows):
        columns.append("loss")
    if any("test NLL" in r for r in rows):
        columns += ["steps done", "test NLL"]
    common.write_results(
        os.path.join(args.out, "results", "peers.md"), "tfp_flows vs flowjax and zuko",
        command, rows, columns,
        notes=f"Batch {BATCH}, {LAYERS} layers (Ferumal: 2 blocks = 4 couplings, against a "
              f"4-layer RealNVP), hidden {HIDDEN} ReLU, Adam {LEARNING_RATE}. s / step: median "
              f"over {args.rounds} interleaved rounds of {args.steps} steps (q1, q3: "
              "quartiles); 'vs fastest peer' divides by the fastest flowjax / zuko contender "
              "of the same row group. first call: building the step, tracing, compiling and "
              "running one step. 'tfp_flows fit': FlowModel.fit with jit_compile=True; "
              "'tfp_flows step': a hand-written tf.function(jit_compile=True) step; "
              f"'tfp_flows fit spe {SPE}': FlowModel.fit compiled with steps_per_execution="
              f"{SPE} (Keras runs {SPE} steps per call; s / step = call time / {SPE}). "
              "'tfp_flows floor': benchmarks/floor.py, the same flow as a hand-written pure-TF "
              "step (no TFP, no Keras). FFJORD rows (two moons, the weights after "
              f"{args.ffjord_pretrain} Hutchinson steps, dopri5 rtol = atol = 1e-5, adjoint "
              "gradients): 'tfp_flows ffjord' jit_compile=True, 'tfb.FFJORD' a tf.function, "
              "'torchdiffeq' eager PyTorch; loss: the first step's loss (the same weights). "
              "load: the 1-minute load average over the rounds (2 cores, shared machine).")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        i = sys.argv.index("--worker")
        worker_main(sys.argv[i + 1], sys.argv[sys.argv.index("--data") + 1])
    else:
        main()
