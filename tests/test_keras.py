"""The Keras 3 training path: FlowModel with model.fit, jit, tf.distribute, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows as tff
from tfp_flows import datasets
from tfp_flows.keras import FlowModel, ReverseKL

tfd, tfb = tfp.distributions, tfp.bijectors


@pytest.fixture(scope="module")
def moons():
    return datasets.load("moons", num_samples=1024, seed=0)


def _small(name, **kwargs):
    return dict(event_size=2, num_layers=2, hidden_units=(16,), **kwargs)


@pytest.mark.parametrize("jit", [False, True])
def test_fit_improves_validation_nll(moons, jit):
    model = FlowModel.from_flow("real_nvp", **_small("real_nvp"))
    model.compile(keras.optimizers.Adam(5e-3), jit_compile=jit)
    before = model.evaluate(moons.validation, batch_size=256, verbose=0)
    history = model.fit(moons.train, batch_size=128, epochs=4, verbose=0,
                        validation_data=(moons.validation,))
    after = history.history["val_loss"][-1]
    # The base N(0, I) scores ~2.8 nats on moons; a few epochs must gain > 0.3 nats.
    assert after < before - 0.3, (before, after)
    # val_loss is the validation NLL: it equals -mean log_prob.
    nll = -float(np.mean(model.log_prob(moons.validation)))
    np.testing.assert_allclose(after, nll, rtol=1e-4)


def test_fit_from_tf_data_with_callbacks(moons, tmp_path):
    model = FlowModel.from_flow("glow", **_small("glow"))
    model.initialize_from_data(moons.train[:512])
    model.compile(keras.optimizers.Adam(1e-3))
    train = tf.data.Dataset.from_tensor_slices(moons.train).batch(128)
    val = tf.data.Dataset.from_tensor_slices(moons.validation).batch(128)
    ckpt = str(tmp_path / "best.keras")
    history = model.fit(train, validation_data=val, epochs=3, verbose=0, callbacks=[
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(ckpt, monitor="val_loss", save_best_only=True)])
    assert len(history.history["val_loss"]) >= 2
    restored = keras.models.load_model(ckpt)
    assert isinstance(restored, FlowModel)


@pytest.mark.parametrize("flow", ["real_nvp", "glow", "maf", "neural_spline"])
def test_save_load_reproduces_log_prob_exactly(moons, flow, tmp_path):
    model = FlowModel.from_flow(flow, **_small(flow))
    model.initialize_from_data(moons.train[:256])
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    model.compile(keras.optimizers.Adam(1e-3))
    expected = model.log_prob(moons.test).numpy()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.log_prob(moons.test).numpy(), expected)
    # Data-dependent init must not run again on a restored model.
    loaded.initialize_from_data(moons.train[:256] * 3.0)
    np.testing.assert_array_equal(loaded.log_prob(moons.test).numpy(), expected)


def test_resume_from_checkpoint_continues_training(moons, tmp_path):
    model = FlowModel.from_flow("real_nvp", **_small("real_nvp"))
    model.compile(keras.optimizers.Adam(5e-3))
    model.fit(moons.train, batch_size=128, epochs=2, verbose=0)
    path = str(tmp_path / "ckpt.keras")
    model.save(path)
    resumed = keras.models.load_model(path)
    assert int(resumed.optimizer.iterations) == int(model.optimizer.iterations) > 0
    history = resumed.fit(moons.train, batch_size=128, epochs=4, initial_epoch=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert int(resumed.optimizer.iterations) == 2 * int(model.optimizer.iterations)


def test_save_weights_for_object_built_models(moons, tmp_path):
    def build():
        return FlowModel(tff.flows.real_nvp(2, num_layers=2, hidden_units=(8,)))
    model = build()
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    other = build()
    other.load_weights(path)
    np.testing.assert_array_equal(other.log_prob(moons.test), model.log_prob(moons.test))


@pytest.mark.parametrize("flow", ["real_nvp", "glow", "maf", "neural_spline"])
def test_every_trainable_weight_gets_a_gradient(moons, flow):
    model = FlowModel.from_flow(flow, **_small(flow))
    model.initialize_from_data(moons.train[:256])
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    x = tf.constant(moons.train[:64])
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y_pred=model(x, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    assert model.trainable_weights
    for w, g in zip(model.trainable_weights, grads, strict=True):
        assert g is not None, w.path
        assert np.any(np.asarray(g) != 0), w.path


@pytest.mark.parametrize("flow", ["maf", "glow"])
def test_mirrored_strategy_over_two_logical_devices(moons, flow, mirrored_strategy):
    # jit_compile=False: Keras 3 itself cannot XLA-compile a step over *logical* CPU
    # replicas (a plain Dense model fails the same way); see docs/scaling.md.
    strategy = mirrored_strategy
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = FlowModel.from_flow(flow, **_small(flow))
        model.compile(keras.optimizers.Adam(5e-3))
    first = model.evaluate(moons.validation, batch_size=256, verbose=0)
    # The replica losses are scaled so the reported loss is the NLL, not twice it.
    np.testing.assert_allclose(first, -np.mean(model.log_prob(moons.validation)), rtol=1e-4)
    model.fit(moons.train, batch_size=128, epochs=3, verbose=0)
    assert model.evaluate(moons.validation, batch_size=256, verbose=0) < first - 0.2


def test_replicas_draw_different_noise(mirrored_strategy):
    strategy = mirrored_strategy

    def noise():
        seed = tff.keras.objectives.seed_for_step(0, 5)
        return tf.random.stateless_normal([3], seed)

    per_replica = strategy.experimental_local_results(strategy.run(noise))
    assert not np.allclose(per_replica[0], per_replica[1])


def _banana_log_prob(x):
    # Twisted Gaussian (Haario et al.): y2 = x2 + b (x1^2 - 100); volume preserving, so Z = 1.
    x1, x2 = x[..., 0] * 10.0, x[..., 1] + 0.1 * ((x[..., 0] * 10.0) ** 2 - 100.0)
    return (tfd.Normal(0.0, 10.0).log_prob(x1) + tfd.Normal(0.0, 1.0).log_prob(x2)
            + tf.math.log(10.0))


def test_reverse_kl_fits_an_unnormalised_density():
    model = FlowModel(tff.flows.real_nvp(2, num_layers=4, hidden_units=(32, 32)),
                      objective=ReverseKL(_banana_log_prob, num_samples=256))
    model.compile(keras.optimizers.Adam(3e-3), jit_compile=True)
    history = model.fit(steps_per_epoch=100, epochs=3, verbose=0)
    # loss = KL(q || p) - log Z with Z = 1 here: the base N(0, I) starts ~5 nats away
    # (first-epoch mean ~18); 300 steps must bring the mean of the last epoch below 1.
    assert history.history["loss"][-1] < 1.0, history.history["loss"]
    assert history.history["loss"][-1] >= -0.05  # KL >= 0 up to Monte Carlo noise


def test_reverse_kl_needs_steps_per_epoch():
    model = FlowModel(tff.flows.real_nvp(2, num_layers=1, hidden_units=(4,)),
                      objective=ReverseKL(_banana_log_prob))
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.fit(epochs=1)


def test_conditional_inputs_pass_through():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((512, 1)).astype("float32")
    x = (rng.standard_normal((512, 2)) * 0.1 + 2.0 * c).astype("float32")
    model = FlowModel(tff.flows.real_nvp(2, num_layers=2, hidden_units=(16,), conditional_size=1))
    model.compile(keras.optimizers.Adam(1e-2))
    inputs = {"x": x, "conditional_input": c}
    before = model.evaluate(inputs, batch_size=128, verbose=0)
    model.fit(inputs, batch_size=128, epochs=5, verbose=0)
    assert model.evaluate(inputs, batch_size=128, verbose=0) < before - 0.5
    # The density depends on the condition.
    lp_right = model.log_prob(x[:8], conditional_input=c[:8])
    lp_wrong = model.log_prob(x[:8], conditional_input=-c[:8])
    assert np.mean(lp_right) > np.mean(lp_wrong)


def test_actnorm_initialisation_standardises_the_data(moons):
    dist = tff.flows.glow(2, num_layers=1, hidden_units=(4,))
    model = FlowModel(dist)
    model.initialize_from_data(moons.train * 5.0 + 3.0)
    z = dist.bijector.bijectors[0].inverse(tf.constant(moons.train * 5.0 + 3.0))
    np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.std(z, 0), 1.0, atol=1e-3)


# -- errors -------------------------------------------------------------------

def test_wrong_event_size_is_rejected(moons):
    model = FlowModel.from_flow("real_nvp", **_small("real_nvp"))
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match=r"FlowModel: expected inputs of shape \[\.\.\., 2\]; "
                                         r"got shape \(16, 3\)\."):
        model.fit(np.zeros((16, 3), "float32"), epochs=1, verbose=0)


def test_non_finite_data_is_rejected_under_validate_args(moons):
    model = FlowModel.from_flow("real_nvp", validate_args=True, **_small("real_nvp"))
    model.compile(keras.optimizers.Adam(1e-3))
    bad = moons.train[:64].copy()
    bad[3, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be finite"):
        model.fit(bad, batch_size=64, epochs=1, verbose=0)


def test_untracked_variables_are_rejected():
    dist = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), tfb.Shift(tf.Variable(0.0)))
    with pytest.raises(TypeError, match="no Keras layer owns"):
        FlowModel(dist)


def test_non_distribution_is_rejected():
    with pytest.raises(TypeError, match="must be a TFP distribution"):
        FlowModel(object())


def test_unknown_objective_and_flow():
    with pytest.raises(ValueError, match="Unknown objective 'kl'"):
        FlowModel(tff.flows.real_nvp(2, num_layers=1), objective="kl")
    with pytest.raises(ValueError, match="Unknown flow 'nope'"):
        FlowModel.from_flow("nope")


def test_bound_objective_needs_a_bound(moons):
    model = FlowModel(tff.flows.real_nvp(2, num_layers=1), objective="elbo")
    with pytest.raises(TypeError, match="needs a distribution with a `elbo` method"):
        model(moons.train[:4])


@pytest.mark.parametrize("kwargs,match", [
    (dict(event_size=0), "`event_size` must be a positive integer; got 0"),
    (dict(event_size=1), "Coupling flows need `event_size` >= 2; got 1"),
    (dict(event_size=2, num_layers=-1), "`num_layers` must be a positive integer; got -1"),
    (dict(event_size=2, hidden_units=(8, 0)), r"`hidden_units\[1\]` must be a positive integer"),
    (dict(event_size=2, dtype="int32"), "`dtype` must be float32 or float64; got int32"),
])
def test_flow_argument_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tff.flows.real_nvp(**kwargs)


def test_dict_inputs_need_x():
    model = FlowModel(tff.flows.real_nvp(2, num_layers=1))
    with pytest.raises(ValueError, match="must have key 'x'"):
        model({"data": np.zeros((2, 2), "float32")})
