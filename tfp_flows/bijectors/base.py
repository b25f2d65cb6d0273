"""`KerasBijector`: the base of every bijector whose weights live in Keras 3 layers.

Keras 3 trains the weights, TFP computes with them. For that to work, a TFP
bijector that holds Keras layers must follow a contract (docs/architecture.md,
"Keras 3 owns the weights"); `KerasBijector.__init__` carries it out once, so a
subclass only builds its layers and writes the `_forward` / `_inverse` /
log-det methods.
"""

from collections.abc import Mapping

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import contract, keras_owned, tfp_compat, validation

tfb = tfp.bijectors


def keras_layer_name(scope, suffix):
    """A Keras layer name derived from a name scope (Keras names may not contain '/').

    `keras_layer_name('flow/act_norm/', '_params')` is `'flow_act_norm_params'`.
    """
    return scope.strip("/").replace("/", "_") + suffix


class KerasBijector(contract.Declared, tfb.Bijector):
    """A `tfb.Bijector` on vectors `[..., event_size]` whose weights Keras 3 owns.

    Keras 3 does not track `tf.Variable`s assigned to a TFP object, TFP does not
    see weights held by Keras layers, and a Keras variable handed to a TFP op
    directly is converted to a constant (no gradient). The constructor of this
    class therefore, in order:

    1. opens `tf.name_scope(name)` and, inside it, obtains the bijector's Keras
       layers from `layers` (a callable is called with the scope name, e.g.
       `'act_norm/'`, so it can name the layers after it with
       `keras_layer_name`);
    2. checks that each is a Keras 3 layer that is already **built** (its
       weights must exist before any `tf.function` trace and inside the
       `tf.distribute` scope the model is created in:
       `keras_owned.build_layer(layer, input_shape)`);
    3. puts each layer into `parameters` under its key. TFP keys its
       forward/inverse cache on `parameters`, so without the layer two
       instances built with equal arguments would hand back each other's
       cached results;
    4. calls `tfb.Bijector.__init__` (`forward_min_event_ndims=1` by default);
    5. records the layers with `keras_owned.own_keras_layers`, so
       `keras_owned.find_keras_layers` (and hence `tfp_flows.keras.FlowModel`,
       which saves and restores them) finds them and TFP's
       `trainable_variables` (used by `tfp.vi` and `tfp.math.minimize`) lists
       the same `tf.Variable`s that Keras trains;
    6. declares the flow contract (`tfp_flows.internal.contract`): with
       `conditional_size=C > 0` the bijector takes `conditional_input=` of
       shape `[..., C]`, which the library routes to it through chains;
       `log_prob_kind` is `"exact"` unless a subclass overrides the property;
       `takes_seed=True` for a bijector whose log-det is stochastic (it then
       accepts `seed=` and gets its own split of the caller's seed).

    It also provides `event_size` and an empty `_parameter_properties`
    (parameters are Keras weights, not batched tensors).

    A subclass's constructor takes `parameters = dict(locals())` first,
    validates its arguments (errors name the argument), then calls this
    constructor. Its methods read weights through the layer: call the layer,
    or, for a `nets.Parameters` holder, use `params.variable(key)` (the
    underlying `tf.Variable`), never the Keras variable itself.

    #### Examples

    ```python
    class Scale(tfp_flows.bijectors.KerasBijector):
        # y = x * exp(log_scale); log|det J_forward| = sum(log_scale).

        def __init__(self, event_size, dtype=tf.float32, validate_args=False,
                     name="scale"):
            parameters = dict(locals())
            event_size = validation.positive_int(event_size, "event_size")
            dtype = validation.float_dtype(dtype)

            def make_layers(scope):
                self._params = tfp_flows.nets.Parameters(
                    {"log_scale": ((event_size,), "zeros")}, dtype=dtype.name,
                    name=keras_layer_name(scope, "_params"))
                return {"params": self._params}

            super().__init__(parameters, make_layers, event_size, dtype,
                             validate_args=validate_args, name=name)

        def _forward(self, x):
            return x * tf.exp(self._params.variable("log_scale"))

        def _inverse(self, y):
            return y * tf.exp(-self._params.variable("log_scale"))

        def _forward_log_det_jacobian(self, x):
            log_scale = self._params.variable("log_scale")
            return tf.broadcast_to(tf.reduce_sum(log_scale), tf.shape(x)[:-1])

    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)), Scale(2))
    model = tfp_flows.keras.FlowModel(flow)     # trains `log_scale`
    ```

    Args:
      parameters: the subclass's `dict(locals())`; the layers are added to it.
      layers: a mapping `{parameter key: built Keras layer}`, or a callable
        `layers(scope) -> mapping` run inside the bijector's name scope (build
        new layers there). Keys already in `parameters` are overwritten with
        the layer (e.g. an optional layer argument that was None).
      event_size: size of the (rank-1) event, a positive integer.
      dtype: float32 or float64.
      validate_args: TFP's `validate_args`.
      name: the bijector's name (unique within a chain); default: the class
        name in snake case.
      conditional_size: size of the `conditional_input` it takes (0: none).
      takes_seed: whether `forward`/`inverse` take a stateless `seed=`.
      forward_min_event_ndims: as in `tfb.Bijector` (1 for vectors).

    Raises:
      TypeError: `layers` is not a mapping (or a callable returning one), or a
        value in it is not a Keras 3 layer.
      ValueError: a layer is not built.
    """

    def __init__(self, parameters, layers, event_size, dtype, validate_args=False, name=None,
                 conditional_size=0, forward_min_event_ndims=1, takes_seed=False):
        self._event_size = validation.positive_int(event_size, "event_size")
        dtype = validation.float_dtype(dtype)
        conditional_size = validation.positive_int(conditional_size, "conditional_size",
                                                   allow_zero=True)
        name = name or tfp_compat.default_name(type(self))
        with tf.name_scope(name) as scope:
            # A Keras layer is callable too: it must come in a mapping, not be called here.
            if callable(layers) and not isinstance(layers, (Mapping, keras.layers.Layer)):
                layers = layers(scope)
            owned = self._check_layers(layers)
            parameters = dict(parameters)
            parameters.update(owned)
            super().__init__(forward_min_event_ndims=forward_min_event_ndims, dtype=dtype,
                             validate_args=validate_args, parameters=parameters, name=scope)
            keras_owned.own_keras_layers(self, *owned.values())
        contract.declare(self, conditional_size, takes_seed)

    def _check_layers(self, layers):
        cls = type(self).__name__
        if not isinstance(layers, Mapping):
            raise TypeError(f"{cls}: `layers` must be a mapping {{parameter key: Keras layer}} "
                            "or a callable returning one; got "
                            f"{type(layers).__name__}.")
        for key, layer in layers.items():
            if not isinstance(key, str):
                raise TypeError(f"{cls}: `layers` keys must be strings (parameter names); "
                                f"got {key!r}.")
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(f"{cls}: `layers[{key!r}]` must be a Keras 3 layer "
                                f"(keras.layers.Layer); got {type(layer).__name__}.")
            if not layer.built:
                raise ValueError(f"{cls}: `layers[{key!r}]` (layer {layer.name!r}) must be built "
                                 "before the bijector owns it (call "
                                 "`keras_owned.build_layer(layer, input_shape)`); got an "
                                 "unbuilt layer.")
        return dict(layers)

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}
