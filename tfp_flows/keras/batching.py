"""Fixed-shape minibatches for array data: `FlowModel.fit` / `evaluate` / `predict` compile once.

Keras slices NumPy arrays and tensors into batches of `batch_size` rows and a
last partial batch of `N mod batch_size` rows: a new shape, so with
`jit_compile=True` XLA compiles the step a second time (and validation and
`predict` once more each). For array data, `FlowModel` builds the batches
itself, as a `tf.data.Dataset` Keras consumes as is, and every batch has the
same static shape `[batch_size, ...]`:

* **The last batch is padded** to `batch_size` rows by repeating its own real
  rows, with sample weight 0 (pad rows are finite data, so nothing non-finite
  enters the step). The loss is the weighted mean `sum(w * score) / sum(w)`
  (`FlowModel.compute_loss`), so the padded batch has the loss and gradient of
  the partial batch Keras would have drawn: the mean over its real rows.
  A user `sample_weight` multiplies in. `FlowModel`'s train and test steps
  weight the epoch's loss tracker by `sum(w)` (Keras weights it by the rows of
  the batch, which would count pad rows), so the epoch's `loss` and `val_loss`
  are the exact (weighted) mean over the real rows.
* **Training order**: one permutation of the rows per pass, drawn by
  `tf.random.experimental.stateless_shuffle` with seed `(s, pass)`, `s` drawn
  once per `fit` call from Python's `random` (so the order is reproducible
  under `keras.utils.set_random_seed` and new on every call, as Keras' own
  shuffle). The batches are consecutive slices of the permuted rows, exactly
  Keras' minibatches. `shuffle=False` keeps the rows' order.
* **The stream is endless**: passes follow each other, and Keras takes
  `steps_per_epoch` batches per epoch (default: one pass, `ceil(N / batch_size)`).
  An explicit `steps_per_epoch` therefore runs across pass boundaries into the
  next reshuffled pass (Keras' array adapter would instead end the epoch early
  with "ran out of data" when it exceeds one pass).
* `validation_split` takes the last fraction of the rows before shuffling, as
  Keras does; validation, `evaluate` and `predict` batches are in order, padded
  the same way; `predict` returns only the real rows.
* `batch_size` larger than the data uses one batch of all the rows (no padding).

Not padded (Keras' own batching, unchanged): `tf.data` datasets, generators and
`PyDataset`s (their owner batches them; `drop_remainder=True` avoids the second
compile there), `shuffle="batch"`, and data under a strategy with more than one
replica (Keras splits a batch over replicas, and a replica holding only pad
rows would divide by a zero weight).
"""

import random
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.internal import tfp_compat, validation

__all__ = ["check_class_weight", "evaluation_data", "fit_data", "padded_index", "prediction_data",
           "test_step", "tracker_weight", "train_step"]

DEFAULT_BATCH_SIZE = 32
"""Keras' batch size for arrays when `batch_size` is None."""


def tracker_weight(x, sample_weight):
    """What a batch counts for in the epoch's mean loss: `sum(w)`, or its rows without weights."""
    if sample_weight is None:
        first = next(t for t in tf.nest.flatten(x) if t is not None)
        return tf.cast(tf.shape(first)[0], tf.float32)
    return tf.reduce_sum(tf.cast(sample_weight, tf.float32))


def train_step(model, data):
    """Keras 3's TF `train_step` (forward pass, `compute_loss`, `optimizer.scale_loss`,
    gradients, `apply_gradients`, `compute_metrics`) with the loss tracker weighted by
    `tracker_weight` instead of the batch's rows."""
    x, y, w = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=w, training=True)
        _track(model, loss, x, w)
        if model.optimizer is not None:
            loss = model.optimizer.scale_loss(loss)
    if model.trainable_weights:
        weights = model.trainable_weights
        model.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
    else:
        warnings.warn("The model does not have any trainable weights.", stacklevel=2)
    return model.compute_metrics(x, y, y_pred, sample_weight=w)


def test_step(model, data):
    """Keras 3's TF `test_step` with the loss tracker weighted as in `train_step`."""
    x, y, w = keras.utils.unpack_x_y_sample_weight(data)
    y_pred = model(x, training=False)
    loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=w, training=False)
    _track(model, loss, x, w)
    return model.compute_metrics(x, y, y_pred, sample_weight=w)


def _track(model, loss, x, w):
    # Keras' tracker is the metric named "loss" (`model.metrics`); the loss carries the
    # 1 / replicas factor of a replica's share (`tfp_compat.replica_loss_scale`), removed here.
    tracker = next((m for m in model.metrics if m.name == "loss"), None)
    if tracker is not None:
        tracker.update_state(loss / tfp_compat.replica_loss_scale(),
                             sample_weight=tracker_weight(x, w))


def _is_array(value):
    return isinstance(value, np.ndarray | tf.Tensor)


def _features(model, x, y):
    """`x, y` as the model's features (`x` or the dict form), or None if they are not arrays."""
    if y is not None:
        if not (_is_array(x) and _is_array(y)):
            return None
        model._check_y(x, y)
        return {"x": y, "conditional_input": x}
    if isinstance(x, dict):
        return x if x and all(_is_array(v) for v in x.values()) else None
    return x if _is_array(x) else None


