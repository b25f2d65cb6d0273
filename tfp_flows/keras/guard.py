"""Guarded training: stop at the first non-finite loss, keep the last good weights, say where.

`GuardNonFinite` is a Keras callback. Before every `every`-th training step it
copies the model's weights and the optimiser's state (moments, step counter)
into shadow variables on the device (one `tf.function` of assignments; two
copies, used alternately); after every step it reads the training loss. At
the first NaN or Inf it

1. restores the newest copy whose values are all finite (the state before
   the bad step, or before the step whose update made the weights
   non-finite), so nothing trained before the bad step is lost and no later
   callback (a `ModelCheckpoint` saving every N batches, `BackupAndRestore`)
   sees non-finite weights: the guard puts itself first in the callback list
   and raises from `on_train_batch_end`, before the others run;
2. diagnoses, in eager mode, with the weights that produced the non-finite
   loss (`locate_non_finite`): which training rows give a non-finite score
   (the data it was given, at most `max_rows` rows, scored with that step's
   seed), then on those rows, in the order the computation meets them, every
   bijector of a TFP chain (inverse output and inverse log-determinant, or
   the forward direction for objectives that sample) and every Keras layer
   call (input and output), naming the first one whose value is non-finite;
   which weights, optimiser variables and gradients are non-finite;
3. raises `NonFiniteLossError` (a `FloatingPointError`) carrying the global
   step, epoch, batch, loss, the part named first, the restored step and the
   whole report.

`tfp_flows.keras.train.fit` adds it by default (`guard=True`); `FlowModel.fit`
takes it like any callback (`callbacks=[GuardNonFinite()]`) and hands it the
training data for the diagnosis. `fit_distributed` calls the same callback
hooks, so the guard works there too (every worker sees the same logs and
stops together).

The loss Keras reports to callbacks is the running mean over the epoch, which
is non-finite from the first non-finite step on, so the first non-finite
value names the step (with `steps_per_execution = k`, one of the k steps of
that execution; the report gives the range).
"""

import functools

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.internal import validation
from tfp_flows.keras import diagnosis

__all__ = ["GuardNonFinite", "NonFiniteLossError", "attach"]

DEFAULT_MAX_ROWS = 65536
"""Training rows the diagnosis scores at most (eager, in chunks of 2048)."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; raised by `GuardNonFinite`.

    Attributes:
      step: global 0-based index of the first optimiser step whose loss was
        non-finite (over all epochs; the first of the execution's steps when
        `steps_per_execution > 1`).
      epoch, batch: its 0-based epoch and batch index within the epoch.
      loss: the reported loss (running mean of the epoch).
      layer: the part the diagnosis named first (e.g. ``"bijector 3 'glow_block'
        (inverse log-det)"`` or ``"layer 'mlp_2' output"``), or None.
      restored_step: the optimiser step count of the restored state (the
        model holds those weights and optimiser variables), or None if no
        finite copy existed (then the weights are left as they were).
      report: the whole diagnosis (dict: `rows` scanned and non-finite,
        `culprit`, `nonfinite_gradients`, `nonfinite_weights_after` (weights and
        optimiser variables after the bad step), `nonfinite_before`, ...).
      model: the model, holding the restored state (`train.fit` built it: this
        is how to get it back).
    """

    def __init__(self, message, *, step, epoch, batch, loss, layer, restored_step, report,
                 model=None):
        super().__init__(message)
        self.step, self.epoch, self.batch, self.loss = step, epoch, batch, loss
        self.layer, self.restored_step, self.report = layer, restored_step, report
        self.model = model


