"""`fit_distributed`: the library's own training loop for multi-worker `tf.distribute`.

Keras 3's `Model.fit` cannot train under `tf.distribute.MultiWorkerMirroredStrategy`
([keras-team/keras#20585](https://github.com/keras-team/keras/issues/20585): its
per-replica output reduction fails with "Invalid reduction dimension 0 for input with 0
dimensions"). `fit_distributed(model, ...)` has the meaning of `keras.Model.fit` and is
written on `tf.distribute` directly; it also runs under `MirroredStrategy` and the default
strategy, where it gives the same result as one device fed the same global batches.

#### The loss of a global batch

A global batch of `n` rows with sample weights `w_i` (default 1, total `W`) is cut
into `N = num_replicas_in_sync` contiguous pieces; replica `r` (its global id, also
across workers) gets `n_r = floor(n / N) + [r < n mod N]` rows of weight `W_r`, so a
batch that does not divide by `N` (a short last batch, or a global batch size that
is not a multiple of `N`) is never dropped and never crashes; a replica may even get
no rows. Each replica computes the model's own loss `model.compute_loss`, which is
`(1/N) (-sum_{i in r} w_i s_i / W_r + penalty_r)` for a `FlowModel` with score
`s = model(x, training=True)`, and scales it by its share of the batch:

    L_r = (N W_r / W) compute_loss_r,
    sum_r L_r = -sum_i w_i s_i / W + sum_r (W_r / W) penalty_r,

the loss of the whole batch on one device (a per-batch penalty is averaged with the
replicas' shares as weights). `optimizer.apply` in the replica context sums the
gradients of the `L_r` over all replicas of all workers, once (Keras 3's TF
optimizer all-reduces them itself); the logged `loss` is `strategy.reduce(SUM)` of
the `L_r`. A replica with no rows (or zero weight) contributes exactly zero.
The epoch's `loss` and `val_loss` average the batch losses weighted by their `W`
(rows, without sample weights): the exact (weighted) mean over the epoch's rows.

Arrays are batched as `FlowModel.fit` batches them (`tfp_flows.keras.batching`):
a pass whose rows do not divide by the batch size ends in a batch padded to full
size by repeating its rows with weight 0, so every global batch has one shape
and each replica's piece keeps its shape (one compile per replica with
`jit_compile=True`); a `tf.data.Dataset` is used as it comes (batch it with
`drop_remainder=True` to keep one shape).

#### Determinism across workers

Every worker builds the same global batches (arrays: one stateless permutation per
epoch, `seed = (model.seed, epoch)`; a `tf.data.Dataset` must yield the same global
batches on every worker, e.g. shuffled with a fixed seed) and keeps only its
replicas' pieces. Because the order depends only on the epoch, a run resumed by
`keras.callbacks.BackupAndRestore` sees the same batches as an uninterrupted one.
Random numbers inside a step come from `objectives.seed_for_step(model.seed,
optimizer.iterations)`, which folds in the global replica id
(`replica_id_in_sync_group`, unique across workers under MultiWorkerMirroredStrategy).

#### Callbacks on several workers

Every worker runs the callbacks with identical logs, so `EarlyStopping` (and
`tfp_flows.keras.GuardNonFinite`, put first and given `x` for its diagnosis) stops all
of them together (`model.stop_training` set on any worker is also shared at each
step). Progress is printed by the chief only. On the other workers
`ModelCheckpoint` writes to a temporary copy of its path and `BackupAndRestore`
restores from the real `backup_dir` but backs up to a temporary one, as
TensorFlow recommends (every worker must take part in a save; only the chief's
files are kept); the temporary files are deleted at the end of training.
"""

import copy
import os
import shutil
import tempfile
import warnings

import keras
import tensorflow as tf

from tfp_flows.internal import tfp_compat, validation
from tfp_flows.keras import distributed_data as data_lib
from tfp_flows.keras import guard

__all__ = ["fit_distributed", "needs_own_loop"]

