"""Generic checks that every ready-made flow of the library must pass, with and without a condition.

`FLOWS` maps a registered flow's name to a `FlowCase`: the (small) keyword
arguments to build it with and how it is trained. `tests/test_generic_flows.py`
runs every check in `FLOW_CHECKS` on every case, unconditional and conditional
(`conditional_size=2`). Adding a flow to the registry means adding one line to
`FLOWS` (a test fails for a registered flow without a case).

The checks, on a model whose weights have been moved off their (identity)
initialisation:

* `log_prob`: `log_prob` has the batch shape and is finite;
* `sample`: samples have shape `[n, D]`, with a condition of shape `[C]` (n
  samples of one condition) and `[n, C]` (one per row), and their `log_prob`
  is finite;
* `gradients`: the training objective's gradient reaches every trainable
  weight (not None, finite);
* `kind`: the declared log-density kind is a known one and is what
  evaluation reports;
* `contract`: a conditional flow called without its condition, or an
  unconditional one with a condition, raises `ValueError` naming
  `conditional_input`;
* `save_load`: `model.save` / `keras.saving.load_model` reproduce `log_prob`;
* `fit_step`: one `model.fit` step compiled with `jit_compile=True` gives a
  finite loss.

`robustness_profile(name, scale)` measures a flow far from its data (outliers
at 1, 10 and 100 sigma, perturbed weights, float32): `tests/test_robustness_flows.py`
checks it and `benchmarks/robustness.py --distributions` tabulates it.
"""

import dataclasses
import os
import tempfile
import types

import keras
import numpy as np
import tensorflow as tf

from tfp_flows import evaluation
from tfp_flows.flows import available_flows
from tfp_flows.internal import contract
from tfp_flows.testing.bijectors import perturb_weights

CONDITIONAL_SIZE = 2
NUM_ROWS = 8


@dataclasses.dataclass(frozen=True)
class FlowCase:
    """How to build one registered flow for the generic checks.

    Attributes:
      kwargs: keyword arguments of `FlowModel.from_flow(name, ...)` (small nets).
      event_size: the flow's data dimension D.
      objective: the objective it trains with ('nll' or 'elbo').
      slow_checks: checks too slow for the default test run, by name, or as
        `"check:plain"` / `"check:conditional"` for one mode; the test suite
        marks them `slow`. The XLA compile of one training step costs 10-100 s
        on two CPU cores, so by default `fit_step` is slow; a few small flows
        compile it in the default run in the conditional mode (the families'
        own tests compile the unconditional ones).
    """

    kwargs: dict
    event_size: int = 2
    objective: str = "nll"
    slow_checks: tuple = ("fit_step",)

    def is_slow(self, check, conditional):
        """Whether `check` (plain or conditional run) is in `slow_checks` (then marked slow)."""
        mode = "conditional" if conditional else "plain"
        return check in self.slow_checks or f"{check}:{mode}" in self.slow_checks


_TINY = {"hidden_units": (4,)}
_FAST_FIT = ("fit_step:plain",)
_LATENT = {"num_importance_samples": 4, "prior_hidden_units": (4,),
           "posterior_hidden_units": (4,), "st_hidden_units": (4,)}

FLOWS = types.MappingProxyType({
    "real_nvp": FlowCase({"event_size": 2, "num_layers": 2, **_TINY}),
    "glow": FlowCase({"event_size": 2, "num_layers": 2, **_TINY}),
    "maf": FlowCase({"event_size": 2, "num_layers": 2, **_TINY}, slow_checks=_FAST_FIT),
    "neural_spline": FlowCase({"event_size": 2, "num_layers": 1, "num_bins": 4, **_TINY}),
    "ferumal": FlowCase({"event_size": 2, "num_blocks": 1, "num_inducing": 4}),
    "ffjord": FlowCase({"event_size": 2, "solver": "rk4", "num_steps": 4, **_TINY}),
    "funnel_nsf": FlowCase({"event_size": 3, "latent_size": 2, "num_layers": 2, "num_bins": 4,
                            **_TINY}, event_size=3),
    "funnel_glow": FlowCase({"event_size": 3, "latent_size": 2, "num_layers": 2, **_TINY},
                            event_size=3),
    "funnel_slice": FlowCase({"event_size": 3, "latent_size": 2, "num_layers": 2,
                              "num_bins": 4, **_TINY}, event_size=3),
    # Its XLA step is compiled by default in tests/test_funnel.py (test_fit_under_jit_compile).
    "funnel_mlp": FlowCase({"event_size": 3, "latent_sizes": (2,), "num_bins": 3, **_TINY},
                           event_size=3),
    "funnel_conv": FlowCase({"image_shape": (2, 2), "num_layers": 1, "hidden_units": (4,),
                             "decoder_hidden_units": (4,)}, event_size=4),
    "mlp_flow": FlowCase({"event_size": 2, "num_layers": 2, "num_bins": 3}),
    "augmented_real_nvp": FlowCase({"event_size": 2, "num_augment": 1, "num_layers": 2,
                                    "num_samples": 4, **_TINY}, objective="elbo",
                                   slow_checks=_FAST_FIT),
    "marginalizing_flow": FlowCase({"event_size": 2, "num_augment": 1, "num_blocks": 1,
                                    "num_samples": 4, **_TINY}, objective="elbo"),
    "lgf_maf": FlowCase({"event_size": 2, "num_layers": 1, **_TINY, **_LATENT},
                        objective="elbo", slow_checks=_FAST_FIT),
    "lgf_real_nvp": FlowCase({"event_size": 2, "num_layers": 2, **_TINY, **_LATENT},
                             objective="elbo"),
})


