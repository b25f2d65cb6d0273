"""Keras 3 owns the weights; TFP sees the same storage.

Keras 3 does not track `tf.Variable`s or `tf.Module`s assigned to a layer, and
TFP does not see weights held by Keras layers. The pattern used throughout
this library: every trainable parameter lives in a Keras layer (built eagerly,
so the weights exist before any `tf.function` trace), and the TFP object that
uses the layer keeps

* the layers in `_keras_layers`, so `find_keras_layers` (and hence
  `tfp_flows.keras.FlowModel`) can hand them to Keras, and
* the layers' underlying `tf.Variable`s in `_keras_variables`, so TFP's
  `trainable_variables` (used by `tfp.vi.fit_surrogate_posterior` and
  `tfp.math.minimize`) sees the same storage.

Bijectors get all of this from `tfp_flows.bijectors.KerasBijector`;
distributions from `FlowDistribution._own_keras_layers`.
"""

import keras
import tensorflow as tf

from tfp_flows.internal import tfp_compat


def build_layer(layer, input_shape):
    """Builds `layer` now, so its weights exist before tracing."""
    if not layer.built:
        layer.build(input_shape)
    return layer


def own_keras_layers(module, *layers):
    """Records `layers` (built Keras layers) on the TFP `module`.

    Call at the end of the module's constructor. Layers already recorded are
    kept; order is preserved so that weight saving is deterministic.
    """
    for layer in layers:
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"Expected a Keras 3 layer; got {type(layer).__name__}.")
        if not layer.built:
            raise ValueError(f"Layer {layer.name!r} must be built before it is owned.")
    known = list(getattr(module, "_keras_layers", ()))
    known += [layer for layer in layers if all(layer is not k for k in known)]
    module._keras_layers = tuple(known)
    module._keras_variables = tuple(w.value for layer in known for w in layer.weights)


def find_keras_layers(obj):
    """All distinct Keras layers reachable from a TFP distribution or bijector.

    Walks `tf.Module` attributes (bijector chains, transformed distributions,
    conditioner callables) and returns each Keras layer once, in a
    deterministic order.
    """
    if isinstance(obj, keras.layers.Layer):
        return [obj]
    found = []
    if isinstance(obj, tf.Module):
        candidates = tfp_compat.flatten_module(
            obj, lambda v: isinstance(v, keras.layers.Layer))
    else:
        candidates = []
    for layer in candidates:
        if all(layer is not f for f in found):
            found.append(layer)
    return found


def untracked_variables(obj, layers):
    """Trainable `tf.Variable`s in `obj` that no Keras layer in `layers` owns."""
    owned = {id(w.value) for layer in layers for w in layer.weights}
    variables = obj.trainable_variables if isinstance(obj, tf.Module) else ()
    return [v for v in variables if id(v) not in owned]