_MULTI_WORKER_TYPES = (
    tf.distribute.MultiWorkerMirroredStrategy,  # CollectiveAllReduceStrategy
    tf.distribute.experimental.MultiWorkerMirroredStrategy,
    tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy,
)
_SUM = tf.distribute.ReduceOp.SUM


def needs_own_loop(strategy=None):
    """True if Keras 3's `fit` cannot train under `strategy` and `fit_distributed` must.

    That is the case for `MultiWorkerMirroredStrategy` (TF's
    `CollectiveAllReduceStrategy`, also its experimental and v1 forms); `strategy`
    defaults to the current one (`tf.distribute.get_strategy()`).
    """
    if strategy is None:
        strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.Strategy | tf.compat.v1.distribute.Strategy):
        raise TypeError("`strategy` must be a tf.distribute.Strategy; "
                        f"got {type(strategy).__name__}.")
    return isinstance(strategy, _MULTI_WORKER_TYPES)


def _cluster(strategy):
    """(number of workers, this worker's index, is chief) from the strategy's cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    workers = len(spec.get("chief", [])) + len(spec.get("worker", []))
    if workers <= 1:
        return 1, 0, True
    if resolver.task_type == "chief":
        return workers, 0, True
    index = int(resolver.task_id or 0) + (1 if "chief" in spec else 0)
    return workers, index, index == 0


# -- steps --------------------------------------------------------------------------


def _replica_loss(model, element, training):
    """`(N W_r / W) model.compute_loss(...)` on one replica's piece; exactly 0 if it is empty."""
    data = element["data"]
    x = data["x"]
    score = model(x, training=training)
    loss = model.compute_loss(x=x, y=data.get("y"), y_pred=score,
                              sample_weight=data.get("sample_weight"), training=training)
    fraction = tf.cast(element["fraction"], loss.dtype)
    return tf.where(fraction > 0, loss * fraction, tf.zeros_like(loss))


def _step_functions(model, strategy):
    def gradients(element):
        with tf.GradientTape() as tape:
            loss = _replica_loss(model, element, training=True)
            scaled = model.optimizer.scale_loss(loss)
        return loss, tape.gradient(scaled, model.trainable_variables)

    def evaluate(element):
        return _replica_loss(model, element, training=False)

    if model.jit_compile:
        gradients = tf.function(gradients, jit_compile=True)
        evaluate = tf.function(evaluate, jit_compile=True)

    def replica_train(element):
        loss, grads = gradients(element)
        # Keras 3's TF optimizer sums the gradients over all replicas here, once.
        model.optimizer.apply(grads, model.trainable_variables)
        return loss

    def run(fn, iterator):
        element = next(iterator)
        loss = strategy.reduce(_SUM, strategy.run(fn, args=(element,)), axis=None)
        return loss, strategy.experimental_local_results(element["rows"])[0]

    @tf.function
    def train(iterator):
        return run(replica_train, iterator)

    @tf.function
    def test(iterator):
        return run(evaluate, iterator)

    @tf.function
    def any_worker(flag):
        return strategy.reduce(_SUM, strategy.run(tf.identity, args=(flag,)), axis=None) > 0

    return train, test, any_worker


# -- callbacks ----------------------------------------------------------------------


class _WorkerBackup(keras.callbacks.Callback):
    """`BackupAndRestore` on a non-chief worker: restore from the real backup, save to `tmp`."""

    def __init__(self, backup, tmp):
        super().__init__()
        self.restore = backup
        self.save = keras.callbacks.BackupAndRestore(
            tmp, save_freq=backup.save_freq, double_checkpoint=backup.double_checkpoint)

    def set_model(self, model):
        super().set_model(model)
        self.restore.set_model(model)
        self.save.set_model(model)

    def on_train_begin(self, logs=None):
        self.restore.on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        self.save.on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.save.on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        self.save.on_train_end(logs)