def missing_cases():
    """Registered flows without a `FlowCase` (should be empty).

    Names starting with an underscore are private registrations (tests
    register such stand-ins) and need no case.
    """
    return sorted(f for f in set(available_flows()) - set(FLOWS) if not f.startswith("_"))


def _data(case, conditional, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((NUM_ROWS, case.event_size)).astype("float32")
    c = (rng.standard_normal((NUM_ROWS, CONDITIONAL_SIZE)).astype("float32")
         if conditional else None)
    return x, c


def build_model(name, conditional, case=None):
    """`FlowModel.from_flow(name, ...)`, initialised from data, weights perturbed."""
    from tfp_flows.keras import FlowModel  # keras imports flows: keep testing importable

    case = FLOWS[name] if case is None else case
    kwargs = dict(case.kwargs)
    if conditional:
        kwargs["conditional_size"] = CONDITIONAL_SIZE
    model = FlowModel.from_flow(name, objective=case.objective, **kwargs)
    x, c = _data(case, conditional)
    model.initialize_from_data(x, c)
    perturb_weights(model.distribution, scale=0.1, seed=1)
    return model, x, c


def _inputs(x, c):
    return x if c is None else {"x": x, "conditional_input": c}


def check_log_prob(model, case, x, c):
    lp = model.log_prob(x, conditional_input=c, seed=tf.constant([1, 2]))
    assert tuple(lp.shape) == (NUM_ROWS,), f"log_prob shape {lp.shape}, expected ({NUM_ROWS},)"
    assert np.all(np.isfinite(lp)), f"non-finite log_prob: {np.asarray(lp)}"


def check_sample(model, case, x, c):
    dist = model.distribution
    conditions = [None] if c is None else [c[0], c]
    for cond in conditions:
        s = contract.sample(dist, NUM_ROWS, conditional_input=cond, seed=tf.constant([3, 4]))
        assert tuple(s.shape) == (NUM_ROWS, case.event_size), (
            f"sample shape {s.shape} with condition shape "
            f"{None if cond is None else np.shape(cond)}")
        assert np.all(np.isfinite(s)), "non-finite samples"
        rows = None if cond is None else np.broadcast_to(cond, (NUM_ROWS, CONDITIONAL_SIZE))
        lp = model.log_prob(s, conditional_input=rows, seed=tf.constant([5, 6]))
        assert np.all(np.isfinite(lp)), "non-finite log_prob of the model's own samples"


def check_gradients(model, case, x, c):
    weights = model.trainable_weights
    assert weights, "the flow has no trainable weights"
    with tf.GradientTape() as tape:
        score = model(_inputs(tf.constant(x), None if c is None else tf.constant(c)),
                      training=True)
        loss = -tf.reduce_mean(score)
    grads = tape.gradient(loss, weights)
    for w, g in zip(weights, grads, strict=True):
        assert g is not None, f"no gradient reaches weight {w.path}"
        assert np.all(np.isfinite(g)), f"non-finite gradient for {w.path}"


def check_kind(model, case, x, c):
    kind = contract.log_prob_kind(model.distribution)
    assert kind in contract.KINDS, kind
    _, label = evaluation.mean_log_prob(model, x, num_samples=4, conditional_input=c)
    assert label.startswith(kind), f"evaluation reports {label!r}, the flow declares {kind!r}"


def check_contract(model, case, x, c):
    if c is None:
        bad, match = np.zeros((NUM_ROWS, CONDITIONAL_SIZE), "float32"), "must be None"
    else:
        bad, match = None, "is required"
    for call in (lambda: model.log_prob(x, conditional_input=bad),
                 lambda: contract.sample(model.distribution, 2, conditional_input=bad)):
        try:
            call()
        except ValueError as err:
            assert "conditional_input" in str(err) and match in str(err), str(err)
        else:
            raise AssertionError(f"no ValueError for conditional_input={bad!r:.40}")


def check_save_load(model, case, x, c):
    seed = tf.constant([7, 8])
    before = model.log_prob(x, conditional_input=c, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "flow.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    after = loaded.log_prob(x, conditional_input=c, seed=seed)
    np.testing.assert_allclose(np.asarray(after), np.asarray(before), rtol=1e-5, atol=1e-5,
                               err_msg="log_prob changed after save/load")


def check_fit_step(model, case, x, c):
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit(_inputs(x, c), batch_size=NUM_ROWS, epochs=1, verbose=0)
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), f"non-finite training loss {loss}"


FLOW_CHECKS = types.MappingProxyType({
    "log_prob": check_log_prob,
    "sample": check_sample,
    "gradients": check_gradients,
    "kind": check_kind,
    "contract": check_contract,
    "save_load": check_save_load,
    "fit_step": check_fit_step,
})


def run_flow_checks(name, conditional, checks=None, case=None):
    """Runs `checks` (default: all) on flow `name`, with or without a condition.

    Raises `AssertionError` listing every check that failed, by name.
    """
    model, x, c = build_model(name, conditional, case)
    case = FLOWS[name] if case is None else case
    failures = []
    for check in checks or list(FLOW_CHECKS):
        try:
            FLOW_CHECKS[check](model, case, x, c)
        except AssertionError as err:
            failures.append(f"{check}: {err}")
    if failures:
        mode = "conditional" if conditional else "unconditional"
        raise AssertionError(f"{name} [{mode}] failed:\n" + "\n".join(failures))


# -- robustness far from the data ------------------------------------------------------

ROBUST_SIGMAS = (1.0, 10.0, 100.0)
ROBUST_ROWS = 16  # per sigma
ROBUST_SAMPLES = 16
_GRID_HALF_WIDTH, _GRID_CELLS = 8.0, 128  # midpoint rule on [-8, 8]^2, h = 0.125


def _unit_grid():
    h = 2 * _GRID_HALF_WIDTH / _GRID_CELLS
    centres = -_GRID_HALF_WIDTH + h * (np.arange(_GRID_CELLS) + 0.5)
    g = np.stack(np.meshgrid(centres, centres, indexing="ij"), -1).reshape(-1, 2)
    return g.astype(np.float32), h * h


def robustness_profile(name, scale=0.1, grid=True):
    """Outliers, samples and consistency of ready-made flow `name` in float32 (eager).

    The flow is `build_model(name, conditional=False)` after
    `keras.utils.set_random_seed(0)` (initialised from data,
    weights moved by `N(0, 0.1^2)`), re-perturbed by `N(0, scale^2)` (seed 2)
    when `scale != 0.1`. Returns a dict: the number of non-finite values of
    `log_prob` at `ROBUST_ROWS` inputs `sigma * N(0, I)` per sigma in
    `ROBUST_SIGMAS`, their minimum log-density, non-finite samples and
    log-densities of samples; for exact flows of the plane `mass - 1` (the
    midpoint rule on `[-8, 8]^2`, 128^2 cells) and, for TFP transformed
    distributions, `sides gap`: the largest `|log p(x)|` difference between
    the density side (`log_prob`, via the inverse) and the sampling side
    (`log p_base(z) - fldj(z)` at `x = f(z)`). One `log_prob` call scores the
    outliers, the samples and the grid together.
    """
    case = FLOWS[name]
    keras.utils.set_random_seed(0)  # the initial weights, so a profile is reproducible
    model, _, _ = build_model(name, conditional=False)
    if scale != 0.1:
        perturb_weights(model.distribution, scale=scale, seed=2)
    dist = model.distribution
    rng = np.random.default_rng(5)
    d = case.event_size
    x = np.concatenate([s * rng.standard_normal((ROBUST_ROWS, d))
                        for s in ROBUST_SIGMAS]).astype(np.float32)
    samples = contract.sample(dist, ROBUST_SAMPLES, seed=tf.constant([3, 4])).numpy()
    exact = contract.log_prob_kind(dist) == contract.EXACT
    parts = [x, samples]
    if grid and exact and d == 2:
        cells, area = _unit_grid()
        parts.append(cells)
    else:
        area = None
    lp = model.log_prob(np.concatenate(parts), seed=tf.constant([1, 2])).numpy()
    out = {"flow": name, "scale": scale, "kind": contract.log_prob_kind(dist),
           "non-finite samples": int(np.sum(~np.isfinite(samples)))}
    for i, sigma in enumerate(ROBUST_SIGMAS):
        chunk = lp[i * ROBUST_ROWS:(i + 1) * ROBUST_ROWS]
        out[f"non-finite at {sigma:g}"] = int(np.sum(~np.isfinite(chunk)))
        out[f"min log p at {sigma:g}"] = float(np.min(chunk))
    n_x = len(x)
    lp_samples = lp[n_x:n_x + ROBUST_SAMPLES]
    out["non-finite log p(samples)"] = int(np.sum(~np.isfinite(lp_samples)))
    if area is not None:
        out["mass - 1"] = float(np.sum(np.exp(lp[n_x + ROBUST_SAMPLES:].astype(np.float64)))
                                * area - 1.0)
    if exact and isinstance(dist, contract.TRANSFORMED_TYPES) and contract.parts(dist):
        z = dist.distribution.sample(ROBUST_SAMPLES, seed=tf.constant([7, 8]))
        lp_fwd = dist.distribution.log_prob(z) - dist.bijector.forward_log_det_jacobian(
            z, event_ndims=1)
        s = tf.constant(dist.bijector.forward(z).numpy())  # a new tensor: no bijector cache
        lp_inv = model.log_prob(s, seed=tf.constant([1, 2]))
        out["sides gap"] = float(np.max(np.abs(lp_fwd.numpy() - lp_inv.numpy())))
    return out
