"""Every private TFP / TF / Keras name the library relies on, checked on the installed versions.

If one of these fails after an upgrade, `tfp_flows/internal/tfp_compat.py` is the
one module to adapt.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import nets
from tfp_flows.internal import tfp_compat

tfb = tfp.bijectors
tfd = tfp.distributions


class _HoldsLayer(tfb.Bijector):
    """A TFP bijector holding a Keras layer (not a CompositeTensor), like ours."""

    def __init__(self):
        self.layer = nets.Parameters({"a": ((2,), "zeros")})
        super().__init__(forward_min_event_ndims=1, parameters={"layer": self.layer},
                         name="holds_layer")

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _forward(self, x):
        return x


def test_composites_of_non_composite_parts_are_the_private_types():
    b = _HoldsLayer()
    chain = tfb.Chain([b, tfb.Shift(1.0)])
    assert isinstance(chain, tfp_compat.CHAIN_TYPES)
    assert isinstance(tfb.Invert(b), tfp_compat.INVERT_TYPES)
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)), chain)
    assert isinstance(dist, tfp_compat.TRANSFORMED_TYPES)
    # The public classes are subclasses of the private bases, so both kinds pass.
    assert isinstance(tfb.Chain([tfb.Shift(1.0)]), tfp_compat.CHAIN_TYPES)


def test_default_name_is_snake_case():
    assert tfp_compat.default_name(type("ActNorm", (), {})) == "act_norm"
    assert tfp_compat.default_name(type("FFJORD", (), {})) == "ffjord"


def test_bijector_cache_holds_forward_attributes():
    b = tfb.Shift(1.0)
    x = tf.constant([1.0, 2.0])
    cache = tfp_compat.bijector_cache(b)
    cache.forward_attributes(x)["ildj"] = tf.constant(3.0)
    assert float(cache.forward_attributes(x)["ildj"]) == 3.0
    cache.clear()


def test_flatten_module_finds_keras_layers_in_lists_and_attributes():
    b = _HoldsLayer()
    chain = tfb.Chain([b, tfb.Shift(1.0)])
    found = tfp_compat.flatten_module(chain, lambda v: isinstance(v, keras.layers.Layer))
    assert any(layer is b.layer for layer in found)


def test_replica_loss_scale_is_one_outside_a_strategy():
    assert tfp_compat.replica_loss_scale() == 1.0


def test_flat_reader_reads_flat_tensors_in_nest_order():
    a, b = tf.constant([[1.0, 2.0]] * 3), tf.constant([[3.0, 4.0]] * 3)
    element = ({"x": a, "conditional_input": b}, None, tf.ones([3]))
    ds = tf.data.Dataset.from_tensors(element).repeat(2)
    read = tfp_compat.flat_reader(iter(ds))
    # conditional_input, x, weight: tf.nest order (sorted keys), the None left out
    expected = [t for t in tf.nest.flatten(next(iter(ds))) if t is not None]
    for _ in range(2):
        got = read()
        for g, e in zip(got, expected, strict=True):
            tf.debugging.assert_equal(g, e)
    try:
        read()
    except StopIteration:
        pass
    else:
        raise AssertionError("the end of the dataset must raise StopIteration")


def test_flat_reader_is_none_where_elements_are_not_plain_tensors():
    ragged = tf.data.Dataset.from_tensors(tf.ragged.constant([[1.0], [2.0, 3.0]]))
    assert tfp_compat.flat_reader(iter(ragged)) is None
    assert tfp_compat.flat_reader(iter([1.0, 2.0])) is None  # not a tf.data iterator
    assert tfp_compat.flat_reader(iter(tf.data.Dataset.range(3))) is not None


def test_call_flat_equals_structured_call():
    f = tf.function(lambda d: d[0]["x"] * 2.0 + d[2])
    spec = ({"x": tf.TensorSpec([2])}, None, tf.TensorSpec([2]))
    concrete = f.get_concrete_function(spec)
    x, w = tf.constant([1.0, 2.0]), tf.constant([10.0, 20.0])
    tf.debugging.assert_equal(tfp_compat.call_flat(concrete, [x, w]), concrete(({"x": x}, None, w)))
