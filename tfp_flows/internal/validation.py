"""Argument checks shared by every module.

Structural arguments (counts, sizes, choices) are checked eagerly at
construction and raise `ValueError`/`TypeError` naming the argument, what was
expected and what was given. Checks on tensor *values* only run under
`validate_args=True`, as in TFP.
"""

import numbers

import numpy as np
import tensorflow as tf


def positive_int(value, name, allow_zero=False):
    """Returns `value` as an int, or raises naming `name`."""
    lower = 0 if allow_zero else 1
    kind = "non-negative" if allow_zero else "positive"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | np.integer):
        raise TypeError(f"`{name}` must be a {kind} integer; got {value!r}.")
    if value < lower:
        raise ValueError(f"`{name}` must be a {kind} integer; got {value}.")
    return int(value)


def positive_float(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real | np.floating):
        raise TypeError(f"`{name}` must be a positive number; got {value!r}.")
    if not value > 0:
        raise ValueError(f"`{name}` must be a positive number; got {value}.")
    return float(value)


def int_tuple(values, name, allow_empty=True):
    """Checks a sequence of positive ints (e.g. `hidden_units`)."""
    if isinstance(values, numbers.Integral):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(
            f"`{name}` must be a sequence of positive integers; got {values!r}.") from None
    if not values and not allow_empty:
        raise ValueError(f"`{name}` must not be empty.")
    return tuple(positive_int(v, f"{name}[{i}]") for i, v in enumerate(values))


def one_of(value, name, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}; got {value!r}.")
    return value


def float_dtype(dtype, name="dtype"):
    """Returns a floating `tf.DType`; float32 and float64 are supported."""
    try:
        dtype = tf.as_dtype(dtype)
    except TypeError:
        raise TypeError(f"`{name}` must be float32 or float64; got {dtype!r}.") from None
    if dtype not in (tf.float32, tf.float64):
        raise TypeError(f"`{name}` must be float32 or float64; got {dtype.name}.")
    return dtype


def check_event_size(x, event_size, owner, validate_args=False):
    """Static check of the last axis of `x` against `event_size`.

    Raises `ValueError` naming `owner` when the static size differs; when the
    size is only known at run time and `validate_args` is set, returns an
    assertion-guarded tensor instead.
    """
    static = tf.compat.dimension_value(tf.TensorShape(x.shape)[-1:].num_elements()
                                       if x.shape.rank else None)
    if x.shape.rank == 0:
        raise ValueError(f"{owner}: expected inputs of shape [..., {event_size}]; got a scalar.")
    if static is not None and static != event_size:
        raise ValueError(
            f"{owner}: expected inputs of shape [..., {event_size}]; got shape {x.shape}.")
    if static is None and validate_args:
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(x)[-1], event_size,
                message=f"{owner}: last axis of the input must have size {event_size}.")]):
            return tf.identity(x)
    return x


def assert_finite(x, name, validate_args):
    """Under `validate_args`, fails loudly on NaN/Inf inputs instead of returning NaN."""
    if not validate_args:
        return x
    return tf.debugging.assert_all_finite(x, f"`{name}` must be finite (no NaN or Inf).")


def _shape_text(shape):
    dims = ", ".join("..." if d is None else str(d) for d in shape)
    return f"[..., {dims}]" if dims else "[...]"


