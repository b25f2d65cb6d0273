"""Trace of the vector field's Jacobian for continuous-time flows: exact or Hutchinson.

Both estimators are one formula over a set of probe vectors `v_1..v_K`:

    tr(df/dz) ~= w * sum_k v_k^T (df/dz) v_k,
    ||df/dz||_F^2 ~= w * sum_k ||v_k^T (df/dz)||^2,

* exact: `v_k = e_k`, the `K = D` unit vectors, `w = 1`; both are exact.
* Hutchinson: `K = num_probes` random vectors with `E[v v^T] = I`
  (Rademacher or standard Gaussian), `w = 1 / K`; both are unbiased estimates.
  The probes are drawn once per ODE solve from a stateless seed and held fixed
  through it, as FFJORD requires (a fresh probe per function evaluation would
  not estimate the integral of one trace).

Jacobian-vector or vector-Jacobian products, either works for both sums
(`v^T J v` is the same number either way, and `E||J v||^2 = E||v^T J||^2 =
||J||_F^2` for probes with `E[v v^T] = I`):

* forward mode, when the field has a `jvp(t, z, tangents, conditional_input)`
  method (`tfp_flows.nets.ODENet` has one): `f` and all `K` products `J v_k`
  from one forward pass, about `1 + K` forward passes of work and no reverse
  pass, which also halves the work of differentiating the solve;
* otherwise reverse mode: `z` is tiled to `[K, ..., D]`, the field evaluated on
  all copies at once and `sum(f * v)` differentiated with respect to the copies
  (`K` vector-Jacobian products in one reverse pass, one graph).

The field must treat batch elements independently (no batch statistics).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import validation

TRACES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def check_trace(trace):
    if not isinstance(trace, str):
        raise TypeError(f"`trace` must be one of {list(TRACES)}; got {trace!r}.")
    return validation.one_of(trace, "trace", TRACES)


def check_probe(probe):
    if not isinstance(probe, str):
        raise TypeError(f"`probe` must be one of {list(PROBES)}; got {probe!r}.")
    return validation.one_of(probe, "probe", PROBES)


def make_probes(z, trace, num_probes=1, probe="rademacher", seed=None):
    """Probe vectors `[K, ..., D]` for `z` of shape `[..., D]`, and the weight `w`.

    `seed` is a stateless seed (anything `tfp.random.sanitize_seed` accepts);
    it is only used for Hutchinson probes. `None` draws a fresh random seed.
    """
    event_size = int(z.shape[-1])
    if trace == "exact":
        eye = tf.eye(event_size, dtype=z.dtype)
        eye = tf.reshape(eye, [event_size] + [1] * (z.shape.rank - 1) + [event_size])
        probes = tf.broadcast_to(eye, tf.concat([[event_size], tf.shape(z)], 0))
        probes.set_shape([event_size] + z.shape.as_list())
        return probes, 1.0
    shape = tf.concat([[num_probes], tf.shape(z)], 0)
    seed = tfp.random.sanitize_seed(seed, salt="ffjord_probes")
    if probe == "rademacher":
        probes = tfp.random.rademacher(shape, dtype=z.dtype, seed=seed)
    else:
        probes = tf.random.stateless_normal(shape, seed=seed, dtype=z.dtype)
    probes.set_shape([num_probes] + z.shape.as_list())
    return probes, 1.0 / num_probes


def augmented_dynamics(vector_field, probes, weight, regularize=False, exact=False):
    """The right-hand side of the augmented ODE of a continuous-time flow.

    Returns `fn(t, state, inputs)` with `state = (z, log_det[, kinetic, frobenius])`
    and `inputs = ()` or `(conditional_input,)`, computing

        dz/dt = f(t, z),  dlog_det/dt = tr(df/dz),
        dkinetic/dt = ||f||^2,  dfrobenius/dt = ||df/dz||_F^2   (if `regularize`)

    with the trace and Frobenius norm from `probes` (see the module docstring).
    Integrating `log_det` from `t_a` to `t_b` gives `log|det dz(t_b)/dz(t_a)|`.
    """

    num_probes = int(probes.shape[0])
    forward_mode = callable(getattr(vector_field, "jvp", None))
    # The Frobenius norm needs the products themselves; the trace alone may have a
    # cheaper exact form (ODENet: independent of D for up to two hidden layers).
    closed_form = (exact and not regularize
                   and callable(getattr(vector_field, "exact_trace", None)))

    def fn(t, state, inputs):
        z = state[0]
        conditional_input = inputs[0] if inputs else None
        if closed_form:
            return vector_field.exact_trace(t, z, conditional_input=conditional_input)
        if forward_mode:
            # Jacobian-vector products: one forward pass with K tangents.
            dz, jv = vector_field.jvp(t, z, probes, conditional_input=conditional_input)
        else:
            # Vector-Jacobian products: K copies of z, one reverse pass. Tile with static
            # multiples (not broadcast_to a dynamic shape): the gradient of a dynamic
            # broadcast does not compile under XLA inside a while loop.
            multiples = [num_probes] + [1] * z.shape.rank
            copies = tf.tile(z[None], multiples)
            if conditional_input is not None:
                conditional_input = tf.tile(conditional_input[None], multiples)
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(copies)
                f = vector_field(t, copies, conditional_input=conditional_input)
                projected = tf.reduce_sum(f * probes)
            jv = tape.gradient(projected, copies)  # jv[k] = v_k^T df/dz
            dz = f[0]
        trace = weight * tf.reduce_sum(jv * probes, axis=[0, -1])
        if not regularize:
            return dz, trace
        kinetic = tf.reduce_sum(tf.square(dz), axis=-1)
        frobenius = weight * tf.reduce_sum(tf.square(jv), axis=[0, -1])
        return dz, trace, kinetic, frobenius

    return fn
