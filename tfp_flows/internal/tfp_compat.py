"""Every access to private TensorFlow Probability, TensorFlow and Keras names, in one place.

The library relies on a handful of names that TFP and TF do not export. Each is
wrapped here, once, so that a change in a supported version breaks one module
and one test (`tests/test_tfp_compat.py`) instead of failing somewhere deep in
a family:

* TFP's auto-composite constructors return private base classes when a part
  is not a `CompositeTensor` (our bijectors hold Keras layers), so
  `isinstance(d, tfd.TransformedDistribution)` is False for our flows; the
  private bases are the types to test against (`CHAIN_TYPES`, ...).
* `default_name(cls)`: TFP's snake-case naming of a class (`name_util`).
* `bijector_cache(bijector)`: TFP's forward/inverse cache, which FFJORD fills
  with the log-det of the solve it just ran.
* `flatten_module(obj, predicate)`: `tf.Module._flatten`, the only walk over a
  module's attributes that also looks into lists, dicts and non-module
  attributes (how Keras layers held by TFP objects are found).
* `flat_reader(iterator)` and `call_flat(concrete, tensors)`: a `tf.data`
  iterator's next element as its flat tensors, and a concrete function called
  with flat tensors (a compiled training step's per-call path, `keras/steps.py`).
"""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.bijectors.chain import _Chain
from tensorflow_probability.python.bijectors.invert import _Invert
from tensorflow_probability.python.distributions.transformed_distribution import (
    _TransformedDistribution,
)
from tensorflow_probability.python.internal import name_util

tfb = tfp.bijectors
tfd = tfp.distributions

CHAIN_TYPES = (_Chain,)
INVERT_TYPES = (_Invert,)
TRANSFORMED_TYPES = (_TransformedDistribution,)


def default_name(cls):
    """TFP's default name of an instance of `cls` (`ActNorm` -> `'act_norm'`)."""
    return name_util.strip_invalid_chars(name_util.camel_to_lower_snake(cls.__name__))


def bijector_cache(bijector):
    """TFP's forward/inverse cache of `bijector` (`forward_attributes(x, **kwargs)` etc.)."""
    return bijector._cache  # pylint: disable=protected-access


def flatten_module(obj, predicate):
    """Every value reachable from the `tf.Module` `obj` for which `predicate(value)` holds."""
    return obj._flatten(predicate=predicate,  # pylint: disable=protected-access
                        expand_composites=False)


def replica_loss_scale():
    """The factor Keras applies to a per-replica loss: `1 / num_replicas_in_sync`.

    Keras sums gradients over replicas and multiplies the logged loss back, so
    a loss written by hand (not a `keras.losses.Loss`) must carry this factor,
    as Keras' own losses do.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return 1.0 / replicas if replicas > 1 else 1.0


def pop_restored_initial_epoch(model):
    """The epoch `keras.callbacks.BackupAndRestore` restored into `model` (None if none).

    Keras 3's callback stores it in the private `model._initial_epoch`, which its own
    `fit` reads; a custom loop reads it here and clears it, so a later `fit` starts
    from its own `initial_epoch`.
    """
    epoch = getattr(model, "_initial_epoch", None)
    model._initial_epoch = None  # pylint: disable=protected-access
    return epoch


def flat_reader(iterator):
    """`read() -> list of tensors`: the next element of the `tf.data` iterator `iterator`
    as its flat tensors, in `tf.nest.flatten` order of `iterator.element_spec` with its
    None components left out (`StopIteration` at the end, as `next`); None where the
    elements are not only tensors and Nones, or `iterator` is not a local `tf.data` iterator.

    `next(iterator)` rebuilds the element's nested structure in Python on every call
    (about 0.35 ms for an `(x, None, weight)` batch on 2 cores, most of it `isinstance`
    checks against `typing` protocols), which a compiled step that takes the flat
    tensors does not need.
    """
    leaves = tf.nest.flatten(getattr(iterator, "element_spec", None))
    if not all(isinstance(s, tf.TensorSpec) or type(s).__name__ == "NoneTensorSpec"
               for s in leaves):
        return None
    try:
        resource = iterator._iterator_resource  # pylint: disable=protected-access
        types = iterator._flat_output_types  # pylint: disable=protected-access
        shapes = iterator._flat_output_shapes  # pylint: disable=protected-access
    except AttributeError:  # e.g. a distributed dataset's iterator
        return None
    tensors = [s for s in leaves if isinstance(s, tf.TensorSpec)]
    if [s.dtype for s in tensors] != list(types) or len(shapes) != len(tensors):
        return None

    def read():
        try:
            return tf.raw_ops.IteratorGetNext(iterator=resource, output_types=types,
                                              output_shapes=shapes)
        except tf.errors.OutOfRangeError:
            raise StopIteration from None
    return read


def call_flat(concrete, tensors):
    """`concrete(*structured args)` given the arguments' flat tensors (`tf.nest.flatten`
    order, Nones left out): without binding them to the signature again on every call."""
    return concrete._call_flat(tensors, concrete.captured_inputs)  # pylint: disable=protected-access