def check_data(x, event_shape, dtype, owner, name="inputs", batch_rank=0, floating_only=True,
               convert=True):
    """Checks data for a flow with `event_shape`; returns it as a `dtype` tensor.

    The one home of the checks every entry point runs on data (`FlowModel`'s
    `fit` / `evaluate` / `predict`, `log_prob`, and on conditions):

    * strings and other non-numeric data: `TypeError`;
    * integer data when `floating_only`: `TypeError` (data of a density must
      be real-valued; a condition may be an integer label, which is cast);
    * a scalar, or fewer than `len(event_shape) + batch_rank` axes (inside
      `fit`, `batch_rank=1`: Keras adds the batch axis, so rank-1 data of
      shape `[100]` for a 2-D flow is a batch of scalars, not of points):
      `ValueError`;
    * trailing axes that differ from `event_shape`: `ValueError` when the
      shape is known when tracing; when it is not (a `tf.data` pipeline with
      unknown shapes), a `tf.debugging.Assert` with the same message (XLA
      drops assertions: under `jit_compile=True` only the static check runs).

    Messages read `"FlowModel: expected inputs of shape [..., 2]; got shape (5, 3)."`.

    Args:
      x: array-like or tensor.
      event_shape: the flow's event shape (`TensorShape` or sequence).
      dtype: the flow's dtype; `x` is cast to it.
      owner: name that starts the message (e.g. `'FlowModel'`).
      name: what `x` is called in the message (`'inputs'`, `'`conditional_input`'`).
      batch_rank: number of batch axes `x` must have at least.
      floating_only: reject integer data.
      convert: return `x` as a tensor; with False `x` is only checked (no
        copy) and returned as it is.
    """
    event = tf.TensorShape(event_shape)
    expected = _shape_text(event.as_list() if event.rank is not None else [])
    if isinstance(x, str | bytes):
        raise TypeError(f"{owner}: {name} must be a floating-point array of shape {expected}; "
                        f"got a string {x!r:.40}.")
    if tf.is_tensor(x):
        shape, kind = tf.TensorShape(x.shape), tf.as_dtype(x.dtype)
    else:
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{owner}: {name} must be a floating-point array of shape "
                            f"{expected}; got an array of dtype {x.dtype}.")
        shape, kind = tf.TensorShape(x.shape), tf.as_dtype(x.dtype)
    if not (kind.is_floating or kind.is_integer or kind.is_bool):
        raise TypeError(f"{owner}: {name} must be a floating-point array of shape {expected}; "
                        f"got dtype {kind.name}.")
    if floating_only and not kind.is_floating:
        raise TypeError(f"{owner}: {name} must be floating point (float32 or float64); got "
                        f"dtype {kind.name}.")
    rank, event_rank = shape.rank, event.rank
    if rank is not None and event_rank is not None:
        if rank == 0:
            raise ValueError(f"{owner}: expected {name} of shape {expected}; got a scalar.")
        if rank < event_rank + batch_rank:
            batch = "[batch, " + expected[len("[..., "):] if batch_rank else expected
            raise ValueError(f"{owner}: expected {name} of shape {batch}; got shape {shape}.")
        if not event.is_compatible_with(shape[rank - event_rank:]):
            raise ValueError(f"{owner}: expected {name} of shape {expected}; got shape "
                             f"{shape}.")
    if not convert:
        return x
    x = tf.cast(x, dtype)
    if (rank is not None and event_rank and event.is_fully_defined()
            and not shape[rank - event_rank:].is_fully_defined()):
        ok = tf.reduce_all(tf.equal(tf.shape(x)[rank - event_rank:], event.as_list()))
        check = tf.debugging.Assert(
            ok, [f"{owner}: expected {name} of shape {expected}; got shape", tf.shape(x)])
        with tf.control_dependencies([check]):
            x = tf.identity(x)
    return x


def check_precision_policy(owner):
    """Rejects a Keras mixed-precision global policy (flows compute in float32 or float64)."""
    import keras  # here: the rest of this module does not need Keras

    policy = keras.config.dtype_policy()
    if policy.compute_dtype not in ("float32", "float64"):
        raise ValueError(
            f"{owner}: the Keras dtype policy {policy.name!r} computes in "
            f"{policy.compute_dtype}; flows need float32 or float64 (log-determinants summed "
            "over layers in half precision lose the density). Use "
            "`keras.mixed_precision.set_global_policy('float32')`, and build the flow with "
            "`dtype='float64'` for double precision.")
