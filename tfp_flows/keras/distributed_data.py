"""Input pipeline of `fit_distributed`: global batches cut into one piece per replica.

Every worker builds the same sequence of global batches and keeps the pieces of
its own replicas. A global batch of `n` rows goes to the `N` replicas in
contiguous pieces of `floor(n / N) + [r < n mod N]` rows (replica `r` by its
global id), each with `fraction = N W_r / W`, its share of the batch weight
(see `tfp_flows.keras.distributed`). Arrays whose rows do not divide by the batch
size end each pass in a batch padded with zero-weight rows, as `FlowModel.fit`
pads them (`tfp_flows.keras.batching`), so the pieces keep one shape.
"""

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.internal import validation
from tfp_flows.keras import batching


def structure(x, y=None, sample_weight=None):
    data = {"x": x}
    if y is not None:
        data["y"] = y
    if sample_weight is not None:
        data["sample_weight"] = sample_weight
    return data


def _from_element(*element):
    """A dataset element `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` as a dict."""
    element = element[0] if len(element) == 1 else element
    return structure(*keras.utils.unpack_x_y_sample_weight(element))


class Arrays:
    """In-memory data: global batches of `batch_size` rows, permuted once per pass.

    A pass whose rows do not divide by `batch_size` ends in a batch padded to
    `batch_size` rows with its own rows at sample weight 0 (`batching.padded_index`),
    so every global batch, and every replica's piece of it, has one shape.
    """

    def __init__(self, data, batch_size, shuffle, seed, name):
        self.data = tf.nest.map_structure(tf.convert_to_tensor, data)
        rows = {int(a.shape[0]) for a in tf.nest.flatten(self.data)}
        if len(rows) != 1:
            raise ValueError(f"`{name}` arrays must all have the same number of rows; "
                             f"got {sorted(rows)}.")
        self.rows = rows.pop()
        if self.rows == 0:
            raise ValueError(f"`{name}` must have at least one row; got 0.")
        self.batch_size, self.shuffle, self.seed = batch_size, bool(shuffle), int(seed)
        self.batches_per_pass = -(-self.rows // batch_size)
        self.padded = self.rows > batch_size and self.rows % batch_size != 0
        if self.padded and "sample_weight" not in self.data:
            self.data["sample_weight"] = tf.ones([self.rows])

    def global_batches(self, start=0):
        """Global batches from the `start`-th on, endlessly (pass `p` permuted by `(seed, p)`)."""
        n, data = self.rows, self.data

        def one_pass(p):
            index = tf.range(n, dtype=tf.int64)
            if self.shuffle:
                seed = tf.stack([tf.constant(self.seed, tf.int64), p])
                index = tf.random.experimental.stateless_shuffle(index, seed)
            if self.padded:
                return tf.data.Dataset.from_tensor_slices(
                    batching.padded_index(index, n, self.batch_size))
            return tf.data.Dataset.from_tensor_slices(index).batch(self.batch_size)

        def gather(index, mask=None):
            batch = tf.nest.map_structure(lambda a: tf.gather(a, index), data)
            if mask is not None:
                weight = batch["sample_weight"]
                batch["sample_weight"] = weight * tf.cast(mask, weight.dtype)
            return batch

        first = start // self.batches_per_pass
        ds = tf.data.Dataset.range(first, np.iinfo(np.int64).max).flat_map(one_pass)
        ds = ds.skip(start - first * self.batches_per_pass)
        return ds.map(gather)


class Batches:
    """A user `tf.data.Dataset` whose elements are global batches."""

    def __init__(self, dataset):
        self.dataset = dataset.map(_from_element)

    def global_batches(self, start=0):
        return self.dataset.skip(start) if start else self.dataset


def _replica_pieces(batch, num_replicas, first, local):
    """This worker's `local` pieces (global replicas `first`...) of one global batch."""
    n = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]
    q, r = n // num_replicas, n % num_replicas
    ids = tf.range(first, first + local, dtype=tf.int64)
    starts, sizes = ids * q + tf.minimum(ids, r), q + tf.cast(ids < r, tf.int64)
    weights = batch.get("sample_weight")
    total = (tf.cast(n, tf.float32) if weights is None
             else tf.reduce_sum(tf.cast(weights, tf.float32)))

    def piece(i):
        part = tf.nest.map_structure(lambda a: a[starts[i]:starts[i] + sizes[i]], batch)
        if weights is None:
            share = tf.cast(sizes[i], tf.float32)
        else:
            share = tf.reduce_sum(tf.cast(part["sample_weight"], tf.float32))
            # A weightless piece would make compute_loss 0/0: give it unit weights, share 0.
            part["sample_weight"] = tf.where(share > 0, part["sample_weight"],
                                             tf.ones_like(part["sample_weight"]))
        fraction = tf.math.divide_no_nan(num_replicas * share, total)
        # What the batch counts for in the epoch's mean loss: its weight (rows if unweighted).
        return {"data": part, "fraction": fraction, "rows": total}

    return tf.data.Dataset.range(local).map(piece)


def distribute(strategy, source, start=0):
    """`source`'s global batches from `start` on, each replica getting its piece."""

    def dataset_fn(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        first = context.input_pipeline_id * local
        ds = source.global_batches(start).flat_map(
            lambda b: _replica_pieces(b, context.num_replicas_in_sync, first, local))
        return ds.prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(dataset_fn)


def source(model, x, y, batch_size, shuffle, replicas, name, sample_weight=None):
    if isinstance(x, tf.data.Dataset):
        if batch_size is not None:
            raise ValueError(f"`batch_size` must be None when `{name}` is a tf.data.Dataset "
                             f"(its elements are the global batches); got {batch_size}.")
        if y is not None:
            raise ValueError(f"`y` must be None when `{name}` is a tf.data.Dataset; got {y!r}.")
        return Batches(x)
    if x is None:  # an objective that needs no data: one dummy row per replica and step
        return Arrays({"x": np.zeros([replicas, 1], np.float32)}, replicas, False, 0, name)
    batch_size = 32 if batch_size is None else validation.positive_int(batch_size, "batch_size")
    return Arrays(structure(x, y, sample_weight), batch_size, shuffle,
                   getattr(model, "seed", 0), name)