def _worker_callbacks(callbacks, tmp):
    """Non-chief copies of `callbacks`: files go under `tmp`, no progress bar."""
    out = []
    for i, cb in enumerate(callbacks):
        if isinstance(cb, keras.callbacks.ProgbarLogger):
            continue
        if isinstance(cb, keras.callbacks.BackupAndRestore):
            cb = _WorkerBackup(cb, os.path.join(tmp, f"backup_{i}"))
        elif isinstance(cb, keras.callbacks.ModelCheckpoint):
            cb = copy.copy(cb)
            cb.filepath = os.path.join(tmp, f"checkpoint_{i}", os.path.basename(cb.filepath))
            cb.verbose = 0
        out.append(cb)
    return out


# -- the loop -----------------------------------------------------------------------


def _check_args(model, epochs, steps_per_epoch, verbose, initial_epoch, callbacks):
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model; got {type(model).__name__}.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError("`model` must be compiled before `fit_distributed`; "
                         "call `model.compile(optimizer)` inside `strategy.scope()`.")
    validation.positive_int(epochs, "epochs", allow_zero=True)
    validation.positive_int(initial_epoch, "initial_epoch", allow_zero=True)
    if steps_per_epoch is not None:
        validation.positive_int(steps_per_epoch, "steps_per_epoch")
    if verbose == "auto":
        verbose = 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2; got {verbose!r}.")
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not isinstance(cb, keras.callbacks.Callback):
            raise TypeError("`callbacks` must be keras.callbacks.Callback instances; "
                            f"got {type(cb).__name__}.")
    return verbose, callbacks


