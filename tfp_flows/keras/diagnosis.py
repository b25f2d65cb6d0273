"""Where the first non-finite value of a flow's training score comes from (eager).

Used by `tfp_flows.keras.guard.GuardNonFinite` after it stopped training:
`locate_non_finite` walks a distribution's parts on the offending rows;
`rows` takes the training rows out of the forms `fit` accepts; `nonfinite_names`
lists the variables holding NaN or Inf.
"""

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.internal import contract, keras_owned

__all__ = ["locate_non_finite", "nonfinite_names", "rows", "score"]


def _finite(t):
    if t is None:
        return True
    values = [v for v in tf.nest.flatten(t) if isinstance(v, tf.Tensor | np.ndarray | float)]
    return all(bool(np.all(np.isfinite(np.asarray(v)))) for v in values
               if np.asarray(v).dtype.kind in "fc")


class _Recorder:
    """Records every call of the given Keras layers: (section, layer name, inputs finite,
    output finite), in call order. Hooks instance `call` attributes; removes them on exit."""

    def __init__(self, layers):
        self.layers, self.calls, self.section = layers, [], None

    def __enter__(self):
        for layer in self.layers:
            original = layer.call

            def call(*args, _layer=layer, _original=original, **kwargs):
                out = _original(*args, **kwargs)
                self.calls.append((self.section, _layer.name, _finite(args), _finite(out)))
                return out
            object.__setattr__(layer, "call", call)
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            if "call" in vars(layer):
                object.__delattr__(layer, "call")

    def first_bad(self, section):
        for sec, name, inputs_ok, out_ok in self.calls:
            if sec == section and not out_ok:
                source = "output (from finite inputs)" if inputs_ok else "input"
                return f"layer '{name}' {source}"
        return None


def score(objective, distribution, x, c, seed):
    """The objective's per-example score (the penalty of `(score, penalty)` dropped)."""
    out = objective(distribution, x, conditional_input=c, seed=seed, training=True)
    return out[0] if isinstance(out, tuple) else out


def locate_non_finite(distribution, x=None, conditional_input=None, *, objective=None,
                      seed=(0, 0)):
    """The first part of `distribution` whose value is non-finite on rows `x` (eager).

    A TFP transformed distribution is walked bijector by bijector of its
    chain (`contract.chain_members`) in the direction the objective uses: for
    data objectives the density direction (`inverse`, then
    `inverse_log_det_jacobian`, on what the previous bijector returned, with
    the condition routed by `contract.route`), then the base's `log_prob`; for
    objectives that need no data (reverse KL) the sampling direction
    (`forward`, `forward_log_det_jacobian` on base samples). Inside every
    bijector, and for the library's own distributions (funnels, augmented
    flows, LGF: their objective evaluated on `x`), every Keras layer call is
    recorded and the first one with a non-finite input or output is named.

    Returns:
      A string naming the part (e.g. ``"bijector 2 'real_nvp_block_1'
      (RealNVP): layer 'mlp_1' output (from finite inputs)"``), or None if
      every value is finite.
    """
    from tfp_flows.keras import objectives  # the objectives import this package's model

    objective = objectives.get(objective)
    seed = tf.convert_to_tensor(seed, tf.int32)
    c = None if conditional_input is None else tf.convert_to_tensor(
        conditional_input, distribution.dtype)
    with _Recorder(keras_owned.find_keras_layers(distribution)) as rec:
        if isinstance(distribution, contract.TRANSFORMED_TYPES) and contract.parts(distribution):
            found = _walk_chain(distribution, x, c, seed, objective, rec)
            if found:
                return found
        rec.section = "objective"
        data = None if x is None else tf.convert_to_tensor(x, distribution.dtype)
        value = score(objective, distribution, data, c, seed)
        found = rec.first_bad("objective")
        if found:
            return found
        if not _finite(value):
            return f"{type(distribution).__name__}: its own computation of the score"
    return None


def _walk_chain(distribution, x, c, seed, objective, rec):
    members = contract.chain_members(distribution.bijector)
    ndims = max(1, len(distribution.event_shape))
    if objective.needs_data:
        y = tf.convert_to_tensor(x, distribution.dtype)
        for i, b in enumerate(members):
            label = f"bijector {i} '{b.name}' ({type(b).__name__})"
            rec.section = label
            kw = contract.route(b, c, seed)
            z = b.inverse(tf.identity(y), **kw)
            ildj = b.inverse_log_det_jacobian(tf.identity(y), event_ndims=ndims, **kw)
            found = rec.first_bad(label)
            if found:
                return f"{label}: {found}"
            if not _finite(z):
                return f"{label}: inverse output"
            if not _finite(ildj):
                return f"{label}: inverse log-det"
            y = z
        label = f"base distribution '{distribution.distribution.name}'"
        rec.section = label
        if not _finite(contract.log_prob(distribution.distribution, y, c, seed=seed)):
            found = rec.first_bad(label)
            return f"{label}: {found}" if found else f"{label}: log_prob"
        return None
    n = 256
    z = contract.sample(distribution.distribution, n, c, seed=seed)
    for i, b in reversed(list(enumerate(members))):
        label = f"bijector {i} '{b.name}' ({type(b).__name__})"
        rec.section = label
        kw = contract.route(b, c, seed)
        y = b.forward(tf.identity(z), **kw)
        fldj = b.forward_log_det_jacobian(tf.identity(z), event_ndims=ndims, **kw)
        found = rec.first_bad(label)
        if found:
            return f"{label}: {found}"
        if not _finite(y):
            return f"{label}: forward output"
        if not _finite(fldj):
            return f"{label}: forward log-det"
        z = y
    return None


def rows(data, max_rows):
    """`(x, c)` NumPy arrays (at most `max_rows` rows) from the forms `fit` takes, or None."""
    if data is None:
        return None
    if isinstance(data, tf.data.Dataset):
        xs, cs, n = [], [], 0
        for element in data:
            features, target, _ = keras.utils.unpack_x_y_sample_weight(
                element if isinstance(element, tuple) else (element,))
            x, c = (target, features) if target is not None else _split(features)
            xs.append(np.asarray(x))
            cs.append(None if c is None else np.asarray(c))
            n += len(xs[-1])
            if n >= max_rows:
                break
        if not xs:
            return None
        c = None if cs[0] is None else np.concatenate(cs)[:max_rows]
        return np.concatenate(xs)[:max_rows], c
    x, c = _split(data)
    return (np.asarray(x)[:max_rows], None if c is None else np.asarray(c)[:max_rows])


def _split(features):
    if isinstance(features, dict):
        return features["x"], features.get("conditional_input")
    return features, None


def nonfinite_names(variables, values=None):
    values = [v.numpy() for v in variables] if values is None else values
    return [getattr(v, "path", v.name) for v, a in zip(variables, values, strict=True)
            if np.asarray(a).dtype.kind == "f" and not np.all(np.isfinite(a))]
