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
    steps_per_epoch = max(1, int(np.ceil(len(x_train) / batch_size)))
    epochs = max(1, int(np.ceil(steps / steps_per_epoch)))
    schedule = keras.optimizers.schedules.CosineDecay(lr, epochs * steps_per_epoch, alpha=0.05)
    result = fit(flow, x_train, x_val, flow_kwargs=flow_kwargs, seed=seed,
                 learning_rate=schedule, batch_size=batch_size, epochs=epochs,
                 jit_compile=jit_compile, steps_per_execution=steps_per_execution,
                 validation_batch_size=validation_batch_size, patience=patience)
    return result.model, result.seconds, result.epochs_run
