"""Localised generative flows (LGF / CIF): a stack of continuously indexed layers.

Generative model (Cornish et al., 2019), layers l = 1..L:

    z_0 ~ p_Z0,   u_l ~ p(u_l | z_{l-1}),   z_l = G_l^-1(z_{l-1}; u_l),   x = z_L.

The marginal `p(x)` has no closed form. With the factorised posterior
`q(u_{1:L} | x) = prod_l q(u_l | z_l)` (z_L = x, z_{l-1} = G_l(z_l; u_l)),

    log w = log p_Z0(z_0) + sum_l Delta_l,
    Delta_l = log p(u_l | z_{l-1}) + log|det D G_l(z_l; u_l)| - log q(u_l | z_l),

and `E_q[log w] <= log p(x)` is the ELBO (the paper's Algorithm 1, one sample),
while `logsumexp_s log w_s - log S` over S joint samples of `u_{1:L}` is the
importance-sampled estimate of `log p(x)`: biased low for finite S, consistent
as S grows (Burda et al., 2016).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.distributions.importance import importance_sampled_log_prob
from tfp_flows.internal import contract, keras_owned, validation
from tfp_flows.internal.config import Configurable
from tfp_flows.internal.math import soft_clamp
from tfp_flows.nets.mlp import MLP

tfb = tfp.bijectors
tfd = tfp.distributions

_HALF_LOG_2PI = 0.9189385332046727


class DiagonalGaussianConditional(Configurable, tf.Module):
    """`N(u; mu(z), diag sigma(z)^2)` with `mu` and `log sigma` two outputs of one MLP.

    `log sigma` is soft-clamped to `[-c, c]` (`c = log_scale_bound`). The MLP's
    zero-initialised output layer makes a new conditional `N(0, I)`.
    Sampling is reparameterised: `u = mu(z) + sigma(z) * eps`, `eps ~ N(0, I)`.
    """

    def __init__(self, input_size, output_size, hidden_units=(50, 50), activation="relu",
                 log_scale_bound=5.0, dtype="float32", name="gaussian_conditional"):
        super().__init__(name=name)
        self.output_size = validation.positive_int(output_size, "output_size")
        self._bound = log_scale_bound
        self.net = keras_owned.build_layer(
            MLP(2 * self.output_size, hidden_units, activation, dtype=dtype,
                name=name + "_net"), (None, input_size))
        keras_owned.own_keras_layers(self, self.net)

    def loc_and_log_scale(self, z):
        loc, log_scale = tf.split(self.net(z), 2, axis=-1)
        return loc, soft_clamp(log_scale, self._bound)

    def log_prob(self, u, z):
        loc, log_scale = self.loc_and_log_scale(z)
        e = (u - loc) * tf.exp(-log_scale)
        return tf.reduce_sum(-0.5 * e**2 - log_scale - _HALF_LOG_2PI, -1)

    def sample_and_log_prob(self, z, seed):
        loc, log_scale = self.loc_and_log_scale(z)
        eps = tf.random.stateless_normal(tf.shape(loc), seed, dtype=loc.dtype)
        u = loc + tf.exp(log_scale) * eps
        return u, tf.reduce_sum(-0.5 * eps**2 - log_scale - _HALF_LOG_2PI, -1)


class LGF(FlowDistribution):
    """A stack of continuously indexed layers on a base distribution, trained by the ELBO.

    Each layer is a conditional bijector `G_l` taking `conditional_input=u_l`
    whose `inverse(z_l, conditional_input=u_l) = G_l(z_l; u_l) = z_{l-1}` is
    the density direction: `bijectors.ContinuouslyIndexed` (`s(u) g(x) +
    t(u)`) or any conditional bijector, e.g. a `tfb.RealNVP` whose coupling
    conditioner sees `u` (the paper's alternative). Layers are listed in density
    order (data first), like `tfb.Chain`.

    How exact: `log_prob(x, num_samples=S)` is the S-sample importance-sampled
    estimate over `u_{1:L}` jointly, biased low and consistent as S grows;
    `elbo(x)` is a single-sample unbiased estimate of a lower bound;
    `importance_weighted_bound(x, k)` is the k-sample bound (between the two).
    With `dirac=True`, `p(u_l | z)` and `q(u_l | z)` are point masses at
    `u_l = 0`, the model is the ordinary flow with layers `G_l(.; 0)`, and all
    three are the exact log-density.

    Args:
      layers: list of conditional `tfb.Bijector`s (flagged with
        `mark_conditional`), density order.
      index_size: size U of each `u_l`.
      base: base distribution over `[D]` (default `N(0, I)`); may itself be a
        flow of this library.
      event_size: D (default: inferred from `base`).
      prior_hidden_units, posterior_hidden_units: hidden widths of the MLPs of
        `p(u_l | z_{l-1})` and `q(u_l | z_l)`.
      activation: their activation.
      log_scale_bound: soft clamp of their log standard deviations.
      dirac: point-mass `p` and `q` (the model reduces to its base flow).
      num_importance_samples: default S of `log_prob`.
      chunk_size: importance samples per chunk (bounds memory).

    #### Examples

    ```python
    layers = [ContinuouslyIndexed(2, 2, bijector=flows.maf(2, num_layers=1).bijector)
              for _ in range(5)]
    lgf = LGF(layers, index_size=2, event_size=2)
    elbo = lgf.elbo(x, seed=(1, 2))                      # training objective
    log_p = lgf.log_prob(x, num_samples=1000, seed=(3, 4))  # IS estimate, S = 1000
    x_new = lgf.sample(100, seed=(5, 6))
    ```

    #### References

    [1] Rob Cornish, Anthony Caterini, George Deligiannidis, Arnaud Doucet.
        Localised Generative Flows. arXiv:1909.13833, 2019.
    [2] Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance Weighted
        Autoencoders. ICLR 2016.
    """

    def __init__(self, layers, index_size, base=None, event_size=None,
                 prior_hidden_units=(50, 50), posterior_hidden_units=(50, 50),
                 activation="relu", log_scale_bound=5.0, dirac=False,
                 num_importance_samples=1000, chunk_size=100, dtype=tf.float32,
                 validate_args=False, name="LGF"):
        parameters = dict(locals())
        dtype = validation.float_dtype(dtype)
        if isinstance(layers, tfb.Bijector) or not isinstance(layers, (list, tuple)):
            raise TypeError("`layers` must be a list of conditional bijectors; "
                            f"got {type(layers).__name__}.")
        if not layers:
            raise ValueError("`layers` must contain at least one bijector; got an empty list.")
        for i, layer in enumerate(layers):
            if not isinstance(layer, tfb.Bijector):
                raise TypeError(f"`layers[{i}]` must be a `tfb.Bijector`; "
                                f"got {type(layer).__name__}.")
            if not contract.is_conditional(layer):
                raise ValueError(f"`layers[{i}]` must take `conditional_input=u` (flag it with "
                                 "`mark_conditional`); got an unconditional bijector.")
        self._index_size = validation.positive_int(index_size, "index_size")
        if base is None:
            if event_size is None:
                raise ValueError("Give `event_size` or a `base` distribution; got neither.")
            base = tfd.MultivariateNormalDiag(loc=tf.zeros([event_size], dtype))
        elif event_size is None:
            event_size = tf.compat.dimension_value(base.event_shape[-1])
        if tf.compat.dimension_value(base.event_shape[-1]) != event_size:
            raise ValueError(f"`base` must have event shape [{event_size}]; "
                             f"got {base.event_shape}.")
        self._num_samples = validation.positive_int(num_importance_samples,
                                                    "num_importance_samples")
        self._chunk_size = validation.positive_int(chunk_size, "chunk_size")
        self._dirac = bool(dirac)
        super().__init__(event_size, dtype=dtype, validate_args=validate_args,
                         parameters=parameters, name=name, takes_seed=True)
        self._layers = list(layers)
        self._base = base
        # One (prior, posterior) pair per layer; none for the Dirac reduction.
        self._priors, self._posteriors = [], []
        if not self._dirac:
            for i in range(len(layers)):
                kw = dict(activation=activation, log_scale_bound=log_scale_bound,
                          dtype=dtype.name)
                self._priors.append(DiagonalGaussianConditional(
                    event_size, self._index_size, prior_hidden_units, name=f"{name}_p_{i}", **kw))
                self._posteriors.append(DiagonalGaussianConditional(
                    event_size, self._index_size, posterior_hidden_units,
                    name=f"{name}_q_{i}", **kw))
        owned = [layer for m in (*self._layers, self._base, *self._priors, *self._posteriors)
                 for layer in keras_owned.find_keras_layers(m)]
        if owned:
            self._own_keras_layers(*owned)

    @property
    def layers(self):
        return list(self._layers)

    @property
    def base(self):
        return self._base

    @property
    def index_size(self):
        return self._index_size

    @property
    def dirac(self):
        return self._dirac

    @property
    def log_prob_kind(self):
        """Importance-sampled; exact with `dirac=True` (the model is then its base flow)."""
        kinds = [contract.log_prob_kind(p) for p in (*self._layers, self._base)]
        return contract.weakest(kinds + ([] if self._dirac else [contract.IMPORTANCE_SAMPLED]))

    @property
    def priors(self):
        """The `DiagonalGaussianConditional`s `p(u_l | z_{l-1})` (empty when `dirac`)."""
        return list(self._priors)

    @property
    def posteriors(self):
        """The `DiagonalGaussianConditional`s `q(u_l | z_l)` (empty when `dirac`)."""
        return list(self._posteriors)

    # -- the log weight of one joint sample of u_{1:L} -----------------------

    def _log_weight(self, x, seed):
        """`log p(x, u_{1:L}) - log q(u_{1:L} | x)` for one fresh `u_{1:L} ~ q`, `[...]`."""
        seeds = tfp.random.split_seed(seed, n=len(self._layers), salt="lgf")
        z = x
        total = tf.zeros(tf.shape(x)[:-1], self.dtype)
        for i, layer in enumerate(self._layers):
            if self._dirac:
                u = tf.zeros(tf.concat([tf.shape(z)[:-1], [self._index_size]], 0), self.dtype)
                delta_pq = 0.0  # p and q are the same point mass: their ratio is 1.
            else:
                u, log_q = self._posteriors[i].sample_and_log_prob(z, seeds[i])
            kw = contract.conditional_kwargs(layer, u)
            ildj = layer.inverse_log_det_jacobian(z, event_ndims=1, **kw)
            z = layer.inverse(z, **kw)
            if not self._dirac:
                delta_pq = self._priors[i].log_prob(u, z) - log_q
            total = total + ildj + delta_pq
        return total + self._base.log_prob(z)

    def _check_seed_input(self, x, conditional_input):
        if conditional_input is not None:
            raise ValueError(f"{type(self).__name__} is unconditional; `conditional_input` "
                             f"must be None; got a {type(conditional_input).__name__}.")
        return self._check_input(x)

    def elbo(self, x, seed=None, conditional_input=None):
        """Single-sample ELBO (Algorithm 1 of [1]): `log w` for one `u_{1:L} ~ q`, `[...]`.

        Unbiased for `E_q[log w] <= log p(x)`; reparameterised, so its gradient
        is an unbiased gradient of the bound. Exact log-density when `dirac`.
        """
        x = self._check_seed_input(x, conditional_input)
        return self._log_weight(x, seed)

    def importance_weighted_bound(self, x, num_samples, seed=None, conditional_input=None):
        """`logsumexp_k log w_k - log k`, k = `num_samples` joint samples (IWAE bound).

        A lower bound on `log p(x)` in expectation, tighter as k grows;
        computed in one chunk, so it is differentiable for training.
        """
        x = self._check_seed_input(x, conditional_input)
        num_samples = validation.positive_int(num_samples, "num_samples")
        return importance_sampled_log_prob(lambda xr, s, c: self._log_weight(xr, s), x,
                                           num_samples, seed=seed, chunk_size=num_samples)

    def _log_prob(self, x, num_samples=None, seed=None, chunk_size=None):
        """Importance-sampled `log p(x)` with S = `num_samples` joint samples of `u_{1:L}`."""
        x = self._check_input(x)
        s = self._num_samples if num_samples is None else validation.positive_int(
            num_samples, "num_samples")
        if chunk_size is None:
            # Default chunk: the largest divisor of S not above `self._chunk_size`.
            chunk_size = max(c for c in range(1, min(s, self._chunk_size) + 1) if s % c == 0)
        return importance_sampled_log_prob(lambda xr, sd, c: self._log_weight(xr, sd), x, s,
                                           seed=seed, chunk_size=chunk_size)

    def _sample_n(self, n, seed=None):
        base_seed, *layer_seeds = tfp.random.split_seed(seed, n=len(self._layers) + 1,
                                                         salt="lgf_sample")
        z = self._base.sample(n, seed=base_seed)
        # Generative direction: the last layer in density order acts first.
        for i in reversed(range(len(self._layers))):
            if self._dirac:
                u = tf.zeros(tf.concat([tf.shape(z)[:-1], [self._index_size]], 0), self.dtype)
            else:
                u, _ = self._priors[i].sample_and_log_prob(z, layer_seeds[i])
            z = self._layers[i].forward(z, **contract.conditional_kwargs(self._layers[i], u))
        return z

    def initialize_from_data(self, x):
        """Data-dependent initialisation of every layer's parts (e.g. ActNorm in `g`).

        Data are pushed towards the base through each layer with `u_l` set to
        the posterior mean (zero for a new model, where `G_l(.; u) = g_l`).
        """
        z = self._check_input(x)
        for i, layer in enumerate(self._layers):
            if self._dirac:
                u = tf.zeros(tf.concat([tf.shape(z)[:-1], [self._index_size]], 0), self.dtype)
            else:
                u, _ = self._posteriors[i].loc_and_log_scale(z)
            z = contract.initialize_from_data(layer, z, conditional_input=u)
        contract.initialize_from_data(self._base, z)
