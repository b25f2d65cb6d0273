"""Keras' train and test functions with one compiled call per step.

For a `tf.data` iterator, Keras 3 (TensorFlow backend) wraps every step in two
`tf.function`s: an outer one, never compiled by XLA, that pulls the batch from
the iterator inside the graph and returns a `tf.experimental.Optional`, and
inside it the step itself (`jit_compile` as compiled). Each call then pays the
outer function's dispatch, the nested call into the XLA program, and two eager
ops on the `Optional` (`has_value`, `get_value`); measured on a 5-layer RealNVP
on two moons (batch 512, load 1), that is about 0.6 ms of a 4.8 ms step, and the
outer graph is traced and optimised once more on the first call.

`direct_step_function` returns the function Keras itself uses for Python
iterators: the batch is taken from the iterator in Python and the step is one
call (`StopIteration` at the end of an epoch, as Keras expects). The call goes
to the step's concrete function for the iterator's element spec, looked up once
per iterator: calling the `tf.function` itself binds the arguments to its
signature and hashes every captured variable and optimizer slot on each call
(about 0.2 ms a step for a 5-layer MAF, 97 captures), which a hand-written
`tf.function` step pays too. Where the batches are plain tensors (and Nones, as
the library's own array batches `(x, None, weight)`), the iterator's flat
tensors go to the concrete function as they are (`tfp_compat.flat_reader` /
`call_flat`): `next(iterator)` would rebuild the nested batch in Python, about
0.35 ms a step on 2 cores, only for the call to flatten it again.

The traced step is Keras' own (`model.train_step` / `test_step` under
`distribute_strategy.run`), so the numbers are the same. It is used only
where it is equivalent to Keras' function: one step per execution, compiled
(not `run_eagerly`), one replica (with several replicas Keras reduces the
per-replica outputs, which its function does and this one does not).
"""

import weakref

import tensorflow as tf

from tfp_flows.internal import tfp_compat


def direct_step_function(model, step):
    """`fn(iterator) -> logs` running `step` on `next(iterator)`, or None where Keras'
    own function must be used (see the module docstring)."""
    if model.run_eagerly or model.steps_per_execution != 1:
        return None
    strategy = model.distribute_strategy
    if strategy.num_replicas_in_sync != 1:
        return None

    @tf.autograph.experimental.do_not_convert
    def one_step_on_data(data):
        return strategy.run(step, args=(data,))

    compiled = tf.function(one_step_on_data, reduce_retracing=True,
                           jit_compile=model.jit_compile)

    def function(iterator):
        if function.source is None or function.source() is not iterator:
            spec = _without_optionals(iterator.element_spec)
            if spec != function.spec:
                # Trace for the dataset's element spec (batch size unknown, as in Keras'
                # own function): shape checks see what they see there, and a partial last
                # batch reuses the trace (XLA still compiles once per shape).
                function.concrete = compiled.get_concrete_function(spec)
                function.spec = spec
            function.plain = spec == iterator.element_spec
            function.read = tfp_compat.flat_reader(iterator)
            function.source = weakref.ref(iterator)
        if function.read is not None:
            # The batch's flat tensors go straight to the step's concrete function: no
            # nested structure rebuilt by `next` (0.35 ms a step), no signature binding.
            return tfp_compat.call_flat(function.concrete, function.read())
        data = next(iterator)
        # The concrete function, not `compiled`: no per-call signature binding and
        # hashing of the captured variables (0.2 ms a step on a 5-layer MAF).
        return function.concrete(data if function.plain else _without_optionals(data))

    function.spec = function.concrete = function.source = function.read = None
    function.compiled = compiled  # the `tf.function` (e.g. for its tracing count)
    return function


def make_function(model, kind, force, keras_make):
    """Sets `model.{kind}_function` ('train' or 'test'): the direct step function where
    it applies, else Keras' own (`keras_make(force)`)."""
    attribute = f"{kind}_function"
    if getattr(model, attribute) is None or force:
        setattr(model, attribute, direct_step_function(model, getattr(model, f"{kind}_step")))
        if getattr(model, attribute) is None:
            keras_make(force=True)


def _without_optionals(structure):
    """As Keras: empty `tf.experimental.Optional`s in a batch (e.g. no sample weights), and
    their specs, are None to the step; so is the spec of a dataset's None component
    (`NoneTensorSpec`, whose value `next` gives as None)."""
    def plain(item):
        if isinstance(item, tf.experimental.Optional | tf.OptionalSpec):
            return None
        return None if type(item).__name__ == "NoneTensorSpec" else item
    return tf.nest.map_structure(plain, structure)
