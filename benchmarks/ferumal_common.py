"""Shared training loop of the Ferumal-flow benchmarks (English et al., 2024).

Every model is a registered flow trained by the library's pipeline
(`tfp_flows.keras.train.fit`: data-dependent initialisation, then `model.fit`)
with Adam and a cosine-decayed learning rate; with a patience, the best
validation epoch is restored (early stopping), for every model alike.
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

from benchmarks import common  # noqa: F401  (sets the Keras backend first)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows.keras.train import fit  # noqa: E402


def train(flow, flow_kwargs, x_train, x_val, steps, batch_size, lr, patience=None, seed=0,
          jit_compile=False, steps_per_execution=1, validation_batch_size=None):
    """Builds, initialises and trains a registered flow; returns (model, seconds, epochs run).

    `jit_compile` and `steps_per_execution` go to `model.compile` (XLA, and
    several optimizer steps per call into the compiled graph);
    `validation_batch_size` to `model.fit`. The seconds include tracing and
    compilation.
    """
    result = train_result(flow, flow_kwargs, x_train, x_val, steps, batch_size, lr,
                          patience=patience, seed=seed, jit_compile=jit_compile,
                          steps_per_execution=steps_per_execution,
                          validation_batch_size=validation_batch_size)
    return result.model, result.seconds, result.epochs_run


def train_result(flow, flow_kwargs, x_train, x_val, steps, batch_size, lr, patience=None, seed=0,
                 jit_compile=False, steps_per_execution=1, validation_batch_size=None,
                 eval_every=None, objective=None, callbacks=()):
    """As `train`, returning the whole `tfp_flows.keras.train.TrainResult`.

    With `eval_every` (steps), an "epoch" is `eval_every` optimiser steps
    (`steps_per_epoch`: consecutive chunks continue one shuffled pass over
    `x_train`, a new pass starting when it is used up; use it only with
    `eval_every` at most one pass), so the validation NLL is measured every
    `eval_every` steps; otherwise an epoch is a full pass over `x_train`.
    `objective` goes to `fit` (None: maximum likelihood), `callbacks` too.
    """
    steps_per_epoch = eval_every or max(1, int(np.ceil(len(x_train) / batch_size)))
    epochs = max(1, int(np.ceil(steps / steps_per_epoch)))
    schedule = keras.optimizers.schedules.CosineDecay(lr, epochs * steps_per_epoch, alpha=0.05)
    return fit(flow, x_train, x_val, flow_kwargs=flow_kwargs, seed=seed, objective=objective,
               learning_rate=schedule, batch_size=batch_size, epochs=epochs,
               steps_per_epoch=eval_every, jit_compile=jit_compile,
               steps_per_execution=steps_per_execution,
               validation_batch_size=validation_batch_size, patience=patience,
               callbacks=list(callbacks))
