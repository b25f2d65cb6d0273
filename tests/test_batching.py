"""Array data in batches of one shape: padded last batch, exact losses, one trace per step."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import flows
from tfp_flows.keras import FlowModel, GuardNonFinite, batching

RNG = np.random.default_rng(0)
X = RNG.normal(size=(70, 2)).astype(np.float32)       # 70 = 2 * 32 + 6: a partial last batch
X_VAL = RNG.normal(size=(37, 2)).astype(np.float32)   # 37 = 2 * 16 + 5
C = RNG.normal(size=(70, 1)).astype(np.float32)
C_VAL = RNG.normal(size=(37, 1)).astype(np.float32)


def _model(conditional=False, jit=False, lr=1e-3, cls=FlowModel):
    flow = flows.real_nvp(2, num_layers=2, hidden_units=(8,),
                          conditional_size=1 if conditional else 0)
    model = cls(flow)
    model.compile(keras.optimizers.Adam(lr) if lr else keras.optimizers.SGD(0.0),
                  jit_compile=jit)
    return model


def _nll(model, x, c=None, w=None):
    score = model.log_prob(x, conditional_input=c).numpy().astype(np.float64)
    w = np.ones(len(x)) if w is None else np.asarray(w, np.float64)
    return -float(np.sum(w * score) / np.sum(w))


class Counting(FlowModel):
    """Counts the traces of each step and records the batch shapes they were traced with."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "traced", {"train": [], "test": [], "predict": []})

    def _shape(self, data):
        x = keras.utils.unpack_x_y_sample_weight(data)[0]
        return tuple(tf.nest.flatten(x)[0].shape)

    def train_step(self, data):
        self.traced["train"].append(self._shape(data))
        return super().train_step(data)

    def test_step(self, data):
        self.traced["test"].append(self._shape(data))
        return super().test_step(data)

    def predict_step(self, data):
        self.traced["predict"].append(self._shape(data))
        return super().predict_step(data)


@pytest.mark.parametrize("jit", [False, True])
def test_one_trace_per_step_with_partial_batches(jit):
    model = _model(jit=jit, cls=Counting)
    model.fit(X, batch_size=32, epochs=3, validation_data=(X_VAL,), validation_batch_size=16,
              verbose=0)
    model.evaluate(X_VAL, batch_size=16, verbose=0)
    model.fit(X, batch_size=32, epochs=2, verbose=0)  # a second fit reuses the trace
    scores = model.predict(X_VAL, batch_size=16, verbose=0)
    model.predict(X_VAL, batch_size=16, verbose=0)
    # One trace each, with the static batch shape (XLA compiles one program per step).
    assert model.traced == {"train": [(32, 2)], "test": [(16, 2)], "predict": [(16, 2)]}
    assert model.optimizer.iterations.numpy() == 5 * 3
    np.testing.assert_allclose(scores, model.log_prob(X_VAL).numpy(), rtol=1e-5, atol=1e-5)


def _batches(model, x, y=None, steps=None, **kwargs):
    kwargs.setdefault("batch_size", 32)
    ds, _, per_epoch, rest = batching.fit_data(model, x, y, None, kwargs)
    return [tf.nest.map_structure(lambda t: None if t is None else t.numpy(), b)
            for b in ds.take(steps or per_epoch)], per_epoch, rest


def test_passes_are_permutations_padded_with_their_own_rows():
    model = _model()
    batches, per_epoch, _ = _batches(model, X, steps=6)
    assert per_epoch == 3
    for p in range(2):
        rows, weights = [], []
        for x, y, w in batches[3 * p:3 * p + 3]:
            assert x.shape == (32, 2) and y is None and w.shape == (32,)
            rows.append(x[w > 0])
            weights.append(w)
            # pad rows repeat real rows of the same batch
            assert all((x[w > 0] == r).all(axis=1).any() for r in x[w == 0])
        np.testing.assert_array_equal(np.concatenate(weights)[:70], 1.0)
        assert np.concatenate(weights)[70:].sum() == 0 and len(np.concatenate(weights)) == 96
        got = np.concatenate(rows)
        np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(X, axis=0))  # each row once
        if p == 0:
            first = got
    assert not np.array_equal(first, got)  # a new permutation per pass
    keras.utils.set_random_seed(7)
    again = _batches(model, X)[0]
    keras.utils.set_random_seed(7)
    np.testing.assert_array_equal(again[0][0], _batches(model, X)[0][0][0])  # reproducible
    ordered = _batches(model, X, shuffle=False)[0]
    np.testing.assert_array_equal(np.concatenate([x for x, _, _ in ordered])[:70], X)


