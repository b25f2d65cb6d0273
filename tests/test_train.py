"""The one training pipeline (`tfp_flows.keras.train`: `fit`, `evaluate`, `count_parameters`)."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import evaluation
from tfp_flows.flows import real_nvp
from tfp_flows.keras import FlowModel
from tfp_flows.keras.train import DEFAULT_INIT_ROWS, count_parameters, evaluate
from tfp_flows.keras.train import fit as train

TINY = {"num_layers": 2, "hidden_units": (8,)}
# 2 couplings of an MLP 1 -> 8 -> 2: 2 * (8 + 8 + 16 + 2).
TINY_PARAMS = 2 * (1 * 8 + 8 + 8 * 2 + 2)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 2)) * [1.0, 0.5] + [1.0, -1.0]).astype(np.float32)


def test_train_by_name_then_evaluate_and_count():
    x, x_val, x_test = _data(256), _data(64, 1), _data(64, 2)
    result = train("real_nvp", x, x_val, flow_kwargs={"event_size": 2, **TINY}, epochs=2,
                   batch_size=64, learning_rate=1e-2, seed=3)
    assert isinstance(result.model, FlowModel)
    assert result.epochs_run == 2 and len(result.history["val_loss"]) == 2
    assert result.steps == 2 * 4 and len(result.epoch_seconds) == 2
    assert result.seconds >= sum(result.epoch_seconds) * 0.99
    assert result.compile_seconds == result.epoch_seconds[0] > 0
    assert result.train_seconds == pytest.approx(result.epoch_seconds[1])
    assert result.median_epoch_seconds == pytest.approx(result.epoch_seconds[1])
    assert result.best_epoch in (1, 2)
    nll, kind = evaluate(result.model, x_test)
    assert kind == "exact" and np.isfinite(nll)
    # One home for test NLL: evaluate is minus evaluation.mean_log_prob.
    mean, _ = evaluation.mean_log_prob(result.model, x_test)
    assert nll == pytest.approx(-mean)
    # ... and equals the eager log-density.
    direct = -np.mean(result.model.log_prob(tf.constant(x_test)).numpy())
    assert nll == pytest.approx(direct, rel=1e-5)
    assert count_parameters(result.model) == TINY_PARAMS
    assert count_parameters(result.model.distribution) == TINY_PARAMS
    assert count_parameters(result.model.trainable_weights) == TINY_PARAMS


def test_same_seed_same_result_and_training_lowers_the_loss():
    x, x_val = _data(256), _data(64, 1)
    kwargs = dict(flow_kwargs={"event_size": 2, **TINY}, epochs=2, batch_size=64,
                  learning_rate=1e-2)
    a = train("real_nvp", x, x_val, seed=5, **kwargs)
    b = train("real_nvp", x, x_val, seed=5, **kwargs)
    assert a.history == b.history
    before = evaluate(train("real_nvp", x, x_val, seed=5, **{**kwargs, "epochs": 1},
                            steps_per_epoch=1).model, x_val).nll
    assert a.history["val_loss"][-1] < before


def test_initialises_from_the_first_init_rows_before_compile(monkeypatch):
    seen = []
    original = FlowModel.initialize_from_data

    def spy(self, x, conditional_input=None):
        seen.append((len(x), getattr(self, "optimizer", None) is None))
        return original(self, x, conditional_input)

    monkeypatch.setattr(FlowModel, "initialize_from_data", spy)
    x = _data(DEFAULT_INIT_ROWS + 100)
    kwargs = dict(flow_kwargs={"event_size": 2, **TINY}, steps_per_epoch=1, batch_size=32)
    train("real_nvp", x, **kwargs)
    train("real_nvp", x, init_rows=10, **kwargs)
    train("real_nvp", x, init_rows=None, **kwargs)
    train("real_nvp", x, init_rows=0, **kwargs)
    assert DEFAULT_INIT_ROWS == 1024
    assert seen == [(1024, True), (10, True), (len(x), True)]


def test_early_stopping_restores_best_weights_and_checkpoints(tmp_path):
    x, x_val = _data(256), _data(64, 1)
    path = str(tmp_path / "best.weights.h5")
    # A huge learning rate makes later epochs worse: early stopping must restore the best.
    result = train("real_nvp", x, x_val, flow_kwargs={"event_size": 2, **TINY}, epochs=4,
                   batch_size=64, learning_rate=0.3, patience=1, checkpoint=path, seed=0)
    best = min(result.history["val_loss"])
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1
    assert evaluate(result.model, x_val).nll == pytest.approx(best, rel=1e-4, abs=1e-4)
    assert (tmp_path / "best.weights.h5").stat().st_size > 0


def test_conditional_inputs_are_routed():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(128, 1)).astype(np.float32)
    x = (c + 0.1 * rng.normal(size=(128, 2))).astype(np.float32)
    flow = real_nvp(2, conditional_size=1, **TINY)
    result = train(flow, x, (x[:32], c[:32]), conditional_input=c, epochs=1, batch_size=32)
    nll, kind = evaluate(result.model, x[:32], c[:32])
    expected = -np.mean(result.model.log_prob(x[:32], conditional_input=c[:32]).numpy())
    assert kind == "exact" and nll == pytest.approx(expected, rel=1e-5)
    # The validation condition may also come as its own argument: same validation loss.
    again = train(flow, x, x[:32], conditional_input=c, validation_conditional_input=c[:32],
                  epochs=1, batch_size=32, init_rows=0)
    assert np.isfinite(again.history["val_loss"][0])
    with pytest.raises(ValueError, match=r"Give the validation condition once"):
        train(flow, x, (x[:32], c[:32]), conditional_input=c, validation_conditional_input=c)
    with pytest.raises(ValueError, match=r"`conditional_input` must have one row per data row"):
        train(flow, x, conditional_input=c[:5])


def test_auto_objective_and_given_model():
    model = FlowModel(real_nvp(2, **TINY))
    result = train(model, _data(64), objective="auto", steps_per_epoch=1, batch_size=32)
    assert result.model is model and type(model.objective).__name__ == "MaximumLikelihood"


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(epochs=0), ValueError, r"`epochs` must be a positive integer; got 0"),
    (dict(batch_size=1.5), TypeError, r"`batch_size` must be a positive integer; got 1.5"),
    (dict(init_rows=-1), ValueError, r"`init_rows` must be a non-negative integer; got -1"),
    (dict(patience=2), ValueError, r"`patience` .* needs `validation_data`"),
    (dict(checkpoint="best.h5"), ValueError, r"`checkpoint` must be a path ending in "
                                             r"'.weights.h5'; got 'best.h5'"),
    (dict(validation_data=(1, 2, 3)), ValueError, r"`validation_data` must be an array"),
    (dict(validation_conditional_input=np.zeros([4, 1])), ValueError,
     r"`validation_conditional_input` needs `validation_data`"),
    (dict(optimizer="adam", clipnorm=1.0), ValueError, r"`clipnorm` applies to the default Adam"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        train(real_nvp(2, **TINY), _data(32), **kwargs)


def test_bad_model_and_counting_errors():
    with pytest.raises(TypeError, match=r"`model` must be a FlowModel, a registered flow name"):
        train(3, _data(8))
    with pytest.raises(ValueError, match=r"`flow_kwargs` only applies to a flow given by name"):
        train(real_nvp(2, **TINY), _data(8), flow_kwargs={"num_layers": 1})
    with pytest.raises(TypeError, match=r"`obj` must be a Keras model or layer"):
        count_parameters(3)
    with pytest.raises(ValueError, match=r"`conditional_input` must have one row per row"):
        evaluation.log_prob_values(FlowModel(real_nvp(2, **TINY)), _data(4),
                                   conditional_input=np.zeros([3, 1]))


def test_mean_of_batches():
    x = np.arange(10, dtype=np.float32)[:, None]
    assert evaluation.mean_of_batches(lambda t: t[:, 0] * 2, x, batch_size=3) == 9.0


def test_log_prob_values_reuses_one_compiled_function_per_model():
    model = FlowModel(real_nvp(2, **TINY))
    x = _data(300)
    first, kind = evaluation.log_prob_values(model, x, batch_size=128)
    fn = evaluation._batched_log_prob(model.distribution, {}, False)
    traces = fn.experimental_get_tracing_count()
    again, _ = evaluation.log_prob_values(model, x, batch_size=128)
    assert kind == "exact"
    np.testing.assert_array_equal(first, again)
    assert evaluation._batched_log_prob(model.distribution, {}, False) is fn
    assert fn.experimental_get_tracing_count() == traces  # no new trace on the second call
    assert evaluation._batched_log_prob(model.distribution, {}, True) is not fn  # jit: its own