def _applies(model, features, sample_weight):
    return (features is not None and model.distribute_strategy.num_replicas_in_sync == 1
            and (sample_weight is None or _is_array(sample_weight)))


def _rows(features, sample_weight, name):
    parts = {"x" if not isinstance(features, dict) else f"x[{k!r}]": v
             for k, v in (features.items() if isinstance(features, dict) else [(0, features)])}
    if sample_weight is not None:
        parts["sample_weight"] = sample_weight
    rows = {k: (int(v.shape[0]) if len(v.shape) else None) for k, v in parts.items()}
    if len(set(rows.values())) != 1 or None in rows.values():
        raise ValueError(f"`{name}`: every array must have the same number of rows "
                         f"(dimension 0); got {rows}.")
    n = rows.popitem()[1]
    if n == 0:
        raise ValueError(f"`{name}` must have at least one row; got 0.")
    return n


def _batch_size(batch_size, name="batch_size"):
    if batch_size is None:
        return DEFAULT_BATCH_SIZE
    return validation.positive_int(batch_size, name)


def _weights(sample_weight, n, dtype):
    if sample_weight is None:
        return tf.ones([n], dtype)
    w = tf.convert_to_tensor(sample_weight)
    if not w.dtype.is_floating:
        w = tf.cast(w, dtype)
    if w.shape.rank != 1:
        w = tf.reshape(w, [n])
    return w