def fit_distributed(model, x=None, y=None, *, batch_size=None, epochs=1, steps_per_epoch=None,
                    callbacks=None, validation_data=None, verbose="auto", shuffle=True,
                    initial_epoch=0):
    """Trains `model` like `keras.Model.fit`, under any `tf.distribute` strategy.

    Build and compile the model inside `strategy.scope()`; the strategy is the
    model's (`model.distribute_strategy`). On several workers, every worker runs
    this with the same arguments (see the module docstring and docs/scaling.md).

    Args:
      model: a compiled `keras.Model` whose `compute_loss` scales by
        `1/num_replicas_in_sync` as Keras' losses do (e.g. a `FlowModel`).
      x: arrays / dict of arrays `[n, ...]` (e.g. `{"x": x, "conditional_input": c}`),
        or a `tf.data.Dataset` of global batches (`x`, `(x,)`, `(x, y)` or
        `(x, y, sample_weight)`). None for an objective that needs no data
        (then `steps_per_epoch` is required).
      y: optional targets for array `x` (ignored by a `FlowModel`).
      batch_size: global batch size for arrays (default 32), split over all replicas.
      epochs, steps_per_epoch, initial_epoch, shuffle, verbose: as in `keras.Model.fit`.
        Arrays are shuffled by a stateless permutation per epoch, seeded by
        `model.seed` (if any) and the epoch; a short last batch is padded with
        zero-weight rows (see the module docstring).
      callbacks: `keras.callbacks.Callback`s (History, EarlyStopping,
        ModelCheckpoint, BackupAndRestore, ...); the logs hold `loss` (running
        weighted mean over the epoch's rows) and, with validation, `val_loss`.
      validation_data: `(x_val,)`, `(x_val, y_val[, sample_weight])`, arrays, a dict
        or a `tf.data.Dataset`; `val_loss` is the weighted mean validation loss
        (minus the mean score for a `FlowModel`: the validation NLL).

    Returns:
      The `keras.callbacks.History` of the run.
    """
    verbose, callbacks = _check_args(model, epochs, steps_per_epoch, verbose, initial_epoch,
                                     callbacks)
    callbacks = guard.attach(callbacks, x)  # a GuardNonFinite first, scoring this data
    strategy = model.distribute_strategy
    replicas = strategy.num_replicas_in_sync
    objective = getattr(model, "objective", None)
    if x is None and getattr(objective, "needs_data", True):
        raise ValueError(f"`x` is required: {type(objective).__name__} trains from data.")
    if x is None and steps_per_epoch is None:
        raise ValueError("`steps_per_epoch` is required when fitting without data "
                         f"({type(objective).__name__}).")
    workers, _, chief = _cluster(strategy)
    source = data_lib.source(model, x, y, batch_size, shuffle, replicas, "x")
    steps = steps_per_epoch
    if steps is None and isinstance(source, data_lib.Arrays):
        steps = source.batches_per_pass
    val_source = None
    if validation_data is not None:
        if isinstance(validation_data, tuple | list):
            vx, vy, vw = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
        else:
            vx, vy, vw = validation_data, None, None
        val_batch = None if isinstance(vx, tf.data.Dataset) else batch_size
        val_source = data_lib.source(model, vx, vy, val_batch, False, replicas,
                                     "validation_data", vw)
    progress_steps = steps
    if progress_steps is None:
        card = int(source.dataset.cardinality())
        progress_steps = card if card >= 0 else None

    tmp = None if chief else tempfile.mkdtemp(prefix="tfp_flows_worker_")
    cbs = keras.callbacks.CallbackList(
        callbacks if chief else _worker_callbacks(callbacks, tmp), add_history=True,
        add_progbar=chief and verbose != 0, model=model, verbose=verbose, epochs=epochs,
        steps=progress_steps)
    history = next(cb for cb in cbs.callbacks if isinstance(cb, keras.callbacks.History))
    try:
        with strategy.scope():
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
        train, test, any_worker = _step_functions(model, strategy)

        def stop_requested():
            if workers == 1:
                return bool(model.stop_training)
            stop = bool(any_worker(tf.constant(float(model.stop_training))))
            model.stop_training = stop
            return stop

        model.stop_training = False
        cbs.on_train_begin()
        restored = tfp_compat.pop_restored_initial_epoch(model)  # set by BackupAndRestore
        first_epoch = initial_epoch if restored is None else restored
        stream = None
        if steps is not None:  # one iterator for the whole run, positioned by epoch
            stream = iter(data_lib.distribute(strategy, source, start=first_epoch * steps))
        logs = {}
        for epoch in range(first_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            iterator = stream
            if iterator is None:  # a dataset: one full pass per epoch
                iterator = iter(data_lib.distribute(strategy, source))
            total = rows = 0.0
            step = 0
            while steps is None or step < steps:
                cbs.on_train_batch_begin(step)
                try:
                    loss, n = train(iterator)
                except (StopIteration, tf.errors.OutOfRangeError):
                    if steps is not None:
                        if chief:
                            warnings.warn("Your input ran out of data; interrupting training.",
                                          stacklevel=2)
                        model.stop_training = True
                    break
                total, rows = total + float(loss) * float(n), rows + float(n)
                batch_logs = {"loss": total / rows}
                cbs.on_train_batch_end(step, batch_logs)
                step += 1
                if stop_requested():
                    break
            logs = {"loss": total / rows} if rows else {}
            if val_source is not None:
                logs["val_loss"] = _evaluate(strategy, test, val_source)
            cbs.on_epoch_end(epoch, logs)
            if stop_requested():
                break
        if epochs > 0:
            model.optimizer.finalize_variable_values(model.trainable_weights)
        cbs.on_train_end(logs=logs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return history


def _evaluate(strategy, test, source):
    """Mean of the global batch losses over one pass of `source`, each weighted by its
    total sample weight (its rows without weights)."""
    iterator = iter(data_lib.distribute(strategy, source))
    total = rows = 0.0
    steps = source.batches_per_pass if isinstance(source, data_lib.Arrays) else None
    step = 0
    while steps is None or step < steps:
        try:
            loss, n = test(iterator)
        except (StopIteration, tf.errors.OutOfRangeError):
            break
        total, rows, step = total + float(loss) * float(n), rows + float(n), step + 1
    return total / rows if rows else float("nan")
