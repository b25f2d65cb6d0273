"""FlowModel's train and test functions: one compiled call per step, same numbers as Keras'."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import datasets
from tfp_flows.keras import FlowModel, steps


@pytest.fixture(scope="module")
def moons():
    return datasets.load("moons", num_samples=1000, seed=0)


def _model(steps_per_execution=1, jit_compile=False, run_eagerly=False, seed=7):
    keras.utils.set_random_seed(seed)
    model = FlowModel.from_flow("real_nvp", event_size=2, num_layers=2, hidden_units=(8,))
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution, run_eagerly=run_eagerly)
    return model


def _weights(model):
    return [w.numpy() for w in model.trainable_weights]


@pytest.mark.parametrize("jit_compile", [pytest.param(False, marks=pytest.mark.slow), True])
def test_direct_function_trains_as_keras_own(moons, jit_compile):
    # steps_per_execution=2 makes Keras use its own (iterator-in-graph) function; the
    # same minibatches (no shuffle; 800 rows = 4 batches of 200, an even count) must
    # give the same weights and the same epoch losses.
    direct, keras_own = _model(jit_compile=jit_compile), _model(2, jit_compile=jit_compile)
    histories = []
    for model in (direct, keras_own):
        histories.append(model.fit(moons.train[:800], batch_size=200, epochs=3, shuffle=False,
                                   validation_data=(moons.validation,), verbose=0).history)
    assert direct.train_function.__module__ == steps.__name__
    assert keras_own.train_function.__module__ != steps.__name__
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=2e-5)
    for a, b in zip(_weights(direct), _weights(keras_own), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert direct.optimizer.iterations.numpy() == 12


def test_direct_function_reads_conditional_batches_in_order(moons):
    # x and condition of the same width: a swap of the two in the flat batch the step
    # reads would run and give other numbers, not fail. Same weights as Keras' own function.
    models = []
    for spe in (1, 2):
        keras.utils.set_random_seed(3)
        model = FlowModel.from_flow("real_nvp", event_size=2, num_layers=2, hidden_units=(8,),
                                    conditional_size=2)
        model.compile(keras.optimizers.Adam(1e-2), jit_compile=True, steps_per_execution=spe)
        condition = np.tanh(moons.train[:800, ::-1] * 3.0)
        model.fit(condition, moons.train[:800], batch_size=200, epochs=2, shuffle=False,
                  verbose=0)
        models.append(model)
    assert models[0].train_function.read is not None  # the flat path was taken
    for a, b in zip(_weights(models[0]), _weights(models[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_direct_function_traces_once_across_epochs_and_fits(moons):
    model = _model(jit_compile=True)
    model.fit(moons.train[:800], batch_size=200, epochs=2, verbose=0)
    compiled = model.train_function.compiled
    assert compiled.experimental_get_tracing_count() == 1
    model.fit(moons.train[:800], batch_size=200, epochs=2, verbose=0)
    # A dataset with a partial last batch (1000 = 3 x 300 + 100): traced once for the
    # dataset's spec, batch size unknown, as Keras' own function does.
    data = tf.data.Dataset.from_tensor_slices(moons.train[:1000]).batch(300)
    model.fit(data, epochs=2, verbose=0)
    assert compiled.experimental_get_tracing_count() == 2
    # Back to arrays: the step's concrete function for their spec is looked up again,
    # not retraced, and it is the one being called.
    model.fit(moons.train[:800], batch_size=200, epochs=1, verbose=0)
    assert compiled.experimental_get_tracing_count() == 2
    function = model.train_function
    assert function.concrete is compiled.get_concrete_function(function.spec)
    assert function.spec[0].shape.as_list() == [200, 2]  # (x, None, weights)
    assert model.optimizer.iterations.numpy() == 2 * 4 + 2 * 4 + 2 * 4 + 4


def test_evaluate_uses_direct_function_and_equals_log_prob(moons):
    model = _model()
    model.fit(moons.train, batch_size=200, epochs=1, verbose=0)
    loss = model.evaluate(moons.validation, batch_size=100, verbose=0)
    assert model.test_function.__module__ == steps.__name__
    np.testing.assert_allclose(loss, -np.mean(model.log_prob(moons.validation)), rtol=1e-5)


def test_keras_function_where_direct_would_differ(mirrored_strategy):
    # Keras' own function is kept for several steps per execution, eager runs and
    # several replicas (whose outputs Keras reduces).
    assert steps.direct_step_function(_model(steps_per_execution=3), None) is None
    assert steps.direct_step_function(_model(run_eagerly=True), None) is None
    with mirrored_strategy.scope():
        replicated = _model()
    assert replicated.distribute_strategy.num_replicas_in_sync == 2
    assert steps.direct_step_function(replicated, None) is None
    assert steps.direct_step_function(_model(), lambda data: data) is not None


def test_recompiling_switches_functions(moons):
    model = _model()
    model.fit(moons.train[:400], batch_size=200, epochs=1, verbose=0)
    assert model.train_function.__module__ == steps.__name__
    model.compile(keras.optimizers.Adam(1e-2), steps_per_execution=2)
    model.fit(moons.train[:400], batch_size=200, epochs=1, verbose=0)
    assert model.train_function.__module__ != steps.__name__
