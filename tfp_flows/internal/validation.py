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
