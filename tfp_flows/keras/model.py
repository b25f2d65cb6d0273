"""`FlowModel`: train any TFP distribution built with this library by `model.fit`."""

import keras
import tensorflow as tf

from tfp_flows.flows import build_flow  # the package: importing it registers every flow
from tfp_flows.internal import contract, keras_owned, serialization, tfp_compat
from tfp_flows.keras import objectives


@keras.saving.register_keras_serializable(package="tfp_flows")
class FlowModel(keras.Model):
    """A Keras 3 model around a TFP distribution whose weights Keras owns.

    The model's output is the per-example score of its objective (log-likelihood
    by default, or a lower bound on it); the loss is minus its mean, so
    `val_loss` is the validation negative log-likelihood (or negative bound).
    The distribution's Keras layers are found by walking it (bijector chains,
    conditioners); a trainable `tf.Variable` that no Keras layer owns is an
    error, because Keras would silently not train it.

    Inputs are arrays / `tf.data` of shape `[batch, D]`, or dicts
    `{"x": x, "conditional_input": c}` for conditional flows.

    Args:
      distribution: a `tfd.Distribution` (e.g. a `tfd.TransformedDistribution`
        of this library's bijectors). Build it inside `strategy.scope()` when
        training under `tf.distribute`.
      objective: `tfp_flows.keras.objectives.Objective` or a name ('nll',
        'elbo', 'iwae'); default maximum likelihood.
      seed: integer base of the stateless per-step seeds.
      validate_args: if True, every batch is checked for NaN/Inf (an
        `InvalidArgumentError` naming the input) instead of training on it.

    #### Examples

    ```python
    flow = tfp_flows.flows.real_nvp(event_size=2)
    model = tfp_flows.keras.FlowModel(flow)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    model.initialize_from_data(x_train[:1024])
    model.fit(x_train, batch_size=256, epochs=20, validation_data=(x_val,))
    ```
    """

    def __init__(self, distribution, objective=None, seed=0, validate_args=False, **kwargs):
        super().__init__(**kwargs)
        if not hasattr(distribution, "log_prob"):
            raise TypeError("`distribution` must be a TFP distribution; "
                            f"got {type(distribution).__name__}.")
        layers = keras_owned.find_keras_layers(distribution)
        stray = keras_owned.untracked_variables(distribution, layers)
        if stray:
            names = ", ".join(v.name for v in stray[:5])
            raise TypeError(
                f"`distribution` holds trainable tf.Variables that no Keras layer owns ({names}); "
                "Keras would not train them. Hold parameters in a Keras layer, e.g. "
                "`tfp_flows.nets.Parameters`, and give TFP `layer.variable(name)`.")
        # Not a Keras- or TF-tracked attribute: Keras tracks `flow_layers` instead.
        object.__setattr__(self, "_distribution", distribution)
        self.flow_layers = layers
        self.objective = objectives.get(objective)
        self.seed = int(seed)
        self.validate_args = bool(validate_args)
        self._flow_spec = None
        self.built = True

    @classmethod
    def from_flow(cls, flow, objective=None, seed=0, validate_args=False, **flow_kwargs):
        """Builds a registered flow by name; the model then saves with `model.save`."""
        model = cls(build_flow(flow, **flow_kwargs), objective=objective, seed=seed,
                    validate_args=validate_args)
        model._flow_spec = {"flow": flow, "flow_kwargs": dict(flow_kwargs)}
        return model

    @property
    def distribution(self):
        return self._distribution

    # -- Keras hooks ---------------------------------------------------------

    def call(self, inputs, training=False):
        x, c = _unpack(inputs)
        if self.objective.needs_data:
            x = self._check_data(x)
        optimizer = getattr(self, "optimizer", None)
        if training and optimizer is not None:
            step = optimizer.iterations
        else:
            step = 0
        seed = objectives.seed_for_step(self.seed, step)
        out = self.objective(self._distribution, x, conditional_input=c, seed=seed,
                             training=training)
        if isinstance(out, tuple):
            out, penalty = out
            if training:
                self.add_loss(penalty)
        return out

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        score = tf.convert_to_tensor(y_pred)
        if sample_weight is None:
            loss = -tf.reduce_mean(score)
        else:
            w = tf.cast(tf.reshape(sample_weight, tf.shape(score)), score.dtype)
            loss = -tf.reduce_sum(w * score) / tf.reduce_sum(w)
        extra = self.losses
        if extra:
            loss = loss + tf.add_n([tf.cast(v, loss.dtype) for v in extra])
        return loss * tfp_compat.replica_loss_scale()

    def fit(self, x=None, y=None, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit`; for objectives that need no data (reverse KL) `x` may be None."""
        if x is None and not self.objective.needs_data:
            if steps_per_epoch is None:
                raise ValueError("`steps_per_epoch` is required when fitting without data "
                                 f"({type(self.objective).__name__}).")
            x = tf.data.Dataset.from_tensors(tf.zeros([1])).repeat()
            kwargs["shuffle"] = False  # nothing to shuffle; avoids Keras' warning
        elif x is None:
            raise ValueError(f"`x` is required: {type(self.objective).__name__} trains from data.")
        return super().fit(x, y, steps_per_epoch=steps_per_epoch, **kwargs)

    def _check_data(self, x):
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise TypeError(f"FlowModel: data must be floating point; got {x.dtype.name}.")
        x = tf.cast(x, self._distribution.dtype)
        event = self._distribution.event_shape
        if event.rank is not None and x.shape.rank is not None:
            if x.shape.rank < event.rank or not event.is_compatible_with(
                    x.shape[x.shape.rank - event.rank:]):
                dims = ", ".join(map(str, event))
                raise ValueError(
                    f"FlowModel: expected data of shape [batch, {dims}]; got {x.shape}.")
        if self.validate_args:
            x = tf.debugging.assert_all_finite(x, "FlowModel: data must be finite (no NaN/Inf).")
        return x

    # -- Convenience ---------------------------------------------------------

    def log_prob(self, x, conditional_input=None, **kwargs):
        """`log p(x)` of the underlying distribution (conditional input routed)."""
        return contract.log_prob(self._distribution, x, conditional_input, **kwargs)

    def sample(self, sample_shape=(), seed=None, **kwargs):
        return self._distribution.sample(sample_shape, seed=seed, **kwargs)

    def initialize_from_data(self, x, conditional_input=None):
        """Data-dependent initialisation (ActNorm statistics, inducing points) from a batch."""
        x = tf.convert_to_tensor(x, dtype=self._distribution.dtype)
        contract.initialize_from_data(self._distribution, x, conditional_input)

    def get_config(self):
        """`{"flow": name, "flow_kwargs": ...}` for `from_flow` models, else
        `{"distribution": serialization.serialize(distribution)}`; plus the objective,
        seed, validate_args and name.

        Raises:
          TypeError: a part of the distribution cannot be saved (the message names its
            path, e.g. `distribution.bijector.bijectors[2].shift_and_log_scale_fn`).
        """
        if self._flow_spec is not None:
            spec = dict(self._flow_spec)
        else:
            spec = {"distribution": serialization.serialize(self._distribution)}
        return {**spec, "objective": objectives.serialize(self.objective),
                "seed": self.seed, "validate_args": self.validate_args, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        kwargs = dict(objective=objectives.get(config.pop("objective", None)),
                      seed=config.pop("seed", 0), validate_args=config.pop("validate_args", False))
        if config.get("name") is not None:
            kwargs["name"] = config.pop("name")
        if "distribution" in config:
            return cls(serialization.deserialize(config.pop("distribution")), **kwargs)
        flow, flow_kwargs = config.pop("flow"), dict(config.pop("flow_kwargs", {}))
        model = cls(build_flow(flow, **flow_kwargs), **kwargs)
        model._flow_spec = {"flow": flow, "flow_kwargs": flow_kwargs}
        return model


def _unpack(inputs):
    if isinstance(inputs, dict):
        unknown = set(inputs) - {"x", "conditional_input"}
        if "x" not in inputs or unknown:
            raise ValueError("Dict inputs must have key 'x' and optionally 'conditional_input'; "
                             f"got keys {sorted(inputs)}.")
        return inputs["x"], inputs.get("conditional_input")
    return inputs, None
