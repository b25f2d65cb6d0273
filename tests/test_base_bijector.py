"""The `KerasBijector` contract: Keras 3 owns the weights, TFP computes with them."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import bijectors, nets, testing
from tfp_flows.internal import keras_owned, validation
from tfp_flows.keras import FlowModel

tfb = tfp.bijectors
tfd = tfp.distributions


class Scale(bijectors.KerasBijector):
    """`y = x * exp(log_scale) + shift(c)`: the smallest useful subclass.

    With `conditional_size > 0` the shift is a dense map of `conditional_input`
    (a second, built layer), so the bijector is conditional.
    """

    def __init__(self, event_size, conditional_size=0, dtype=tf.float32, validate_args=False,
                 name="scale"):
        parameters = dict(locals())
        event_size = validation.positive_int(event_size, "event_size")
        self._conditional_size = validation.positive_int(
            conditional_size, "conditional_size", allow_zero=True)
        dtype = validation.float_dtype(dtype)

        def make_layers(scope):
            self.scope_seen = scope
            self._params = nets.Parameters(
                {"log_scale": ((event_size,), "zeros")}, dtype=dtype.name,
                name=bijectors.keras_layer_name(scope, "_params"))
            layers = {"params": self._params}
            if self._conditional_size:
                self._net = keras_owned.build_layer(
                    nets.MLP(event_size, (), dtype=dtype.name, zero_init_output=False,
                             name=bijectors.keras_layer_name(scope, "_net")),
                    (None, self._conditional_size))
                layers["net"] = self._net
            return layers

        super().__init__(parameters, make_layers, event_size, dtype,
                         validate_args=validate_args, name=name,
                         conditional_size=self._conditional_size)

    def _shift(self, conditional_input):
        if not self._conditional_size:
            return 0.0
        return self._net(tf.convert_to_tensor(conditional_input, self.dtype))

    def _forward(self, x, conditional_input=None):
        return x * tf.exp(self._params.variable("log_scale")) + self._shift(conditional_input)

    def _inverse(self, y, conditional_input=None):
        return (y - self._shift(conditional_input)) * tf.exp(-self._params.variable("log_scale"))

    def _forward_log_det_jacobian(self, x, conditional_input=None):
        log_scale = self._params.variable("log_scale")
        return tf.broadcast_to(tf.reduce_sum(log_scale), tf.shape(x)[:-1])


class _Given(bijectors.KerasBijector):
    """Owns whatever `layers` it is handed (to test the constructor's checks)."""

    def __init__(self, layers, event_size=2, dtype=tf.float32, name="given"):
        parameters = dict(locals())
        super().__init__(parameters, layers, event_size, dtype, name=name)

    def _forward(self, x):
        return x

    def _inverse(self, y):
        return y

    def _forward_log_det_jacobian(self, x):
        return tf.zeros(tf.shape(x)[:-1], self.dtype)


def _flow(bijector):
    size = bijector.event_size
    return tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(size, bijector.dtype)), bijector)


def test_gradients_reach_the_keras_weight_through_a_transformed_distribution():
    scale = Scale(3)
    flow = _flow(scale)
    weight = scale._params.weight("log_scale")
    x = tf.constant([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]])
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x))
    grad = tape.gradient(loss, weight.value)
    # log p(x) = log N(x * exp(-s)) - sum(s); at s = 0, d(-mean log p)/ds_i = 1 - mean(x_i^2).
    np.testing.assert_allclose(grad.numpy(), 1.0 - np.mean(x.numpy() ** 2, axis=0), rtol=1e-5)


def test_tfp_and_keras_see_the_same_variables():
    scale = Scale(3, conditional_size=2)
    flow = _flow(scale)
    keras_ids = {id(w.value) for layer in scale._keras_layers for w in layer.trainable_weights}
    tfp_ids = {id(v) for v in flow.trainable_variables}
    assert keras_ids and keras_ids == tfp_ids
    assert keras_owned.find_keras_layers(flow) == [scale._params, scale._net]
    model = FlowModel(flow)
    assert {id(w.value) for w in model.trainable_weights} == keras_ids


def test_layers_are_in_parameters_so_tfp_caches_are_kept_apart():
    a, b = Scale(2), Scale(2)
    assert a.parameters["params"] is a._params
    assert set(a.parameters) == {"event_size", "conditional_size", "dtype", "validate_args",
                                 "name", "params"}
    assert a != b
    b._params.weight("log_scale").assign([1.0, -1.0])
    x = tf.constant([1.0, 2.0])
    # Same input tensor, equal constructor arguments: each must compute its own result.
    # (TFP holds cached outputs weakly: keep `y_a` alive so a shared entry would be found.)
    y_a = a.forward(x)
    y_b = b.forward(x)
    np.testing.assert_allclose(y_a.numpy(), [1.0, 2.0])
    np.testing.assert_allclose(y_b.numpy(), [np.e, 2.0 / np.e], rtol=1e-6)


