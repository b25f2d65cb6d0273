"""Guarded training: `GuardNonFinite` stops at the first non-finite loss, restores, names it."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.internal import keras_owned
from tfp_flows.keras import FlowModel, GuardNonFinite, NonFiniteLossError, fit_distributed, train
from tfp_flows.keras.diagnosis import locate_non_finite

BATCH = 32


def _model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    model = FlowModel.from_flow("real_nvp", event_size=2, num_layers=2, hidden_units=(8,),
                                **kwargs)
    x = np.random.default_rng(seed).standard_normal((256, 2)).astype("float32")
    model.initialize_from_data(x)
    return model, x


class _WeightsAt(keras.callbacks.Callback):
    """The model's weights just before batch `batch` of epoch 0."""

    def __init__(self, batch):
        super().__init__()
        self.batch, self.weights = batch, None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch:
            self.weights = [np.array(w) for w in self.model.get_weights()]


def test_huge_data_value_stops_at_its_step_restores_and_names_the_base_jit():
    model, x = _model()
    x[70, 1] = 1e30  # row 70 is in batch 2: the base density of 1e30 underflows to -inf
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=True)
    before = _WeightsAt(2)
    with pytest.raises(NonFiniteLossError, match=r"at step 2 .*epoch 0, batch 2") as info:
        model.fit(x, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                  callbacks=[before, GuardNonFinite()])
    err = info.value
    assert (err.step, err.epoch, err.batch, err.restored_step) == (2, 0, 2, 2)
    assert not np.isfinite(err.loss)
    assert err.report["rows"]["nonfinite"] == [70]
    assert "base distribution" in err.layer and "rows [70]" in str(err)
    # The weights from before the bad step, exactly; the optimizer step count too.
    for got, want in zip(model.get_weights(), before.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert err.report["nonfinite_weights_after"]  # the bad update did poison them


def test_overflowing_weight_names_its_layer_and_bijector():
    model, x = _model()
    layers = keras_owned.find_keras_layers(model.distribution)
    net = layers[-1]  # the last conditioner's output kernel overflows
    pieces = [p.numpy() for pair in zip(net.kernels, net.biases, strict=True) for p in pair]
    pieces[-2] = np.full(pieces[-2].shape, 1e38, "float32")
    net.set_weights(pieces)
    initial = [np.array(w) for w in model.get_weights()]
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(NonFiniteLossError, match="at step 0") as info:
        model.fit(x, batch_size=BATCH, epochs=1, verbose=0, callbacks=[GuardNonFinite()])
    err = info.value
    assert f"layer '{layers[-1].name}' output (from finite inputs)" in err.layer
    assert err.layer.startswith("bijector ")
    assert err.report["nonfinite_gradients"]
    for got, want in zip(model.get_weights(), initial, strict=True):
        np.testing.assert_array_equal(got, want)


def test_pipeline_guards_by_default_and_keeps_finite_weights():
    x = np.random.default_rng(1).standard_normal((512, 2)).astype("float32")
    with pytest.raises(NonFiniteLossError) as info:
        train.fit("real_nvp", x, flow_kwargs={"event_size": 2, "num_layers": 2,
                                              "hidden_units": (8,)},
                  learning_rate=1e10, epochs=20, batch_size=64)
    err = info.value
    assert err.step >= 1 and err.restored_step is not None, str(err)
    weights = err.model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in weights)
    assert int(err.model.optimizer.iterations.numpy()) == err.restored_step


def test_guard_does_not_change_a_normal_fit():
    losses = []
    for callbacks in ([], [GuardNonFinite()]):
        model, x = _model(seed=3)
        model.compile(keras.optimizers.Adam(1e-2))
        history = model.fit(x, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
                            callbacks=callbacks)
        losses.append((history.history["loss"], [np.array(w) for w in model.get_weights()]))
    assert losses[0][0] == losses[1][0]
    for a, b in zip(losses[0][1], losses[1][1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_saved_every_batch_never_holds_non_finite_weights(tmp_path):
    model, x = _model()
    x[100, 0] = 1e30
    path = os.path.join(tmp_path, "every_batch.weights.h5")
    checkpoint = keras.callbacks.ModelCheckpoint(path, save_weights_only=True, save_freq=1)
    model.compile(keras.optimizers.Adam(1e-2))
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        # The checkpoint is listed first; the guard still runs before it.
        model.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[checkpoint, GuardNonFinite()])
    model.load_weights(path)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_every_n_restores_the_last_copy():
    model, x = _model()
    x[5 * BATCH + 1, 0] = 1e30  # batch 5
    model.compile(keras.optimizers.Adam(1e-2))
    with pytest.raises(NonFiniteLossError, match="at step 5") as info:
        model.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                  callbacks=[GuardNonFinite(every=4)])
    assert info.value.restored_step == 4  # copies before steps 0 and 4
    assert "from the last copy" in str(info.value)


def test_distributed_loop_is_guarded():
    model, x = _model()
    x[40, 1] = 1e30  # batch 1
    model.compile(keras.optimizers.Adam(1e-2))
    with pytest.raises(NonFiniteLossError, match="at step 1") as info:
        fit_distributed(model, x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
                        callbacks=[GuardNonFinite()])
    assert info.value.report["rows"]["nonfinite"] == [40]
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_locate_non_finite_in_a_library_distribution():
    keras.utils.set_random_seed(0)
    model = FlowModel.from_flow("augmented_real_nvp", event_size=2, num_augment=1,
                                num_layers=2, num_samples=4, hidden_units=(4,),
                                objective="elbo")
    x = tf.constant(np.random.default_rng(0).standard_normal((8, 2)).astype("float32"))
    model.initialize_from_data(x)
    assert locate_non_finite(model.distribution, x, objective="elbo") is None
    layer = keras_owned.find_keras_layers(model.distribution)[0]
    pieces = [p.numpy() for pair in zip(layer.kernels, layer.biases, strict=True) for p in pair]
    pieces[-2] = np.full(pieces[-2].shape, np.nan, "float32")  # its output kernel
    layer.set_weights(pieces)
    found = locate_non_finite(model.distribution, x, objective="elbo")
    assert found is not None and "layer '" in found, found


def test_guard_arguments():
    with pytest.raises(ValueError, match="`every` must be a positive integer"):
        GuardNonFinite(every=0)
    with pytest.raises(TypeError, match="`guard` must be True, False or a GuardNonFinite"):
        train.fit("real_nvp", np.zeros((8, 2), "float32"), guard="yes",
                  flow_kwargs={"event_size": 2})
