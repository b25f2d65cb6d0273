"""Latent-variable families as TFP joint distributions: funnels, augmented flows and LGF.

`Funnel`, `Augmented` and `LGF` are distributions over the data `x`; their
latent variables (the funnel's latent `z` and dropped coordinates, the
augmentation's `eps`, LGF's indices `u_1..u_L`) are integrated out. Their
`joint_distribution()` methods return a `tfd.JointDistribution` over the
latent structure instead, so the latents can be pinned
(`experimental_pin`), sampled, and inferred with `tfp.mcmc` and `tfp.vi`.
Every joint is a `LatentJoint`: a `tfd.JointDistributionNamed` over named
vector parts whose `log_prob` is the family's exact joint log-density (not a
sum over factors) and whose `sample` runs the family's generative process.

**Funnel** (`funnel_joint`), parts `z in R^L` (the latent, `L = D - m`) and
`x_dropped in R^m`. Generative process, given an optional condition `c`:

    z ~ p_Z(. | c),   x_dropped ~ p_phi(. | z, c),
    x = T(z, x_dropped) = pre(merge(x_dropped, F(z; x_dropped, c)); c),

`merge` putting the dropped and kept coordinates back in place and `pre` the
optional flow layers before the split (identity if none). The joint density
is tractable and factorised:

    log p(z, x_dropped | c) = log p_Z(z | c) + log p_phi(x_dropped | z, c).

`T` is a bijection of `R^D` for every `c` (given `x_dropped`, `z -> x_plus`
is `F`; the pre-flow is invertible), and `p(z, x_dropped | c)` is the density
of `T^-1(x)` for `x ~ p(x | c)`, so the funnel's exact density is the
change of variables

    log p(x | c) = log p(T^-1(x) | c) + log|det dT^-1(x)/dx|,
    log|det dT^-1/dx| = log|det dz/dx_plus| + log|det dh/dx|,

`h = pre^-1(x; c)`. `funnel_joint_bijector` is `T` as a `tfb.Bijector` from
the joint's sample (a dict `{"z", "x_dropped"}`) to `x`, so
`tfd.TransformedDistribution(joint, bijector)` is the funnel itself.
Pinning `x_dropped` gives the posterior of the latent,
`p(z | x_dropped, c) ∝ p_Z(z | c) p_phi(x_dropped | z, c)`, and then
`x_plus = F(z; x_dropped, c)`: with no pre-flow, the conditional of the kept
coordinates given the dropped ones.

**Augmented flow** (`augmented_joint`), parts `x in R^D` and `eps in R^B`,
with the density of the flow on the concatenation,

    log p(x, eps | c) = log p_T(concat(x, eps) | c),

exact for a bijective flow (it does not factorise into tractable
conditionals); sampling draws from `p_T` and splits. Pinning `x` gives
`p(eps | x, c) ∝ p_T(x, eps | c)`, the optimal importance proposal: its
normaliser is the marginal `p(x | c)`.

**LGF** (`lgf_joint`), parts `u_1..u_L in R^U` (layer l's index, layers in
density order, data first) and `x in R^D`. Generative process (Cornish et
al.): `z_L ~ p_Z(. | c)` at the base; for l = L..1,
`u_l ~ p(u_l | z_l, c)` and `z_{l-1} = G_l^-1(z_l; u_l, c)`; `x = z_0`.
(The layer-l prior is `lgf.priors[l-1]`, evaluated at the point on the base
side of layer l.) For fixed `u_{1:L}` the map from the base point to `x` is a
bijection, so

    log p(x, u_{1:L} | c) = log p_Z(z_L | c)
        + sum_l [log p(u_l | z_l, c) + log|det D G_l(z_{l-1}; u_l, c)|],

with `z_0 = x`, `z_l = G_l(z_{l-1}; u_l, c)`: the `p` part of the LGF's ELBO
integrand, `log w = log p(x, u | c) - log q(u | x, c)`. Its marginal over `u`
is the LGF density `p(x | c)`; pinning `x` gives the exact posterior
`p(u_{1:L} | x, c)` that the learned `q(u_l | z_l, c)` approximates.

**Conditions.** `conditional_input=c` (required for a conditional family,
rejected for an unconditional one) is bound into the joint: `c` of shape
`[C]` gives a joint with batch shape `[]`, `[*batch, C]` a joint with batch
shape `batch` (a different condition per batch member).

**What the joint does not do.** `log_prob_parts` (the density of the
augmented flow and of LGF is not a product over parts), and `sample` with
some parts given (conditional sampling needs inference: use `tfp.mcmc` or
`tfp.vi` on `experimental_pin(...)`).

#### References

[1] S. Klein, J. A. Raine, S. Pina-Otey, S. Voloshynovskiy and T. Golling.
    Funnels: Exact maximum likelihood with dimensionality reduction.
    arXiv:2112.08069, 2021.
[2] Chin-Wei Huang, Laurent Dinh, Aaron Courville. Augmented Normalizing
    Flows: Bridging the Gap Between Generative Flows and Latent Variable
    Models. arXiv:2002.07101, 2020.
[3] Rob Cornish, Anthony Caterini, George Deligiannidis, Arnaud Doucet.
    Relaxing Bijectivity Constraints with Continuously Indexed Normalising
    Flows. ICML 2020.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.distributions.importance import sample_rows
from tfp_flows.internal import contract

tfb = tfp.bijectors
tfd = tfp.distributions


class LatentJoint(tfd.JointDistributionNamed):
    """A `tfd.JointDistributionNamed` over named vectors with a given joint density and sampler.

    The parts are declared by `sizes` (name -> event size, in order); the
    model's nodes are shape placeholders (unconstrained, so the default event
    space bijector is the identity), and `log_prob`, `unnormalized_log_prob`
    and `sample` call the functions given:

    * `log_prob_fn(values, c) -> [...]`, `values` a dict of `[..., size]`
      tensors (any broadcastable batch shapes), `c` the bound condition
      (`[*batch, C]`) or None;
    * `sample_fn(n, c, seed) -> dict` of `[n, size]` tensors, `c` `[n, C]` or
      None.

    Built by `funnel_joint`, `augmented_joint` and `lgf_joint` (the families'
    `joint_distribution()` methods); see the module docstring for their math.
    """

    def __init__(self, sizes, log_prob_fn, sample_fn, dtype, conditional_input=None,
                 name="LatentJoint"):
        dtype = tf.as_dtype(dtype)
        c = conditional_input
        batch = [] if c is None else [int(d) for d in c.shape[:-1]]
        self._sizes = collections.OrderedDict((k, int(v)) for k, v in sizes.items())
        self._log_prob_fn, self._sample_fn = log_prob_fn, sample_fn
        self._condition, self._batch = c, batch
        model = collections.OrderedDict(
            (k, tfd.Independent(tfd.Normal(tf.zeros(batch + [d], dtype), tf.ones([], dtype)),
                                1, name=k))
            for k, d in self._sizes.items())
        super().__init__(model, batch_ndims=len(batch), name=name)

    @property
    def part_sizes(self):
        """Name -> event size of every part, in order."""
        return collections.OrderedDict(self._sizes)

    @property
    def conditional_input(self):
        """The bound condition `c` (`[*batch, C]`), or None."""
        return self._condition

    def _values(self, value):
        value = dict(value)
        return {k: tf.convert_to_tensor(value[k], self.dtype[k]) for k in self._sizes}

    def _log_prob(self, value):
        return self._log_prob_fn(self._values(value), self._condition)

    def _unnormalized_log_prob(self, value):
        return self._log_prob(value)

    def _sample_n(self, sample_shape, seed=None, value=None):
        if value is not None and any(v is not None for v in tf.nest.flatten(value)):
            raise NotImplementedError(
                f"{self.name}: sampling with some parts given is conditional inference; pin "
                "them (`experimental_pin`) and use tfp.mcmc or tfp.vi.")
        shape = tf.get_static_value(tf.reshape(tf.cast(sample_shape, tf.int32), [-1]))
        if shape is None:
            raise ValueError(f"{self.name}: `sample_shape` must be static; got a dynamic one.")
        shape = [int(s) for s in shape]
        full = shape + self._batch
        n = int(np.prod(full)) if full else 1
        c = self._condition
        if c is not None:
            c = tf.reshape(tf.broadcast_to(c, full + [c.shape[-1]]), [n, c.shape[-1]])
        out = self._sample_fn(n, c, tfp.random.sanitize_seed(seed, salt="latent_joint"))
        return collections.OrderedDict((k, tf.reshape(out[k], full + [d]))
                                       for k, d in self._sizes.items())

    def _sample_and_log_prob(self, sample_shape, seed, value=None, **kwargs):
        x = self._sample_n(sample_shape, seed, value)
        return x, self._log_prob(x)

    def log_prob_parts(self, *args, **kwargs):
        raise NotImplementedError(f"{self.name}: the joint density is not a sum over parts; "
                                  "use `log_prob`.")

    def unnormalized_log_prob_parts(self, *args, **kwargs):
        return self.log_prob_parts()


# -- helpers --------------------------------------------------------------------------


def _bind_condition(family, conditional_input, owner):
    """The checked condition with a static shape (`[*batch, C]`), or None."""
    c = contract.check_conditional_input(family, conditional_input, family.dtype, owner=owner)
    if c is not None and not c.shape.is_fully_defined():
        raise ValueError(f"{owner}: `conditional_input` must have a static shape [..., C]; "
                         f"got {c.shape}.")
    return c


def _broadcast(tensors, c=None):
    """`tensors` (and `c`) broadcast to their common batch shape (all but the last axis)."""
    allt = list(tensors) + ([] if c is None else [c])
    batch = tf.shape(allt[0])[:-1]
    for t in allt[1:]:
        batch = tf.broadcast_dynamic_shape(batch, tf.shape(t)[:-1])
    out = [tf.broadcast_to(t, tf.concat([batch, tf.shape(t)[-1:]], 0)) for t in allt]
    return (out, None) if c is None else (out[:-1], out[-1])


# -- funnel -----------------------------------------------------------------------------


def funnel_joint(funnel, conditional_input=None):
    """`p(z, x_dropped | c) = p_Z(z | c) p_phi(x_dropped | z, c)` (module docstring)."""
    owner = f"{funnel.name}.joint_distribution"
    c = _bind_condition(funnel, conditional_input, owner)
    base, decoder = funnel.base, funnel.decoder

    def log_prob_fn(values, cond):
        (z, x_d), cond = _broadcast([values["z"], values["x_dropped"]], cond)
        return (contract.log_prob(base, z, funnel._for(base, cond))
                + decoder.log_prob(x_d, z, **funnel._decoder_kwargs(cond)))

    def sample_fn(n, cond, seed):
        base_seed, dec_seed = tfp.random.split_seed(seed, n=2, salt="funnel_joint")
        z = contract.sample(base, [n], funnel._for(base, cond), base_seed)
        x_d = decoder.sample(z, seed=dec_seed, **funnel._decoder_kwargs(cond))
        return {"z": z, "x_dropped": x_d}

    sizes = {"z": funnel.latent_size, "x_dropped": int(funnel.dropped_indices.size)}
    return LatentJoint(sizes, log_prob_fn, sample_fn, funnel.dtype, c,
                       name=f"{funnel.name}_joint")


class FunnelJointBijector(tfb.Bijector):
    """`T`: `concat([z, x_dropped]) -> x` of a funnel, for a bound condition (module docstring).

    `forward(v) = pre(merge(x_dropped, F(z; x_dropped, c)); c)`, `inverse(x)`
    is `concat([z, x_dropped])` of the funnel's density direction, and
    `inverse_log_det_jacobian(x) = log|det dz/dx_plus| + log|det dh/dx|`, the
    funnel's own log-determinant. Acts on vectors `[..., D]` both ways.
    """

    def __init__(self, funnel, conditional_input=None, name="funnel_joint_bijector"):
        self._funnel = funnel
        self._c = _bind_condition(funnel, conditional_input, name)
        self._latent = funnel.latent_size
        super().__init__(forward_min_event_ndims=1, dtype=funnel.dtype, name=name)

    def _forward(self, v):
        f = self._funnel
        (v,), c = _broadcast([v], self._c)
        z, x_d = v[..., :self._latent], v[..., self._latent:]
        x_plus = f.conditional_map.forward(z, **f._map_kwargs(x_d, c))
        h = f._merge(x_d, x_plus)
        pre = f.pre_bijector
        return h if pre is None else pre.forward(h, **contract.route(pre, c))

    def _inverse_and_log_det(self, x):
        (x,), c = _broadcast([x], self._c)
        z, x_d, ldj = self._funnel._latent_and_log_det(x, c)
        return tf.concat([z, x_d], axis=-1), ldj

    def _inverse(self, x):
        return self._inverse_and_log_det(x)[0]

    def _inverse_log_det_jacobian(self, x):
        return self._inverse_and_log_det(x)[1]

    def _forward_log_det_jacobian(self, v):
        return -self._inverse_log_det_jacobian(self._forward(v))


def funnel_joint_bijector(funnel, conditional_input=None):
    """`T` from the joint's sample `{"z", "x_dropped"}` to `x`, as one `tfb.Bijector`.

    A chain of `tfb.Restructure` (dict -> list), the inverse of `tfb.Split`
    (concatenation) and `FunnelJointBijector`, so
    `tfd.TransformedDistribution(funnel.joint_distribution(c), funnel_joint_bijector(funnel,
    c))` has the funnel's `log_prob` and samples.
    """
    sizes = [funnel.latent_size, int(funnel.dropped_indices.size)]
    return tfb.Chain([
        FunnelJointBijector(funnel, conditional_input),
        tfb.Invert(tfb.Split(sizes)),
        tfb.Restructure(output_structure=[0, 1],
                        input_structure=collections.OrderedDict(z=0, x_dropped=1)),
    ], name="funnel_joint_to_x")


# -- augmented flow -----------------------------------------------------------------------


def augmented_joint(augmented, conditional_input=None):
    """`p(x, eps | c) = p_T(concat(x, eps) | c)` (module docstring)."""
    owner = f"{augmented.name}.joint_distribution"
    if augmented.num_augment == 0:
        raise ValueError(f"{owner}: `num_augment` must be positive for a joint over (x, eps); "
                         "got 0 (the flow itself is the distribution of x).")
    c = _bind_condition(augmented, conditional_input, owner)
    flow, d = augmented.flow, augmented.event_size

    def log_prob_fn(values, cond):
        (x, eps), cond = _broadcast([values["x"], values["eps"]], cond)
        return contract.log_prob(flow, tf.concat([x, eps], axis=-1), cond)

    def sample_fn(n, cond, seed):
        y = sample_rows(flow, n, cond, seed, owner)
        return {"x": y[..., :d], "eps": y[..., d:]}

    return LatentJoint({"x": d, "eps": augmented.num_augment}, log_prob_fn, sample_fn,
                       augmented.dtype, c, name=f"{augmented.name.rstrip('/')}_joint")


# -- LGF ------------------------------------------------------------------------------------


def lgf_index_names(lgf):
    """The names of the index parts, `["u_1", ..., "u_L"]` (layer order, data first)."""
    return [f"u_{i + 1}" for i in range(len(lgf.layers))]


def lgf_joint(lgf, conditional_input=None):
    """`p(x, u_{1:L} | c)` of the LGF generative process (module docstring)."""
    owner = f"{lgf.name}.joint_distribution"
    if lgf.dirac:
        raise ValueError(f"{owner}: a `dirac=True` LGF has point-mass indices (u_l = 0); "
                         "its joint over u is degenerate: use the LGF itself.")
    c = _bind_condition(lgf, conditional_input, owner)
    names = lgf_index_names(lgf)
    layers, priors, base = lgf.layers, lgf.priors, lgf.base

    def log_prob_fn(values, cond):
        tensors, cond = _broadcast([values["x"]] + [values[k] for k in names], cond)
        z, us = tensors[0], tensors[1:]
        total = tf.zeros(tf.shape(z)[:-1], z.dtype)
        for layer, prior, u in zip(layers, priors, us, strict=True):
            kw = contract.route(layer, lgf._layer_input(u, cond))
            total += layer.inverse_log_det_jacobian(z, event_ndims=1, **kw)
            z = layer.inverse(z, **kw)
            total += prior.log_prob(u, z, cond)
        return total + contract.log_prob(base, z, lgf._base_condition(cond))

    def sample_fn(n, cond, seed):
        base_seed, *seeds = tfp.random.split_seed(seed, n=2 * len(layers) + 1, salt="lgf_joint")
        z = sample_rows(base, n, lgf._base_condition(cond), base_seed, owner)
        out = {}
        for i in reversed(range(len(layers))):  # generative direction: the base side first
            out[names[i]] = u = priors[i].sample(z, seeds[2 * i], cond)
            z = layers[i].forward(z, **contract.route(layers[i], lgf._layer_input(u, cond),
                                                      seeds[2 * i + 1]))
        out["x"] = z
        return out

    sizes = collections.OrderedDict((k, lgf.index_size) for k in names)
    sizes["x"] = lgf.event_size
    return LatentJoint(sizes, log_prob_fn, sample_fn, lgf.dtype, c, name=f"{lgf.name}_joint")
