"""Walks bijector chains: data-dependent initialisation and conditional inputs.

A `tfb.Chain([b1, b2, b3])` samples with `b1(b2(b3(z)))`, so data meets `b1`
first in the density direction. Data-dependent initialisation therefore walks
the chain from `b1` to `b3`, initialising each layer from the data *as it
arrives at that layer* and passing it on through the layer's (now
initialised) inverse.
"""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.bijectors.chain import _Chain
from tensorflow_probability.python.bijectors.invert import _Invert
from tensorflow_probability.python.distributions.transformed_distribution import (
    _TransformedDistribution,
)

tfb = tfp.bijectors
tfd = tfp.distributions

# TFP's auto-composite constructors return these private base classes when a
# component is not a CompositeTensor (e.g. holds a Keras layer), so
# `isinstance(d, tfd.TransformedDistribution)` is False for our flows.
CHAIN_TYPES = (_Chain,)
INVERT_TYPES = (_Invert,)
TRANSFORMED_TYPES = (_TransformedDistribution,)

_CONDITIONAL_FLAG = "_tfp_flows_conditional"


def mark_conditional(bijector):
    """Flags `bijector` as taking a `conditional_input` keyword; returns it."""
    setattr(bijector, _CONDITIONAL_FLAG, True)
    return bijector


def is_conditional(bijector):
    if getattr(bijector, _CONDITIONAL_FLAG, False):
        return True
    if isinstance(bijector, CHAIN_TYPES):
        return any(is_conditional(b) for b in bijector.bijectors)
    if isinstance(bijector, INVERT_TYPES):
        return is_conditional(bijector.bijector)
    return False


def conditional_kwargs(bijector, conditional_input):
    """Keyword arguments that route `conditional_input` to every conditional bijector.

    For a chain, TFP routes keyword arguments by bijector name, so the result
    is nested: `{name: {"conditional_input": c}}`. Returns `{}` when
    `conditional_input` is None or nothing in `bijector` is conditional.
    """
    if conditional_input is None or not is_conditional(bijector):
        return {}
    if isinstance(bijector, CHAIN_TYPES):
        return {b.name: conditional_kwargs(b, conditional_input)
                for b in bijector.bijectors if is_conditional(b)}
    if isinstance(bijector, INVERT_TYPES):
        return conditional_kwargs(bijector.bijector, conditional_input)
    return {"conditional_input": conditional_input}


def log_prob(distribution, x, conditional_input=None, **kwargs):
    """`distribution.log_prob(x)` with `conditional_input` routed to its bijectors."""
    if isinstance(distribution, TRANSFORMED_TYPES):
        bkw = conditional_kwargs(distribution.bijector, conditional_input)
        if bkw:
            kwargs["bijector_kwargs"] = bkw
    elif conditional_input is not None:
        kwargs["conditional_input"] = conditional_input
    return distribution.log_prob(x, **kwargs)


def initialize_from_data(obj, x, conditional_input=None):
    """Data-dependent initialisation of every layer in `obj` that supports it.

    `obj` is a distribution or bijector; `x` a batch of data (density
    direction). Layers define `initialize_from_data(y, conditional_input=None)`
    (or `initialize_from_data(y)`); each sees the data as transformed by the
    layers before it. Returns the data as it arrives at the base distribution
    (for bijectors and transformed distributions), else None. Runs eagerly.
    """
    if isinstance(obj, TRANSFORMED_TYPES):
        return initialize_from_data(obj.bijector, x, conditional_input)
    if isinstance(obj, CHAIN_TYPES):
        h = x
        for b in obj.bijectors:
            h = initialize_from_data(b, h, conditional_input)
        return h
    init = getattr(obj, "initialize_from_data", None)
    if init is not None:
        if is_conditional(obj) and conditional_input is not None:
            init(x, conditional_input=conditional_input)
        else:
            init(x)
    if isinstance(obj, tfb.Bijector):
        # Fresh tensor: TFP caches inverse() by input, and parameters just changed.
        x = tf.identity(x)
        return obj.inverse(x, **conditional_kwargs(obj, conditional_input))
    return None
