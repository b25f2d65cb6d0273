"""Localised generative flows (LGF / CIF): a stack of continuously indexed layers.

Generative model (Cornish et al., 2019), layers l = 1..L, optionally given a
condition `c` (every part then sees it):

    z_0 ~ p_Z0(. | c),   u_l ~ p(u_l | z_{l-1}, c),   z_l = G_l^-1(z_{l-1}; u_l, c),   x = z_L.

The marginal `p(x | c)` has no closed form. With the factorised posterior
`q(u_{1:L} | x, c) = prod_l q(u_l | z_l, c)` (z_L = x, z_{l-1} = G_l(z_l; u_l, c)),

    log w = log p_Z0(z_0 | c) + sum_l Delta_l,
    Delta_l = log p(u_l | z_{l-1}, c) + log|det D G_l(z_l; u_l, c)| - log q(u_l | z_l, c),

and `E_q[log w] <= log p(x | c)` is the ELBO (the paper's Algorithm 1, one
sample), while `logsumexp_s log w_s - log S` over S joint samples of `u_{1:L}`
is the importance-sampled estimate of `log p(x | c)`: biased low for finite S,
consistent as S grows (Burda et al., 2016). For the paper's layer
`G(x; u) = s(u) * g(x) + t(u)` the log-determinant is
`log|det Dg(x)| + sum_i log s_i(u)` (a product of scales; the paper's
`det Dg(x) * sum_i s_i(u)` is wrong, see `bijectors.ContinuouslyIndexed`).

`p(u_l | z, c)` and `q(u_l | z, c)` are `nets.GaussianHead`s (`scale="exp"`):
`N(mu(z, c), diag sigma(z, c)^2)` with a soft-clamped log-scale, starting at
`N(0, I)`.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.distributions import joint
from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.distributions.importance import (
    align_condition,
    condition_rows,
    importance_sampled_log_prob,
    resolve_chunk_size,
    sample_rows,
)
from tfp_flows.internal import contract, keras_owned, validation
from tfp_flows.nets.gaussian import GaussianHead

tfb = tfp.bijectors
tfd = tfp.distributions


class LGF(FlowDistribution):
    """A stack of continuously indexed layers on a base distribution, trained by the ELBO.

    Each layer is a conditional bijector `G_l` whose `inverse(z_l,
    conditional_input=[u_l, c]) = G_l(z_l; u_l, c) = z_{l-1}` is the density
    direction: `bijectors.ContinuouslyIndexed` (`s(u, c) g(x; c) + t(u, c)`) or
    any conditional bijector, e.g. a `tfb.RealNVP` whose coupling conditioner
    sees `[u, c]` (the paper's alternative). Without a condition (`C = 0`) the
    layer's conditional input is `u_l` alone. Layers are listed in density
    order (data first), like `tfb.Chain`.

    How exact: `log_prob(x, num_samples=S)` is the S-sample importance-sampled
    estimate over `u_{1:L}` jointly, biased low and consistent as S grows;
    `elbo(x)` is a single-sample unbiased estimate of a lower bound;
    `importance_weighted_bound(x, k)` is the k-sample bound (between the two).
    With `dirac=True`, `p(u_l | z, c)` and `q(u_l | z, c)` are point masses at
    `u_l = 0`, the model is the ordinary flow with layers `G_l(.; 0, c)` on the
    base, and all three are its log-density (exact for an exact base and
    layers). Every estimate uses the stateless `seed` it is given.

    Args:
      layers: list of conditional `tfb.Bijector`s (declared conditional, of
        conditional size `index_size + conditional_size`), density order.
      index_size: size U of each `u_l`.
      base: base distribution over `[D]` (default `N(0, I)`); may itself be a
        flow of this library, unconditional or conditional on `c` (size C).
      event_size: D (default: inferred from `base`).
      prior_hidden_units, posterior_hidden_units: hidden widths of the MLPs of
        `p(u_l | z_{l-1}, c)` and `q(u_l | z_l, c)`.
      activation: their activation.
      log_scale_bound: soft clamp of their log standard deviations.
      dirac: point-mass `p` and `q` (the model reduces to its base flow).
      num_importance_samples: default S of `log_prob`.
      chunk_size: cap on the importance samples per chunk (bounds memory): the
        default chunk is the largest divisor of S not above it.
      conditional_size: C, size of the `conditional_input` `c` (0: none). Then
        `elbo`, the IW bound, `log_prob`, `sample` and `initialize_from_data`
        require `conditional_input` (`[..., C]`; `[C]` or `[n, C]` for
        `sample(n)`).

    #### Examples

    ```python
    layers = [ContinuouslyIndexed(2, 2, bijector=flows.maf(2, num_layers=1).bijector)
              for _ in range(5)]
    lgf = LGF(layers, index_size=2, event_size=2)
    elbo = lgf.elbo(x, seed=(1, 2))                      # training objective
    log_p = lgf.log_prob(x, num_samples=1000, seed=(3, 4))  # IS estimate, S = 1000
    x_new = lgf.sample(100, seed=(5, 6))
    cond = flows.lgf_maf(event_size=1, conditional_size=3)  # p(y | c), scalar y
    cond.elbo(y, seed=(0, 1), conditional_input=c)
    ```

    #### References

    [1] Rob Cornish, Anthony Caterini, George Deligiannidis, Arnaud Doucet.
        Localised Generative Flows. arXiv:1909.13833, 2019. Published as
        "Relaxing Bijectivity Constraints with Continuously Indexed
        Normalising Flows", ICML 2020.
    [2] Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance Weighted
        Autoencoders. ICLR 2016.
    """

    def __init__(self, layers, index_size, base=None, event_size=None,
                 prior_hidden_units=(50, 50), posterior_hidden_units=(50, 50),
                 activation="relu", log_scale_bound=5.0, dirac=False,
                 num_importance_samples=1000, chunk_size=100, dtype=tf.float32,
                 validate_args=False, conditional_size=0, name="LGF"):
        parameters = dict(locals())
        dtype = validation.float_dtype(dtype)
        self._index_size = validation.positive_int(index_size, "index_size")
        cond_size = validation.positive_int(conditional_size, "conditional_size",
                                            allow_zero=True)
        self._check_layers(layers, self._index_size + cond_size)
        if base is None:
            if event_size is None:
                raise ValueError("Give `event_size` or a `base` distribution; got neither.")
            base = tfd.MultivariateNormalDiag(loc=tf.zeros([event_size], dtype))
        elif event_size is None:
            event_size = tf.compat.dimension_value(base.event_shape[-1])
        if tf.compat.dimension_value(base.event_shape[-1]) != event_size:
            raise ValueError(f"`base` must have event shape [{event_size}]; "
                             f"got {base.event_shape}.")
        if contract.conditional_size(base) not in (0, cond_size):
            raise ValueError(f"`base` must be unconditional or take a `conditional_input` of "
                             f"size `conditional_size` = {cond_size}; got conditional size "
                             f"{contract.conditional_size(base)}.")
        self._num_samples = validation.positive_int(num_importance_samples,
                                                    "num_importance_samples")
        self._chunk_size = validation.positive_int(chunk_size, "chunk_size")
        self._dirac = bool(dirac)
        super().__init__(event_size, dtype=dtype, validate_args=validate_args,
                         parameters=parameters, name=name, conditional_size=cond_size,
                         takes_seed=True)
        self._layers = list(layers)
        self._base = base
        # One (prior, posterior) pair per layer; none for the Dirac reduction.
        self._priors, self._posteriors = [], []
        if not self._dirac:
            kw = dict(activation=activation, conditional_size=cond_size, scale="exp",
                      log_scale_bound=log_scale_bound, dtype=dtype.name)
            for i in range(len(layers)):
                self._priors.append(GaussianHead(event_size, self._index_size,
                                                 prior_hidden_units, name=f"{name}_p_{i}", **kw))
                self._posteriors.append(GaussianHead(
                    event_size, self._index_size, posterior_hidden_units, name=f"{name}_q_{i}",
                    **kw))
        owned = [layer for m in (*self._layers, self._base, *self._priors, *self._posteriors)
                 for layer in keras_owned.find_keras_layers(m)]
        if owned:
            self._own_keras_layers(*owned)

    @staticmethod
    def _check_layers(layers, size):
        if isinstance(layers, tfb.Bijector) or not isinstance(layers, (list, tuple)):
            raise TypeError("`layers` must be a list of conditional bijectors; "
                            f"got {type(layers).__name__}.")
        if not layers:
            raise ValueError("`layers` must contain at least one bijector; got an empty list.")
        for i, layer in enumerate(layers):
            if not isinstance(layer, tfb.Bijector):
                raise TypeError(f"`layers[{i}]` must be a `tfb.Bijector`; "
                                f"got {type(layer).__name__}.")
            got = contract.conditional_size(layer)
            if not got:
                raise ValueError(f"`layers[{i}]` must take `conditional_input=u` (flag it with "
                                 "`mark_conditional`); got an unconditional bijector.")
            if got != size:
                raise ValueError(f"`layers[{i}]` must take a `conditional_input` [u, c] of size "
                                 f"index_size + conditional_size = {size}; got conditional "
                                 f"size {got}.")

    @property
    def layers(self):
        """The LGF layers (bijectors of `x` conditioned on `[u_l, c]`), in density order."""
        return list(self._layers)

    @property
    def base(self):
        """The base distribution `p(z_L [| c])`."""
        return self._base

    @property
    def index_size(self):
        """Size of each layer's index `u_l`."""
        return self._index_size

    @property
    def dirac(self):
        """Whether `p(u | z, c)` and `q(u | z, c)` are point masses (the model is its base flow)."""
        return self._dirac

    @property
    def log_prob_kind(self):
        """Importance-sampled; with `dirac=True` that of the base flow (exact for exact parts)."""
        kinds = [contract.log_prob_kind(p) for p in (*self._layers, self._base)]
        return contract.weakest(kinds + ([] if self._dirac else [contract.IMPORTANCE_SAMPLED]))

    @property
    def priors(self):
        """The `GaussianHead`s `p(u_l | z_{l-1}, c)` (empty when `dirac`)."""
        return list(self._priors)

    @property
    def posteriors(self):
        """The `GaussianHead`s `q(u_l | z_l, c)` (empty when `dirac`)."""
        return list(self._posteriors)

    # -- helpers ---------------------------------------------------------------

    def _inputs(self, x, conditional_input):
        """Checked `x` and condition, broadcast to a common batch shape."""
        x = self._check_input(x)
        c = contract.check_conditional_input(self, conditional_input, self.dtype,
                                             type(self).__name__)
        return align_condition(x, c)

    def _zeros_index(self, z):
        return tf.zeros(tf.concat([tf.shape(z)[:-1], [self._index_size]], 0), self.dtype)

    @staticmethod
    def _layer_input(u, c):
        """The layer's conditional input: `u`, or `[u, c]` with a condition."""
        return u if c is None else tf.concat([u, c], axis=-1)

    def _base_condition(self, c):
        return c if contract.is_conditional(self._base) else None

    # -- the log weight of one joint sample of u_{1:L} -----------------------

    def _log_weight(self, x, seed, c=None):
        """`log p(x, u_{1:L} | c) - log q(u_{1:L} | x, c)` for one fresh `u_{1:L} ~ q`, `[...]`.

        `x` and `c` have the same batch shape.
        """
        seed = tfp.random.sanitize_seed(seed)
        *seeds, base_seed = tfp.random.split_seed(seed, n=2 * len(self._layers) + 1,
                                                  salt="lgf")
        z = x
        total = tf.zeros(tf.shape(x)[:-1], self.dtype)
        for i, layer in enumerate(self._layers):
            if self._dirac:
                u = self._zeros_index(z)
                delta_pq = 0.0  # p and q are the same point mass: their ratio is 1.
            else:
                u, log_q = self._posteriors[i].sample_and_log_prob(z, seeds[2 * i], c)
            kw = contract.route(layer, self._layer_input(u, c), seeds[2 * i + 1])
            # The map first: one-pass layers leave its log-det in TFP's cache.
            z, ildj = layer.inverse(z, **kw), layer.inverse_log_det_jacobian(z, event_ndims=1,
                                                                             **kw)
            if not self._dirac:
                delta_pq = self._priors[i].log_prob(u, z, c) - log_q
            total = total + ildj + delta_pq
        return total + contract.log_prob(self._base, z, self._base_condition(c), seed=base_seed)

    def elbo(self, x, seed=None, conditional_input=None):
        """Single-sample ELBO (Algorithm 1 of [1]): `log w` for one `u_{1:L} ~ q`, `[...]`.

        Unbiased for `E_q[log w] <= log p(x | c)`; reparameterised, so its
        gradient is an unbiased gradient of the bound. The log-density itself
        when `dirac`.
        """
        x, c = self._inputs(x, conditional_input)
        return self._log_weight(x, seed, c)

    def importance_weighted_bound(self, x, num_samples, seed=None, conditional_input=None):
        """`logsumexp_k log w_k - log k`, k = `num_samples` joint samples (IWAE bound).

        A lower bound on `log p(x | c)` in expectation, tighter as k grows;
        computed in one chunk, so it is differentiable for training.
        """
        x, c = self._inputs(x, conditional_input)
        num_samples = validation.positive_int(num_samples, "num_samples")
        return importance_sampled_log_prob(self._log_weight, x, num_samples, seed=seed,
                                           chunk_size=num_samples, conditional_input=c)

    def _log_prob(self, x, num_samples=None, seed=None, chunk_size=None,
                  conditional_input=None):
        """Importance-sampled `log p(x | c)` with S = `num_samples` joint samples of `u_{1:L}`.

        The chunk size defaults to the largest divisor of S not above the
        constructor's `chunk_size`; an explicit one must divide S.
        """
        x, c = self._inputs(x, conditional_input)
        s = self._num_samples if num_samples is None else validation.positive_int(
            num_samples, "num_samples")
        chunk = resolve_chunk_size(s, chunk_size, max_chunk=self._chunk_size)
        return importance_sampled_log_prob(self._log_weight, x, s, seed=seed, chunk_size=chunk,
                                           conditional_input=c)

    def joint_distribution(self, conditional_input=None):
        """The joint `p(x, u_{1:L} | c)` of the generative process, as a `LatentJoint`.

        A `tfd.JointDistributionNamed` over `{"u_1": [U], ..., "u_L": [U],
        "x": [D]}` (u_l the index of `layers[l-1]`) with

            log p(x, u | c) = log p_Z(z_L | c)
                + sum_l [log p(u_l | z_l, c) + log|det D G_l(z_{l-1}; u_l, c)|],

        `z_0 = x`, `z_l = G_l(z_{l-1}; u_l, c)`: the `p` part of the ELBO's
        log weight. Its marginal in `x` is this LGF; `experimental_pin(x=x)`
        is the unnormalised posterior `p(u | x, c)`. Not for `dirac=True`.
        `conditional_input`: `[C]` or `[*batch, C]`. See `distributions.joint`.
        """
        return joint.lgf_joint(self, conditional_input)

    def _sample_n(self, n, seed=None, conditional_input=None):
        c = contract.check_conditional_input(self, conditional_input, self.dtype,
                                             type(self).__name__)
        c = condition_rows(c, n, type(self).__name__)
        seed = tfp.random.sanitize_seed(seed)
        base_seed, *layer_seeds = tfp.random.split_seed(seed, n=2 * len(self._layers) + 1,
                                                         salt="lgf_sample")
        z = sample_rows(self._base, n, self._base_condition(c), base_seed, type(self).__name__)
        # Generative direction: the last layer in density order acts first.
        for i in reversed(range(len(self._layers))):
            if self._dirac:
                u = self._zeros_index(z)
            else:
                u, _ = self._priors[i].sample_and_log_prob(z, layer_seeds[2 * i], c)
            layer = self._layers[i]
            z = layer.forward(z, **contract.route(layer, self._layer_input(u, c),
                                                  layer_seeds[2 * i + 1]))
        return z

    def initialize_from_data(self, x, conditional_input=None):
        """Data-dependent initialisation of every layer's parts (e.g. ActNorm in `g`).

        Data are pushed towards the base through each layer with `u_l` set to
        the posterior mean (zero for a new model, where `G_l(.; u, c) = g_l`).
        """
        z, c = self._inputs(x, conditional_input)
        for i, layer in enumerate(self._layers):
            if self._dirac:
                u = self._zeros_index(z)
            else:
                u, _ = self._posteriors[i].loc_and_log_scale(z, c)
            z = contract.initialize_from_data(layer, z, self._layer_input(u, c))
        contract.initialize_from_data(self._base, z, self._base_condition(c))