def test_layers_are_built_inside_the_bijector_name_scope():
    with tf.name_scope("outer"):
        scale = Scale(2)
    assert scale.name == "scale"
    assert scale.scope_seen == "outer/scale/"
    assert scale._params.name == "outer_scale_params"


def test_conditional_flag_routes_the_input_through_chains():
    keras.utils.set_random_seed(0)
    plain, cond = Scale(2, name="plain"), Scale(2, conditional_size=1, name="cond")
    assert not bijectors.is_conditional(plain) and bijectors.is_conditional(cond)
    chain = tfb.Chain([plain, cond])
    c = tf.constant([[1.0], [-1.0]])
    x = tf.constant([[0.3, 0.4], [0.3, 0.4]])
    y = chain.forward(x, **bijectors.route(chain, c))
    np.testing.assert_allclose(y.numpy(), cond.forward(x, conditional_input=c).numpy())
    assert not np.allclose(y.numpy()[0], y.numpy()[1])  # the input reached the MLP


def test_subclass_passes_the_generic_bijector_checks():
    testing.run_checks(testing.BijectorCase(lambda dtype: Scale(4, dtype=dtype)), "eager")


def test_event_size_dtype_and_default_name():
    layer = nets.Parameters({"w": ((2,), "zeros")}, dtype="float64")
    given = _Given({"w": layer}, event_size=2, dtype="float64", name=None)
    assert given.event_size == 2 and given.dtype == tf.float64
    assert given.name == "given"  # the class name in snake case (TFP strips the "_")
    assert given.parameters["w"] is layer and given._keras_layers == (layer,)


@pytest.mark.parametrize("make_layers,error,match", [
    (lambda: [nets.Parameters({"w": ((2,), "zeros")})], TypeError,
     r"_Given: `layers` must be a mapping .* got list"),
    (lambda: {"w": tf.Variable([1.0, 2.0])}, TypeError,
     r"_Given: `layers\['w'\]` must be a Keras 3 layer .* got ResourceVariable"),
    (lambda: nets.Parameters({"w": ((2,), "zeros")}), TypeError,
     r"_Given: `layers` must be a mapping .* got Parameters"),
    (lambda: {0: nets.Parameters({"w": ((2,), "zeros")})}, TypeError,
     r"_Given: `layers` keys must be strings .* got 0"),
    (lambda: lambda scope: {"net": nets.MLP(2, (4,))}, ValueError,
     r"_Given: `layers\['net'\]` \(layer 'mlp.*'\) must be built .* got an unbuilt layer"),
    (lambda: lambda scope: None, TypeError, r"`layers` must be a mapping .* got NoneType"),
])
def test_bad_layers_are_rejected(make_layers, error, match):
    with pytest.raises(error, match=match):
        _Given(make_layers())


def test_bad_event_size_and_dtype_are_rejected():
    layer = nets.Parameters({"w": ((2,), "zeros")})
    with pytest.raises(ValueError, match="`event_size` must be a positive integer; got 0"):
        _Given({"w": layer}, event_size=0)
    with pytest.raises(TypeError, match="`dtype` must be float32 or float64"):
        _Given({"w": layer}, dtype="int32")


def test_library_bijectors_use_the_base():
    for cls in (bijectors.ActNorm, bijectors.LULinear, bijectors.KernelCoupling,
                bijectors.ElementwiseAffine, bijectors.ElementwiseSpline,
                bijectors.FunnelLinear, bijectors.ContinuouslyIndexed, bijectors.FFJORD):
        assert issubclass(cls, bijectors.KerasBijector), cls.__name__


@pytest.mark.parametrize("event_size", [3, 16])
def test_lu_linear_is_the_tfp_lu_map_it_wraps(event_size):
    """`LULinear` maps with one `[D, D]` matrix per call; the maps are TFP's
    `ScaleMatvecLU` on the same factors (to rounding: sums in another order), also in
    a batch of rank 2."""
    layer = bijectors.LULinear(event_size, seed=2, dtype=tf.float64)
    lu = layer._lu
    rng = np.random.default_rng(0)
    lu.lower_upper.assign(lu.lower_upper + 0.1 * rng.standard_normal((event_size,) * 2))
    x = tf.constant(rng.standard_normal((2, 5, event_size)))
    np.testing.assert_allclose(layer.forward(x), lu.forward(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.inverse(x), lu.inverse(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.inverse(layer.forward(x)), x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.inverse_log_det_jacobian(x, event_ndims=1),
                               lu.inverse_log_det_jacobian(x, event_ndims=1) * tf.ones([2, 5],
                                                                                        tf.float64))
