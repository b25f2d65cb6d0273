"""`FlowModel`: train any TFP distribution built with this library by `model.fit`."""

import numbers

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.flows import build_flow  # the package: importing it registers every flow
from tfp_flows.flows.ffjord import with_trace as _with_trace
from tfp_flows.internal import contract, keras_owned, serialization, tfp_compat, validation
from tfp_flows.keras import batching, distributed, guard, objectives, steps

_OWNER = "FlowModel"
_FORMS = ("`fit(x)` with `x` of shape [batch, *event_shape] for an unconditional flow; "
          "`fit(x=condition, y=target)` or `fit({'x': target, 'conditional_input': "
          "condition})` for a conditional one")


@keras.saving.register_keras_serializable(package="tfp_flows")
class FlowModel(keras.Model):
    """A Keras 3 model around a TFP distribution whose weights Keras owns.

    The model's output is the per-example score of its objective (log-likelihood
    by default, or a lower bound on it); the loss is minus its mean, so
    `val_loss` is the validation negative log-likelihood (or negative bound).
    The distribution's Keras layers are found by walking it (bijector chains,
    conditioners); a trainable `tf.Variable` that no Keras layer owns is an
    error, because Keras would silently not train it.

    #### Data

    * Unconditional flow: `fit(x)`, `evaluate(x)`, `predict(x)` with `x` an
      array, tensor or `tf.data` of shape `[batch, *event_shape]` (a dataset
      of 1-tuples `(x,)` too). Passing `y` is an error: a density has no
      targets.
    * Conditional flow (`conditional_size=C`) of `p(target | condition)`:
      the Keras form is `fit(x=condition, y=target)`, `evaluate(condition,
      target)`, `validation_data=(condition_val, target_val)` and `tf.data`
      of `(condition, target[, sample_weight])` pairs: the model maps an
      input (the condition) to a density over the target, as a Keras
      regressor maps inputs to predictions of targets. The dict form
      `{"x": target, "conditional_input": condition}` (no `y`) is equivalent
      and is what `predict` takes (it returns the per-example score
      `log p(target | condition)`).
    * Arrays (any of these forms) come in batches of one shape, the last padded
      with zero-weight rows, so each step compiles once; `loss` and `val_loss`
      are exact means over the real rows; `class_weight` is an error
      (`tfp_flows.keras.batching`). Datasets are batched as they come.

    A missing condition for a conditional flow, or one for an unconditional
    flow, is a `ValueError` naming `conditional_input`; data of the wrong
    dtype, rank or event size a `TypeError` / `ValueError` in the library's
    form (`validation.check_data`), checked before Keras adapts the data for
    NumPy arrays, when tracing for tensors and datasets, and at run time when
    a dataset's event size is unknown when tracing (outside XLA).

    #### Seeds

    Every step draws its stochastic estimates (Hutchinson probes, the ELBO's
    and IWAE's samples, reverse KL's samples) from the stateless seed
    `(seed, optimizer.iterations)` (folded with the replica id under
    `tf.distribute`); evaluation uses `(seed, 0)`, so an estimate is
    reproducible. `model.seed` may be set at any time: the setter discards
    Keras' compiled train/test/predict functions (the seed is a constant of
    the compiled step), so the next call retraces with the new seed.

    #### Precision

    float32 (default) and float64 (build the flow with `dtype="float64"`).
    A Keras mixed-precision policy (`mixed_float16`, `mixed_bfloat16`) is
    rejected at construction: log-determinants summed over layers in half
    precision lose the density.

    Args:
      distribution: a `tfd.Distribution` (e.g. a `tfd.TransformedDistribution`
        of this library's bijectors). Build it inside `strategy.scope()` when
        training under `tf.distribute`.
      objective: `tfp_flows.keras.objectives.Objective` or a name ('nll',
        'elbo', 'iwae'); default maximum likelihood.
      seed: integer base of the stateless per-step seeds (settable later).
      validate_args: if True, every batch is checked for NaN/Inf (an
        `InvalidArgumentError` naming the input) instead of training on it.

    #### Examples

    ```python
    flow = tfp_flows.flows.real_nvp(event_size=2)
    model = tfp_flows.keras.FlowModel(flow)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    model.initialize_from_data(x_train[:1024])
    model.fit(x_train, batch_size=256, epochs=20, validation_data=(x_val,))

    # p(y | c): condition in, density over the target out.
    cond = tfp_flows.keras.FlowModel.from_flow("real_nvp", event_size=2, conditional_size=1)
    cond.compile(keras.optimizers.Adam(1e-3))
    cond.fit(c_train, y_train, batch_size=256, epochs=20, validation_data=(c_val, y_val))
    samples = cond.sample(100, conditional_input=[0.5])      # 100 draws of p(y | c=0.5)
    ```
    """

    def __init__(self, distribution, objective=None, seed=0, validate_args=False, **kwargs):
        validation.check_precision_policy(_OWNER)
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
        self.seed = seed
        self.validate_args = bool(validate_args)
        self._flow_spec = None
        self.built = True

    @classmethod
    def from_flow(cls, flow, objective=None, seed=0, validate_args=False, **flow_kwargs):
        """Builds a registered flow by name; the model then saves with `model.save`."""
        validation.check_precision_policy(_OWNER)
        model = cls(build_flow(flow, **flow_kwargs), objective=objective, seed=seed,
                    validate_args=validate_args)
        model._flow_spec = {"flow": flow, "flow_kwargs": dict(flow_kwargs)}
        return model

    @property
    def distribution(self):
        """The wrapped flow distribution."""
        return self._distribution

    @property
    def seed(self):
        """Integer base of the per-step stateless seeds; setting it resets compiled steps."""
        return self._seed

    @seed.setter
    def seed(self, value):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral | np.integer):
            raise TypeError(f"`seed` must be an integer; got {value!r}.")
        if not -2**31 <= int(value) < 2**31:
            raise ValueError(f"`seed` must fit in int32; got {value}.")
        self._seed = int(value)
        self._reset_compiled_functions()

    def with_trace(self, trace):
        """Switches every FFJORD block to `trace` ('exact' or 'hutchinson'), in place.

        The distribution is rebuilt by `tfp_flows.flows.with_trace` (new `FFJORD` bijectors
        sharing the trained vector fields), Keras' compiled functions are discarded (the next
        `fit` / `evaluate` / `predict` uses the new trace) and a model built with `from_flow`
        records `trace` in its config, so it saves and loads with it. Returns the model.

        Raises:
          ValueError: the distribution has no FFJORD block, or `trace` is unknown.
        """
        new = _with_trace(self._distribution, trace)
        object.__setattr__(self, "_distribution", new)
        self._reset_compiled_functions()
        if self._flow_spec is not None:
            self._flow_spec["flow_kwargs"]["trace"] = trace
        return self

    set_trace = with_trace

    def _reset_compiled_functions(self):
        # Keras rebuilds these (public attributes, None until `make_*_function` runs).
        self.train_function = None
        self.test_function = None
        self.predict_function = None

    # -- Keras hooks ---------------------------------------------------------

    def call(self, inputs, training=False):
        """Per-example loss of the objective on `inputs` (`x` or `{"x", "conditional_input"}`)."""
        x, c = _unpack(inputs)
        if self.objective.needs_data:
            c = self._check_condition(c, batch_rank=1)
            x = self._check_data(x, batch_rank=1)
        optimizer = getattr(self, "optimizer", None)
        step = optimizer.iterations if training and optimizer is not None else 0
        seed = objectives.seed_for_step(self._seed, step)
        out = self.objective(self._distribution, x, conditional_input=c, seed=seed,
                             training=training)
        if isinstance(out, tuple):
            out, penalty = out
            if training:
                self.add_loss(penalty)
        return out

    def train_step(self, data):
        """Keras' train step on `data` in any accepted form (`x`, `(x,)`, `(x, c)`, a dict);
        the epoch's loss is weighted by `sum(sample_weight)` (`batching.train_step`)."""
        return batching.train_step(self, self._keras_form(data))

    def test_step(self, data):
        """Keras' test step on `data` in any accepted form (as `train_step`)."""
        return batching.test_step(self, self._keras_form(data))

    def make_train_function(self, force=False):
        """Keras' train function: one compiled call per step where that is equivalent."""
        steps.make_function(self, "train", force, super().make_train_function)

    def make_test_function(self, force=False):
        """Keras' test function: one compiled call per step where that is equivalent."""
        steps.make_function(self, "test", force, super().make_test_function)

    def _keras_form(self, data):
        """`(condition, target[, weight])` batches as `({"x": target, "conditional_input":
        condition}, None, weight)`; anything else unchanged."""
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            return data
        self._check_y(x, y)
        inputs = {"x": y, "conditional_input": x}
        return (inputs,) if weight is None else (inputs, None, weight)

    def _check_y(self, x, y):
        if y is None:
            return
        if not contract.is_conditional(self._distribution):
            raise ValueError(f"{_OWNER}: `y` must be None for an unconditional flow (a density "
                             f"has no targets); supported forms: {_FORMS}; got a "
                             f"{type(y).__name__} `y`.")
        if isinstance(x, dict):
            raise ValueError(f"{_OWNER}: pass the data either as `x=condition, y=target` or as "
                             "`x={'x': target, 'conditional_input': condition}`, not both; got "
                             f"dict `x` with keys {sorted(x)} and a `y`.")

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
        """`keras.Model.fit`; `fit(condition, target)` for a conditional flow (see the class
        docstring; array data are padded, `batching`); reverse KL needs no `x`."""
        batching.check_class_weight(kwargs.get("class_weight"))
        if x is None and not self.objective.needs_data:
            if steps_per_epoch is None:
                raise ValueError("`steps_per_epoch` is required when fitting without data "
                                 f"({type(self.objective).__name__}).")
            x = tf.data.Dataset.from_tensors(tf.zeros([1])).repeat()
            kwargs["shuffle"] = False  # nothing to shuffle; avoids Keras' warning
        elif x is None:
            raise ValueError(f"`x` is required: {type(self.objective).__name__} trains from data.")
        else:
            self._check_arrays(x, y)
        if kwargs.get("callbacks"):  # a GuardNonFinite goes first and scores this data
            kwargs["callbacks"] = guard.attach(kwargs["callbacks"], self._dict_form(x, y)[0])
        if distributed.needs_own_loop(self.distribute_strategy):
            # Keras 3's fit does not run under MultiWorkerMirroredStrategy
            # (https://github.com/keras-team/keras/issues/20585).
            return distributed.fit_distributed(self, *self._dict_form(x, y),
                                               steps_per_epoch=steps_per_epoch, **kwargs)
        self._build_optimizer()
        x, y, steps_per_epoch, kwargs = batching.fit_data(self, x, y, steps_per_epoch, kwargs)
        return super().fit(x, y, steps_per_epoch=steps_per_epoch, **kwargs)

    def _build_optimizer(self):
        """Creates the optimizer's slot variables before the first step is traced (Keras
        builds them inside it: two traces and compiles; docs/performance.md)."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            with self.distribute_strategy.scope():
                optimizer.build(self.trainable_variables)

    def _dict_form(self, x, y):
        """`(condition, target)` data in the dict form (the distributed loop ignores `y`)."""
        if y is None:
            return x, None
        if isinstance(x, tf.data.Dataset):
            def to_dict(*batch):
                features, _, weight = self._keras_form(batch)
                # The loop reads (x, y, weight); a FlowModel ignores y.
                return (features,) if weight is None else (features, weight, weight)
            return x.map(to_dict), None
        return {"x": y, "conditional_input": x}, None

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, return_dict=False, **kwargs):
        """`keras.Model.evaluate`; `evaluate(condition, target)` for a conditional flow."""
        if x is not None and self.objective.needs_data:
            self._check_arrays(x, y)
        if not kwargs.get("_use_cached_eval_dataset"):  # (fit's validation: Keras' own cache)
            x, y, sample_weight, batch_size = batching.evaluation_data(
                self, x, y, sample_weight, batch_size)
        return super().evaluate(x, y, batch_size, verbose, sample_weight, steps, callbacks,
                                return_dict, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """`keras.Model.predict`: the per-example score (`log p(x)` for maximum likelihood);
        a conditional flow takes the dict form `{"x": target, "conditional_input": c}`.
        Array data are padded to batches of one shape; only the real rows are returned."""
        if self.objective.needs_data:
            self._check_arrays(x, None)
        x, batch_size, rows = batching.prediction_data(self, x, batch_size)
        out = super().predict(x, batch_size, verbose, steps, callbacks)
        return out if rows is None else out[:rows]

    def _check_arrays(self, x, y):
        """The data checks on arrays, before Keras slices them (datasets and generators are
        checked in `call`, when tracing)."""
        self._check_y(x, y)
        if y is not None:
            target, c = y, x
        elif isinstance(x, dict):
            target, c = _unpack(x)
        elif _is_array_like(x):
            target, c = x, None
        else:
            return
        if _is_array_like(c) or c is None:
            self._condition_presence(c)
            if c is not None:
                self._check_condition_shape(c, batch_rank=1, convert=False)
        if _is_array_like(target):
            self._check_data(target, batch_rank=1, convert=False)

    def _check_data(self, x, batch_rank=0, convert=True):
        x = validation.check_data(x, self._distribution.event_shape, self._distribution.dtype,
                                  _OWNER, batch_rank=batch_rank, convert=convert)
        if self.validate_args and convert:
            x = tf.debugging.assert_all_finite(x, "FlowModel: data must be finite (no NaN/Inf).")
        return x

    def _condition_presence(self, c):
        if c is None or not contract.is_conditional(self._distribution):
            contract.check_conditional_input(self._distribution, c, owner=_OWNER)

    def _check_condition_shape(self, c, batch_rank=0, convert=True):
        size = contract.conditional_size(self._distribution)
        return validation.check_data(c, [size], self._distribution.dtype, _OWNER,
                                     name="`conditional_input`", batch_rank=batch_rank,
                                     floating_only=False, convert=convert)

    def _check_condition(self, c, batch_rank=0):
        """`conditional_input` checked against the flow (presence, size, dtype) as a tensor."""
        c = contract.check_conditional_input(self._distribution, c, self._distribution.dtype,
                                             owner=_OWNER)
        return None if c is None else self._check_condition_shape(c, batch_rank)

    # -- Convenience ---------------------------------------------------------

    def log_prob(self, x, conditional_input=None, seed=None, **kwargs):
        """`log p(x | conditional_input)` of the distribution, via `contract.log_prob`.

        Args:
          x: `[..., *event_shape]`.
          conditional_input: `[..., C]` for a conditional flow (broadcast against
            `x`'s batch shape), else None.
          seed: stateless seed of stochastic estimates (FFJORD's Hutchinson
            probes, importance samples); None draws fresh noise.
          **kwargs: passed to the library distribution that takes them (e.g.
            `num_samples`).
        """
        x = self._check_data(x)
        c = self._check_condition(conditional_input)
        return contract.log_prob(self._distribution, x, c, seed=seed, **kwargs)

    def sample(self, sample_shape=(), conditional_input=None, seed=None, **kwargs):
        """Draws `[*sample_shape, *event_shape]` samples, via `contract.sample`.

        Args:
          sample_shape: int or shape.
          conditional_input: for a conditional flow, `[C]` (every sample from
            `p(. | c)`, one condition) or `[*sample_shape, C]` (one condition per
            sample, e.g. `sample(n, conditional_input=c_batch)` with `c_batch`
            of shape `[n, C]`); None for an unconditional flow.
          seed: stateless seed (a pair of ints or an int tensor); None is random.
          **kwargs: passed to a library distribution's `sample` (e.g. `temperature`).

        #### Examples

        ```python
        y = model.sample(500, conditional_input=[0.3], seed=(0, 1))      # p(y | c=0.3)
        y = model.sample(len(c_test), conditional_input=c_test, seed=(0, 2))  # one per row
        ```
        """
        c = self._check_condition(conditional_input)
        return contract.sample(self._distribution, sample_shape, c, seed=seed, **kwargs)

    def initialize_from_data(self, x, conditional_input=None):
        """Data-dependent initialisation (ActNorm statistics, inducing points) from a batch."""
        x = self._check_data(x, batch_rank=1)
        c = self._check_condition(conditional_input, batch_rank=1)
        contract.initialize_from_data(self._distribution, x, c)

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


def _is_array_like(value):
    # Datasets, generators and Keras' tuple forms are checked per batch, in `call`.
    return isinstance(value, np.ndarray | tf.Tensor)