def padded_index(order, n, batch):
    """`order` (a permutation of `n` rows, or a `[k, n]` stack of them) cut into
    `[k * steps, batch]` index batches, each permutation's last batch padded with its own
    rows repeated, and the mask of real rows of the same shape."""
    steps = -(-n // batch)
    last = (steps - 1) * batch
    pad = steps * batch - n
    fill = tf.gather(order[..., last:], tf.range(pad, dtype=tf.int64) % (n - last), axis=-1)
    index = tf.reshape(tf.concat([order, fill], -1), [-1, batch])
    mask = tf.reshape(tf.concat([tf.ones([n]), tf.zeros([pad])], 0), [steps, batch])
    return index, tf.tile(mask, [order.shape.num_elements() // n, 1])


def _gather(features, weights):
    def take(index, mask):
        rows = tf.nest.map_structure(lambda a: tf.gather(a, index), features)
        return rows, None, tf.gather(weights, index) * tf.cast(mask, weights.dtype)
    return take


def _tensors(features):
    return tf.nest.map_structure(tf.convert_to_tensor, features)


def _dtype(features):
    first = tf.nest.flatten(features)[0]
    return first.dtype if first.dtype.is_floating else tf.float32


def _in_order(features, sample_weight, batch_size, name):
    """A finite dataset of `(features, None, weight)` padded batches in row order."""
    n = _rows(features, sample_weight, name)
    batch = min(batch_size, n)
    features = _tensors(features)
    index, mask = padded_index(tf.range(n, dtype=tf.int64), n, batch)
    weights = _weights(sample_weight, n, _dtype(features))
    ds = tf.data.Dataset.from_tensor_slices((index, mask)).map(_gather(features, weights))
    return _pipelined(ds), n


def _pipelined(ds):
    """Prefetched where the step runs on an accelerator; on CPU each batch is gathered
    in the caller's thread when the step asks for it (no prefetch, none injected).

    On CPU the compiled step already uses every core: a prefetching thread only adds
    a thread hand-off per step (about 0.14 ms measured on 2 cores, against a few
    microseconds for gathering a batch of rows): 1.79 against 2.10 ms a step for a
    5-layer RealNVP on 2-D data, batch 512 (docs/performance.md).
    """
    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    return ds.with_options(options)


def _split(features, sample_weight, fraction):
    """Keras' `validation_split`: the last `fraction` of the rows (before shuffling)."""
    if isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ValueError(f"`validation_split` must be a number in (0, 1); got {fraction!r}.")
    n = _rows(features, sample_weight, "x")
    at = int(np.floor(n * (1.0 - fraction)))
    if at in (0, n):
        raise ValueError(f"`validation_split={fraction}` of {n} rows leaves no training or no "
                         "validation rows; give more data or another `validation_split`.")
    def part(rows):
        return tuple(None if a is None else tf.nest.map_structure(lambda t: t[rows], a)
                     for a in (features, sample_weight))
    return part(slice(None, at)), part(slice(at, None))


def _validation(model, validation_data, batch_size):
    """`validation_data` as a padded dataset if it is array data, else unchanged."""
    if isinstance(validation_data, tuple | list):
        vx, vy, vw = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
    else:
        vx, vy, vw = validation_data, None, None
    features = _features(model, vx, vy)
    if not _applies(model, features, vw):
        return validation_data
    return _in_order(features, vw, batch_size, "validation_data")[0]


def fit_data(model, x, y, steps_per_epoch, kwargs):
    """`fit`'s arguments with array data as a padded endless dataset.

    Returns `(x, y, steps_per_epoch, kwargs)` for `keras.Model.fit`: unchanged
    where the data are not padded (see the module docstring).
    """
    features = _features(model, x, y)
    weight = kwargs.get("sample_weight")
    shuffle = kwargs.get("shuffle", True)
    batch_size = _batch_size(kwargs.get("batch_size"))
    val_batch = kwargs.get("validation_batch_size")
    val_batch = batch_size if val_batch is None else _batch_size(val_batch,
                                                                 "validation_batch_size")
    if not _applies(model, features, weight) or shuffle == "batch":
        val = kwargs.get("validation_data")
        if val is not None and _validation(model, val, val_batch) is not val:
            kwargs = dict(kwargs, validation_data=_validation(model, val, val_batch))
            kwargs.pop("validation_batch_size", None)
        return x, y, steps_per_epoch, kwargs
    kwargs = dict(kwargs)
    for key in ("sample_weight", "shuffle", "batch_size", "validation_batch_size"):
        kwargs.pop(key, None)
    split = kwargs.pop("validation_split", 0.0)
    if split and kwargs.get("validation_data") is None:
        (features, weight), (val_features, val_weight) = _split(features, weight, split)
        kwargs["validation_data"] = _in_order(val_features, val_weight, val_batch,
                                              "validation_split")[0]
    elif kwargs.get("validation_data") is not None:
        kwargs["validation_data"] = _validation(model, kwargs["validation_data"], val_batch)
    if steps_per_epoch is not None:
        steps_per_epoch = validation.positive_int(steps_per_epoch, "steps_per_epoch")
    dataset, steps = _stream(features, weight, batch_size, bool(shuffle),
                             random.randrange(2**31))
    kwargs["shuffle"] = False  # the stream is shuffled; avoids Keras' warning for a dataset
    return dataset, None, steps_per_epoch or steps, kwargs


# At least this many batches' indices are made per call of the stream's index function,
# and up to this many batches' rows (at most _CHUNK_BYTES of them) gathered per call.
_BATCHES_PER_CALL = 64
_CHUNK_BYTES = 8 * 2**20


def _stream(features, sample_weight, batch_size, shuffle, seed):
    """Padded batches of pass after pass, each pass permuted by `(seed, pass)`."""
    n = _rows(features, sample_weight, "x")
    batch = min(batch_size, n)
    features = _tensors(features)
    weights = _weights(sample_weight, n, _dtype(features))

    steps = -(-n // batch)
    passes = -(-_BATCHES_PER_CALL // steps)  # passes per call of the index function

    def permutation(p):
        return tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), tf.stack([tf.constant(seed, tf.int64), p]))

    def some_passes(b):
        if shuffle:  # one traced shuffle in a loop: tracing one per pass cost ~1 s a fit call
            orders = tf.map_fn(permutation, b * passes + tf.range(passes, dtype=tf.int64))
        else:
            orders = tf.tile(tf.range(n, dtype=tf.int64)[None], [passes, 1])
        return padded_index(orders, n, batch)

    # Index matrices of whole passes, cut into chunks of batches whose rows are gathered in
    # one call and unbatched. Not `flat_map` of a dataset per pass (a dataset built per
    # pass), nor one call per pass or per batch: each call of a dataset function costs
    # tens of microseconds a step (62 against 21 us a batch read, 2-D rows, batch 512).
    row_bytes = weights.dtype.size + sum(a.shape[1:].num_elements() * a.dtype.size
                                         for a in tf.nest.flatten(features))
    chunk = max(1, min(_BATCHES_PER_CALL, _CHUNK_BYTES // (batch * row_bytes)))
    ds = tf.data.Dataset.range(np.iinfo(np.int64).max).map(some_passes).unbatch()
    ds = ds.batch(chunk, drop_remainder=True).map(_gather(features, weights)).unbatch()
    return _pipelined(ds), steps


def evaluation_data(model, x, y, sample_weight, batch_size):
    """`evaluate`'s `(x, y, sample_weight, batch_size)`: array data as a finite padded
    dataset (and None, None, None), anything else unchanged."""
    features = None if x is None else _features(model, x, y)
    if not _applies(model, features, sample_weight):
        return x, y, sample_weight, batch_size
    return _in_order(features, sample_weight, _batch_size(batch_size), "x")[0], None, None, None


def check_class_weight(class_weight):
    """`class_weight` must be None for a density (rows are weighted by `sample_weight`)."""
    if class_weight is not None:
        raise ValueError("`class_weight` must be None: a density has no classes (weight rows "
                         f"with `sample_weight`); got {class_weight!r}.")


def prediction_data(model, x, batch_size):
    """`predict`'s `(x, batch_size, real rows)`: array data as a padded dataset of
    `(features,)` batches (and None, their row count), anything else `(x, batch_size, None)`."""
    features = _features(model, x, None)
    if not _applies(model, features, None):
        return x, batch_size, None
    ds, n = _in_order(features, None, _batch_size(batch_size), "x")
    return ds.map(lambda rows, _, w: (rows,)), None, n