class GuardNonFinite(keras.callbacks.Callback):
    """Stops training at the first NaN / Inf loss, restores the last good state, raises.

    See the module docstring for what it does; the error is
    `NonFiniteLossError`.

    Args:
      every: copy the state before every `every`-th step (1: every step, so
        the restored state is the one just before the bad step; larger values
        are cheaper and restore a state up to `every - 1` steps older).
      data: training data for the diagnosis (an array `[N, D]`, a dict
        `{"x": ..., "conditional_input": ...}` or a `tf.data.Dataset`);
        `FlowModel.fit` and `train.fit` set it from their own data.
      diagnose: run the eager diagnosis (`locate_non_finite`) before raising.
      max_rows: training rows the diagnosis scores at most.

    #### Overhead

    One device-side copy of every weight and optimiser variable and one
    read-back of the loss per step (measured in docs/numerics.md, "Guarded
    training").
    """

    def __init__(self, every=1, data=None, diagnose=True, max_rows=DEFAULT_MAX_ROWS):
        super().__init__()
        self.every = validation.positive_int(every, "every")
        self.max_rows = validation.positive_int(max_rows, "max_rows")
        self.diagnose = bool(diagnose)
        self.data = data
        self._buffers = None

    def set_data(self, data):
        """The training data the diagnosis scores (any form `fit` takes)."""
        self.data = data

    # -- snapshots ----------------------------------------------------------------

    def _state(self):
        model = self.model
        state = list(model.weights)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and optimizer.built:
            state += [v for v in optimizer.variables if all(v is not w for w in state)]
        return state

    def _build(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:  # Keras would build it in step 1
            with self.model.distribute_strategy.scope():
                optimizer.build(self.model.trainable_variables)
        self._vars = self._state()
        with tf.init_scope():
            self._buffers = [[tf.Variable(tf.convert_to_tensor(v), trainable=False)
                              for v in self._vars] for _ in range(2)]
        # A partial, not a closure: TF's retracing warning counts traces per code object.
        self._savers = [tf.function(functools.partial(_copy_checked, b, self._vars),
                                    autograph=False) for b in self._buffers]
        self._copied = [None, None]  # per buffer: the fit's step index the copy precedes
        self._newest = 1

    def on_train_begin(self, logs=None):
        self._buffers, self._count, self._epoch, self._last_steps = None, 0, 0, 1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._buffers is None or len(self._state()) != len(self._vars):
            self._build()  # first step, or the optimiser was built in between
        self._begin, self._begin_count = batch, self._count
        if self._count % self.every == 0:
            k = 1 - self._newest
            if bool(self._savers[k]()):  # only a finite copy becomes the newest
                self._copied[k], self._newest = self._count, k
            else:  # the last update made weights non-finite although its loss was finite
                self._stop(None, self._count - self._last_steps)

    def on_train_batch_end(self, batch, logs=None):
        self._last_steps = batch - self._begin + 1
        self._count += self._last_steps
        self._last = (self._epoch, self._begin)
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(np.asarray(loss))
        if not np.isfinite(loss):
            self._stop(loss, self._begin_count)

    # -- the stop -------------------------------------------------------------------

    def _stop(self, loss, local_step):
        """Restores the newest finite copy, diagnoses and raises. `loss` None: the weights
        (not the loss) became non-finite in the execution starting at `local_step`."""
        model = self.model
        model.stop_training = True
        optimizer = getattr(model, "optimizer", None)
        steps = self._last_steps
        step = None
        if optimizer is not None:  # the global (optimizer) index of the bad step
            step = int(optimizer.iterations.numpy()) - (self._count - local_step)
        epoch, batch = (self._epoch, self._begin) if loss is not None else self._last
        report = {"loss": loss, "epoch": epoch, "batch": batch, "steps": steps,
                  "weights_became_nonfinite": loss is None,
                  "nonfinite_weights_after": diagnosis.nonfinite_names(self._vars),
                  "rows": None, "culprit": None, "nonfinite_gradients": None}
        restored, copied = None, self._copied[self._newest]
        if copied is not None:
            for v, s in zip(self._vars, self._buffers[self._newest], strict=True):
                v.assign(tf.convert_to_tensor(s))
            restored = None if optimizer is None else int(optimizer.iterations.numpy())
        if self.diagnose and hasattr(model, "distribution") and hasattr(model, "objective"):
            try:
                self._diagnose(report, step)
            except Exception as err:  # the diagnosis must never hide the stop
                report["diagnosis_error"] = f"{type(err).__name__}: {err}"
        raise NonFiniteLossError(
            _message(report, step, restored, copied == local_step),
            step=step, epoch=epoch, batch=batch, loss=loss,
            layer=report["culprit"], restored_step=restored, report=report, model=model)

    def _diagnose(self, report, step):
        from tfp_flows.keras import objectives

        model = self.model
        dist, objective = model.distribution, model.objective
        seed = objectives.seed_for_step(model.seed, 0 if step is None else step)
        rows = diagnosis.rows(self.data, self.max_rows) if objective.needs_data else None
        x = c = None
        if rows is not None:
            x_all, c_all = rows
            bad = []
            for start in range(0, len(x_all), 2048):
                xb = tf.convert_to_tensor(x_all[start:start + 2048], dist.dtype)
                cb = None if c_all is None else tf.convert_to_tensor(
                    c_all[start:start + 2048], dist.dtype)
                value = diagnosis.score(objective, dist, xb, cb, seed).numpy()
                bad += list(start + np.flatnonzero(~np.isfinite(value)))
            report["rows"] = {"scanned": len(x_all), "nonfinite": [int(i) for i in bad]}
            pick = np.asarray(bad[:64] if bad else np.arange(min(len(x_all), 256)), int)
            x = x_all[pick]
            c = None if c_all is None else c_all[pick]
        report["culprit"] = diagnosis.locate_non_finite(dist, x, c, objective=objective,
                                                        seed=seed)
        weights = model.trainable_weights
        with tf.GradientTape() as tape:
            data = None if x is None else tf.convert_to_tensor(x, dist.dtype)
            cond = None if c is None else tf.convert_to_tensor(c, dist.dtype)
            loss = -tf.reduce_mean(diagnosis.score(objective, dist, data, cond, seed))
        grads = tape.gradient(loss, weights)
        report["nonfinite_gradients"] = [
            getattr(w, "path", w.name) for w, g in zip(weights, grads, strict=True)
            if g is not None and not np.all(np.isfinite(g.numpy()))]
        report["num_weights"] = len(weights)


def _copy_checked(dst, src):
    """Assigns every `src` value to its `dst` variable; True if all floating values are finite."""
    ok = [tf.constant(True)]
    for s, v in zip(dst, src, strict=True):
        t = tf.convert_to_tensor(v)
        s.assign(t)
        if t.dtype.is_floating:
            ok.append(tf.reduce_all(tf.math.is_finite(t)))
    return tf.reduce_all(tf.stack(ok))


def _listed(names, limit=3):
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _message(report, step, restored, restored_is_newest):
    where = f"step {step}" if report["steps"] == 1 else (
        f"one of steps {step}..{step + report['steps'] - 1}")
    at = f"{where} (optimizer step; epoch {report['epoch']}, batch {report['batch']}; 0-based)"
    if report["weights_became_nonfinite"]:
        parts = [f"The update of {at} made {_listed(report['nonfinite_weights_after'])} "
                 "non-finite while its loss was finite (a too large step, or a non-finite "
                 "gradient)."]
    else:
        parts = [f"Non-finite training loss ({report['loss']}) at {at}."]
    rows = report["rows"]
    if rows is not None:
        bad = rows["nonfinite"]
        parts.append(f"{len(bad)} of {rows['scanned']} training rows give a non-finite score"
                     + (f" (rows {bad[:8]}{' ...' if len(bad) > 8 else ''})." if bad else
                        " at these weights (the non-finite value needs that step's batch)."))
    if report["culprit"]:
        parts.append(f"First non-finite value: {report['culprit']}.")
    elif "diagnosis_error" in report:
        parts.append(f"The diagnosis failed: {report['diagnosis_error']}.")
    elif not report["weights_became_nonfinite"]:
        parts.append("The eager re-evaluation found no non-finite part.")
    grads = report["nonfinite_gradients"]
    if grads:
        parts.append(f"Non-finite gradients: {len(grads)} of {report['num_weights']} weights "
                     f"({_listed(grads)}).")
    after = report["nonfinite_weights_after"]
    if after and not report["weights_became_nonfinite"]:
        parts.append(f"After the step {len(after)} weights or optimizer variables were "
                     f"non-finite ({_listed(after)}).")
    if restored is None:
        parts.append("No finite copy of the weights was kept: the weights were not restored.")
    else:
        which = "from just before that step" if restored_is_newest else "from the last copy"
        parts.append(f"Restored the weights and optimizer state {which} (optimizer.iterations "
                     f"= {restored}); nothing trained before it is lost.")
    return " ".join(parts)


def attach(callbacks, data):
    """`callbacks` with every `GuardNonFinite` first (so it stops before checkpoints save)
    and given `data` unless it has its own."""
    callbacks = list(callbacks or [])
    guards = [cb for cb in callbacks if isinstance(cb, GuardNonFinite)]
    for guard in guards:
        if guard.data is None:
            guard.set_data(data)
    return guards + [cb for cb in callbacks if not isinstance(cb, GuardNonFinite)]
