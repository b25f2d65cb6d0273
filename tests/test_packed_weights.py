"""Networks keep their kernels and biases in one packed weight; older saves still load."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_flows.keras  # noqa: F401  (registers FlowModel for loading)
from tfp_flows.nets import MADE, MLP
from tfp_flows.nets.mlp import PackedWeights

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize("make", [lambda: MLP(3, (5, 4), conditional_size=2),
                                  lambda: MADE(3, 2, (6,), conditional_size=2)])
def test_one_weight_per_network_and_pieces_are_its_slices(make):
    layer = make()
    out = layer(tf.ones([7, 3]), tf.ones([7, 2]))
    assert len(layer.trainable_weights) == 1
    flat = layer.trainable_weights[0]
    pieces = [*layer.kernels, *layer.biases]
    assert flat.shape[0] == sum(int(np.prod(p.shape)) for p in pieces)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tf.ones([7, 3]), tf.ones([7, 2])) ** 2)
    assert tape.gradient(loss, flat.value).shape == flat.shape
    assert out.shape[0] == 7


def test_initialisation_per_piece():
    keras.utils.set_random_seed(0)
    layer = MLP(2, (64,))
    layer(tf.ones([1, 8]))
    k0, k1 = (k.numpy() for k in layer.kernels)
    b0, b1 = (b.numpy() for b in layer.biases)
    limit = np.sqrt(6.0 / (8 + 64))  # Glorot uniform on the hidden kernel
    assert 0.5 * limit < np.abs(k0).max() <= limit
    assert not np.any(k1) and not np.any(b0) and not np.any(b1)  # zero output layer, biases


def test_loads_a_store_with_one_variable_per_tensor():
    layer = MLP(2, (3,))
    layer(tf.ones([1, 4]))
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (3, 2), (2,)]
    store = {str(i): rng.standard_normal(s).astype("float32") for i, s in enumerate(shapes)}
    layer.load_own_variables(store)
    for piece, value in zip([layer.kernels[0], layer.biases[0], layer.kernels[1],
                             layer.biases[1]], store.values(), strict=True):
        np.testing.assert_array_equal(piece.numpy(), value)
    with pytest.raises(ValueError):  # neither layout: Keras' own error
        layer.load_own_variables({"0": np.zeros(3, "float32"), "1": np.zeros(1, "float32")})
    # set_weights takes the pieces as before packing, or the packed vector (get_weights).
    layer.set_weights([2 * v for v in store.values()])
    np.testing.assert_array_equal(layer.kernels[1].numpy(), 2 * store["2"])
    layer.set_weights([np.zeros(23, "float32")])  # 4 x 3 + 3 + 3 x 2 + 2
    assert not np.any(layer.get_weights()[0])
    with pytest.raises(ValueError):
        layer.set_weights([np.zeros((4, 3), "float32")])


@pytest.mark.parametrize("name", ["real_nvp", "maf", "neural_spline"])
def test_models_saved_before_packing_load_with_the_same_density(name):
    expected = np.load(os.path.join(DATA, "unpacked_log_prob.npz"))
    model = keras.saving.load_model(os.path.join(DATA, f"unpacked_{name}.keras"))
    np.testing.assert_allclose(model.distribution.log_prob(expected["x"]).numpy(),
                               expected[name], rtol=1e-5, atol=1e-5)


def test_packed_weights_validate_nothing_silently():
    layer = keras.layers.Layer()
    packed = PackedWeights(layer, [(2, 3), (3,)], ["ones", "zeros"])
    assert packed.load_into({"0": np.zeros((3, 2))}) is False  # wrong count
    assert packed.load_into({"0": np.zeros((3, 2)), "1": np.zeros(3)}) is False  # wrong shape
    kernel, bias = packed.unpack()
    np.testing.assert_array_equal(kernel.numpy(), np.ones((2, 3)))
    np.testing.assert_array_equal(bias.numpy(), np.zeros(3))
