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
