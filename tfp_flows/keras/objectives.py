"""Training objectives for `FlowModel`.

An objective maps a distribution and a batch to a per-example *score* to
maximise (a log-likelihood, or a lower bound on one); the Keras loss is minus
its (weighted) mean. An objective may also return `(score, penalty)`, a scalar
penalty that is added to the loss in training only (e.g. FFJORD's RNODE
regularisers).

| objective | score | exactness |
|---|---|---|
| `MaximumLikelihood` | `log p(x)` | whatever `log_prob` is (exact for bijections) |
| `ELBO` | `distribution.elbo(x)` | lower bound (LGF, augmentation) |
| `ImportanceWeighted(k)` | `importance_weighted_bound(x, k)` | bound, tighter with k |
| `ReverseKL(target_log_prob_fn)` | `log p~(x) - log q(x)`, `x ~ q` | needs no data |

Seeds: `FlowModel` calls an objective with the step's stateless `seed`, and
every objective hands it to every stochastic estimate it makes (through
`contract.log_prob`, which splits it over the parts that take one: FFJORD's
Hutchinson probes, importance samples), so the noise is fresh every step and
reproducible from `(FlowModel.seed, step)`.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import contract, tfp_compat, validation
from tfp_flows.internal.contract import log_prob

_REGISTRY = {}


def _register(cls):
    _REGISTRY[cls.__name__] = cls
    return keras.saving.register_keras_serializable(package="tfp_flows")(cls)


class Objective:
    """Base class. Subclasses implement `__call__`."""

    needs_data = True

    def __call__(self, distribution, x, *, conditional_input=None, seed=None, training=False):
        raise NotImplementedError

    def get_config(self):
        """Constructor arguments (Keras serialisation)."""
        return {}

    @classmethod
    def from_config(cls, config):
        """The objective rebuilt from `get_config()`."""
        return cls(**config)


@_register
class MaximumLikelihood(Objective):
    """Forward KL from data: maximise `log p(x)` (the step's `seed` feeds any estimate)."""

    def __call__(self, distribution, x, *, conditional_input=None, seed=None, training=False):
        return log_prob(distribution, x, conditional_input, seed=seed)


def _method(distribution, name, objective):
    fn = getattr(distribution, name, None)
    if fn is None:
        raise TypeError(f"{objective} needs a distribution with a `{name}` method; "
                        f"{type(distribution).__name__} has none.")
    return fn


@_register
class ELBO(Objective):
    """Maximise the single-sample evidence lower bound `distribution.elbo(x)`."""

    def __call__(self, distribution, x, *, conditional_input=None, seed=None, training=False):
        kwargs = {} if conditional_input is None else {"conditional_input": conditional_input}
        return _method(distribution, "elbo", "ELBO")(x, seed=seed, **kwargs)


@_register
class ImportanceWeighted(Objective):
    """Maximise the `num_samples`-sample importance-weighted bound (IWAE)."""

    def __init__(self, num_samples=8):
        self.num_samples = validation.positive_int(num_samples, "num_samples")

    def __call__(self, distribution, x, *, conditional_input=None, seed=None, training=False):
        kwargs = {} if conditional_input is None else {"conditional_input": conditional_input}
        fn = _method(distribution, "importance_weighted_bound", "ImportanceWeighted")
        return fn(x, num_samples=self.num_samples, seed=seed, **kwargs)

    def get_config(self):
        """`{"num_samples": K}`."""
        return {"num_samples": self.num_samples}


class ReverseKL(Objective):
    """Reverse KL to an unnormalised target: minimise `E_q[log q(x) - log p~(x)]`.

    Samples and their log-densities come from one pass
    (`experimental_sample_and_log_prob`), so a flow whose sampling direction is
    cheap (coupling flows, FFJORD) pays for one transformation, not two. The
    score is `log p~(x) - log q(x)`; its mean is the ELBO of the target's
    normaliser, `log Z - KL(q || p)`.

    The step's seed is split between the base samples and every part of the
    flow that takes one (e.g. FFJORD's Hutchinson probes). Conditional flows
    are rejected (a `ValueError`): amortised reverse KL needs conditions to
    sample at, which this objective does not take; train a conditional flow
    by maximum likelihood, or pin the condition with
    `tfp_flows.bijectors.FixedConditional` first.

    Args:
      target_log_prob_fn: callable `x -> log p~(x)` (unnormalised), batch in, batch out.
      num_samples: samples per training step.
    """

    needs_data = False

    def __init__(self, target_log_prob_fn, num_samples=256):
        if not callable(target_log_prob_fn):
            raise TypeError("`target_log_prob_fn` must be callable; "
                            f"got {type(target_log_prob_fn).__name__}.")
        self.target_log_prob_fn = target_log_prob_fn
        self.num_samples = validation.positive_int(num_samples, "num_samples")

    def __call__(self, distribution, x=None, *, conditional_input=None, seed=None,
                 training=False):
        if contract.is_conditional(distribution):
            raise ValueError(
                "ReverseKL does not take conditional flows: the flow takes a "
                f"`conditional_input` of size {contract.conditional_size(distribution)} and "
                "reverse KL has no conditions to sample at. Train it by maximum likelihood, or "
                "pin the condition (tfp_flows.bijectors.FixedConditional).")
        samples, log_q = _sample_and_log_prob(distribution, self.num_samples, seed)
        return self.target_log_prob_fn(samples) - log_q

    def get_config(self):
        """Constructor arguments (Keras serialisation)."""
        raise TypeError("ReverseKL holds a Python callable and cannot be serialised; "
                        "save the weights with `model.save_weights` instead.")


def _sample_and_log_prob(distribution, num_samples, seed):
    """`experimental_sample_and_log_prob` with the seed routed to every seeded part."""
    seed = tfp.random.sanitize_seed(seed, salt="reverse_kl")
    if isinstance(distribution, tfp_compat.TRANSFORMED_TYPES) and contract.takes_seed(
            distribution.bijector):
        base_seed, bij_seed = tfp.random.split_seed(seed, n=2, salt="reverse_kl")
        kwargs = contract.route(distribution.bijector, None, bij_seed)
        return distribution.experimental_sample_and_log_prob(
            num_samples, seed=base_seed, bijector_kwargs=kwargs)
    return distribution.experimental_sample_and_log_prob(num_samples, seed=seed)


def get(identifier):
    """An objective from an instance, a name ('nll', 'elbo', 'iwae') or a config dict."""
    if isinstance(identifier, Objective):
        return identifier
    if identifier is None:
        return MaximumLikelihood()
    if isinstance(identifier, str):
        aliases = {"nll": MaximumLikelihood, "maximum_likelihood": MaximumLikelihood,
                   "elbo": ELBO, "iwae": ImportanceWeighted,
                   "importance_weighted": ImportanceWeighted}
        if identifier.lower() not in aliases:
            raise ValueError(f"Unknown objective {identifier!r}; expected one of "
                             f"{sorted(aliases)} or an `Objective` instance.")
        return aliases[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _REGISTRY:
        return _REGISTRY[identifier["class_name"]].from_config(identifier.get("config", {}))
    raise TypeError(f"`objective` must be an Objective, a name or a config; got {identifier!r}.")


def serialize(objective):
    return {"class_name": type(objective).__name__, "config": objective.get_config()}


def seed_for_step(base_seed, step):
    """A stateless seed per (base seed, training step, replica).

    Every replica of a `tf.distribute` strategy gets its own stream, so two
    replicas never draw the same noise in one step.
    """
    seed = tf.stack([tf.constant(base_seed, tf.int32), tf.cast(step, tf.int32)])
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        seed = tf.random.experimental.stateless_fold_in(
            seed, tf.cast(ctx.replica_id_in_sync_group, tf.int32))
    return seed