def test_padded_last_batch_has_the_partial_batch_gradient():
    model = _model()
    x, _, w = _batches(model, X)[0][-1]
    assert w.sum() == 6

    def gradient(loss_fn):
        with tf.GradientTape() as tape:
            loss = loss_fn()
        return tape.gradient(loss, model.trainable_variables)

    padded = gradient(lambda: model.compute_loss(y_pred=model(x, training=True),
                                                 sample_weight=w))
    partial = gradient(lambda: -tf.reduce_mean(model.distribution.log_prob(x[w > 0])))
    for a, b in zip(padded, partial, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_loss_and_val_loss_are_exact_means_over_real_rows():
    model = _model(lr=None)  # SGD(0): the weights stay, so each epoch's loss is checkable
    weights = RNG.uniform(0.5, 2.0, size=70).astype(np.float32)
    history = model.fit(X, batch_size=32, epochs=2, sample_weight=weights, verbose=0,
                        validation_data=(X_VAL,), validation_batch_size=16).history
    np.testing.assert_allclose(history["loss"], _nll(model, X, w=weights), rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], _nll(model, X_VAL), rtol=1e-5)
    split = model.fit(X, batch_size=32, validation_split=0.3, verbose=0).history
    np.testing.assert_allclose(split["loss"], _nll(model, X[:49]), rtol=1e-5)  # Keras' split
    np.testing.assert_allclose(split["val_loss"], _nll(model, X[49:]), rtol=1e-5)
    np.testing.assert_allclose(model.evaluate(X_VAL, batch_size=16, verbose=0),
                               _nll(model, X_VAL), rtol=1e-5)
    np.testing.assert_allclose(
        model.evaluate(X, batch_size=32, sample_weight=weights, verbose=0),
        _nll(model, X, w=weights), rtol=1e-5)


def test_val_loss_after_training_is_the_validation_nll():
    model = _model(jit=True, lr=1e-2)
    history = model.fit(X, batch_size=32, epochs=3, validation_data=(X_VAL,), verbose=0)
    np.testing.assert_allclose(history.history["val_loss"][-1], _nll(model, X_VAL), rtol=1e-5)


def test_conditional_forms():
    model = _model(conditional=True, lr=None)
    history = model.fit(C, X, batch_size=32, validation_data=(C_VAL, X_VAL),
                        validation_batch_size=16, verbose=0).history
    np.testing.assert_allclose(history["loss"], _nll(model, X, C), rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], _nll(model, X_VAL, C_VAL), rtol=1e-5)
    as_dict = {"x": X_VAL, "conditional_input": C_VAL}
    np.testing.assert_allclose(model.evaluate(as_dict, batch_size=16, verbose=0),
                               _nll(model, X_VAL, C_VAL), rtol=1e-5)
    np.testing.assert_allclose(model.evaluate(C_VAL, X_VAL, batch_size=16, verbose=0),
                               _nll(model, X_VAL, C_VAL), rtol=1e-5)
    scores = model.predict(as_dict, batch_size=16, verbose=0)
    assert scores.shape == (37,)
    np.testing.assert_allclose(scores, model.log_prob(X_VAL, conditional_input=C_VAL).numpy(),
                               rtol=1e-5, atol=1e-5)
    dict_history = model.fit({"x": X, "conditional_input": C}, batch_size=32, verbose=0).history
    np.testing.assert_allclose(dict_history["loss"], _nll(model, X, C), rtol=1e-5)


def test_steps_per_epoch_runs_on_into_the_next_pass():
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "ran out of data"
        model.fit(X, batch_size=32, steps_per_epoch=5, epochs=2, verbose=0)
    assert model.optimizer.iterations.numpy() == 10


def test_batch_larger_than_the_data_is_one_unpadded_batch():
    model = _model(cls=Counting, lr=None)
    history = model.fit(X_VAL, batch_size=64, verbose=0).history
    assert model.traced["train"] == [(37, 2)]
    np.testing.assert_allclose(history["loss"], _nll(model, X_VAL), rtol=1e-5)


def test_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="`class_weight` must be None: a density has no"):
        model.fit(X, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"same number of rows.*sample_weight"):
        model.fit(X, sample_weight=np.ones(3), verbose=0)
    with pytest.raises(ValueError, match=r"`validation_split` must be a number in \(0, 1\)"):
        model.fit(X, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_split=0.999` of 70 rows leaves no"):
        model.fit(X, validation_split=0.999, verbose=0)
    with pytest.raises(TypeError, match="`batch_size` must be a positive integer"):
        model.fit(X, batch_size=2.5, verbose=0)


def test_datasets_keep_their_batches():
    model = _model(cls=Counting)
    model.fit(tf.data.Dataset.from_tensor_slices(X).batch(32), epochs=1, verbose=0)
    assert model.traced["train"] == [(None, 2)]  # the user's batching, as Keras passes it


def test_guard_still_scores_the_training_data():
    model = _model()
    guard = GuardNonFinite()
    model.fit(X, batch_size=32, callbacks=[guard], verbose=0)
    assert guard.data is X


def test_mirrored_strategy_keeps_keras_batching(mirrored_strategy):
    with mirrored_strategy.scope():
        model = _model(lr=None)
    history = model.fit(X, batch_size=32, verbose=0).history
    np.testing.assert_allclose(history["loss"], _nll(model, X), rtol=1e-4)


def test_fit_distributed_pads_arrays_the_same_way():
    from tfp_flows.keras import distributed_data, fit_distributed
    source = distributed_data.Arrays({"x": X}, 32, True, 0, "x")
    batches = list(source.global_batches().take(3))
    assert [tuple(b["x"].shape) for b in batches] == [(32, 2)] * 3
    assert sum(float(tf.reduce_sum(b["sample_weight"])) for b in batches) == 70
    model = _model(lr=None)
    history = fit_distributed(model, X, batch_size=32, epochs=1, verbose=0,
                              validation_data=(X_VAL,)).history
    np.testing.assert_allclose(history["loss"], _nll(model, X), rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], _nll(model, X_VAL), rtol=1e-5)


def test_cpu_batches_are_gathered_on_demand_not_prefetched():
    # On CPU the step uses every core: no prefetching thread (none injected either), for
    # the training stream and for evaluate's / predict's finite datasets.
    model = _model()
    train = batching.fit_data(model, X, None, None, {"batch_size": 32})[0]
    evaluation = batching.evaluation_data(model, X, None, None, 32)[0]
    for ds in (train, evaluation):
        assert ds.options().experimental_optimization.inject_prefetch is False
        graph = ds._as_serialized_graph().numpy().decode("latin-1")
        assert "PrefetchDataset" not in graph and "MapDataset" in graph


@pytest.mark.parametrize("chunk", [1, 5, None])  # batches gathered per call (None: default)
def test_pass_p_is_the_stateless_shuffle_of_seed_and_p_across_index_calls(chunk, monkeypatch):
    # 70 rows in batches of 32: 3 batches a pass, 22 passes per call of the index function;
    # 25 passes cross into the second call. Pass p is stateless_shuffle(range(n), (s, p)),
    # however many batches' rows are gathered at once (12 bytes a row here: 2 + 1 weight).
    n, batch, seed = len(X), 32, 1234
    if chunk:
        monkeypatch.setattr(batching, "_CHUNK_BYTES", chunk * batch * 12)
    ds, steps = batching._stream(X, None, batch, True, seed)
    assert steps == 3
    batches = list(ds.take(25 * steps).as_numpy_iterator())
    for p in range(25):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), tf.constant([seed, p], tf.int64)).numpy()
        x = np.concatenate([b[0] for b in batches[steps * p:steps * p + steps]])
        w = np.concatenate([b[2] for b in batches[steps * p:steps * p + steps]])
        np.testing.assert_array_equal(x[:n], X[order])
        np.testing.assert_array_equal(w, np.r_[np.ones(n), np.zeros(steps * batch - n)])


def test_stream_traces_one_shuffle_not_one_per_pass():
    # Tracing a shuffle per pass (22 here) cost about a second per `fit` call.
    ds = batching._stream(X, None, 32, True, 0)[0]
    graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())
    ops = [node.op for f in graph.library.function for node in f.node_def]
    assert ops.count("StatelessShuffle") == 1
