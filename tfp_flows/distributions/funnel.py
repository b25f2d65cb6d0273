"""The funnel: a dimension-reducing surjection with an exact likelihood (seed 001).

Klein et al., "Funnels: Exact maximum likelihood with dimensionality
reduction". The data `x in R^D` (after optional flow layers `pre_bijector`)
is split into dropped coordinates `x_minus in R^m` and kept ones
`x_plus in R^(D-m)`; a bijection of `x_plus` conditioned on `x_minus` gives
the latent

    z = F^-1(x_plus; x_minus)                      in R^(D-m).

The density is exact (paper Eq. 6, with the latent's own density):

    log p(x) = log p_Z(z) + log p_phi(x_minus | z) + log|det dz/dx_plus|
               + log|det dh/dx|                    (pre_bijector, if any)

and it integrates to one: for fixed `x_minus`, `x_plus -> z` is a change of
variables, and `p_phi(. | z)` is normalised in `x_minus`. Sampling runs the
generative direction: `z ~ p_Z`, `x_minus ~ p_phi(. | z)`,
`x_plus = F(z; x_minus)`. `p_Z` may be any distribution on `R^(D-m)`: a flow,
or another `Funnel` (a stack of funnels).
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.internal import contract, keras_owned, tfp_compat, validation

tfb = tfp.bijectors
tfd = tfp.distributions


def _dropped_indices(dropped, event_size):
    """Validates `dropped` (a count m -> first m dims, or explicit indices)."""
    if isinstance(dropped, int | np.integer) and not isinstance(dropped, bool):
        if not 0 < dropped < event_size:
            raise ValueError(f"`dropped` must drop between 1 and event_size - 1 = "
                             f"{event_size - 1} dimensions; got {dropped}.")
        return np.arange(int(dropped), dtype=np.int32)
    try:
        idx = np.asarray(list(dropped))
    except TypeError:
        raise TypeError("`dropped` must be an int or a sequence of indices; "
                        f"got {dropped!r}.") from None
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"`dropped` must be a non-empty sequence of integer indices; "
                        f"got {dropped!r}.")
    if len(set(idx.tolist())) != idx.size or idx.min() < 0 or idx.max() >= event_size:
        raise ValueError(f"`dropped` must hold distinct indices in [0, {event_size}); "
                         f"got {idx.tolist()}.")
    if idx.size >= event_size:
        raise ValueError(f"`dropped` must keep at least one of the {event_size} dimensions; "
                         f"got {idx.size} dropped.")
    return idx.astype(np.int32)


def sample_at_temperature(distribution, n, temperature, seed=None):
    """`n` samples with the base noise scaled by `temperature` (Glow's trick).

    Funnels recurse into `p_Z`; flows scale their base sample; any other
    distribution `d` is sampled as `mean + T (sample - mean)` (exactly
    `N(mu, T^2 Sigma)` for a Gaussian).
    """
    if isinstance(distribution, Funnel):
        return distribution.sample(n, seed=seed, temperature=temperature)
    if isinstance(distribution, tfp_compat.TRANSFORMED_TYPES):
        u = sample_at_temperature(distribution.distribution, n, temperature, seed)
        return distribution.bijector.forward(u)
    s = distribution.sample(n, seed=seed)
    mean = distribution.mean()
    return mean + tf.cast(temperature, s.dtype) * (s - mean)


class Funnel(FlowDistribution):
    """A funnel layer as a TFP distribution on `R^D`; `log_prob` is exact.

    Args:
      event_size: D, the data dimension.
      dropped: m (drop the first m coordinates, the paper's `x_{1:m-1}`) or a
        sequence of indices to drop. 1 <= m <= D - 1.
      base: `p_Z`, a distribution on `R^(D-m)` (flow, `Funnel`, Gaussian).
      decoder: `p_phi(x_minus | z)` (see `funnel_decoders`), with
        `dropped_size == m` and `latent_size == D - m`.
      conditional_map: F, a `tfb.Bijector` of `x_plus` taking
        `conditional_input=x_minus` (see `bijectors.funnel_maps`), or a
        bijector without conditional input. None: the identity, i.e. the slice
        surjection (`z = x_plus`).
      pre_bijector: optional flow layers on `x` before the split (a
        `tfb.Chain` in density order).

    `encode(x)` returns the latent; `sample(n, seed, temperature=T)` samples
    with the base noise scaled by T; `initialize_from_data(x)` initialises
    ActNorm-style layers of every part with data as it arrives there.

    #### Examples

    ```python
    from tfp_flows.bijectors.funnel_maps import ElementwiseSpline
    from tfp_flows.distributions.funnel_decoders import GaussianDecoder
    funnel = Funnel(
        event_size=2, dropped=1,
        base=tfd.MultivariateNormalDiag(tf.zeros(1)),
        decoder=GaussianDecoder(dropped_size=1, latent_size=1),
        conditional_map=ElementwiseSpline(1, conditional_size=1))
    model = tfp_flows.keras.FlowModel(funnel)   # trains by model.fit
    z = funnel.encode(x)                        # [N, 1]
    ```
    """

    def __init__(self, event_size, dropped, base, decoder, conditional_map=None,
                 pre_bijector=None, validate_args=False, name="funnel"):
        parameters = dict(locals())
        event_size = validation.positive_int(event_size, "event_size")
        dropped_idx = _dropped_indices(dropped, event_size)
        kept_idx = np.setdiff1d(np.arange(event_size), dropped_idx).astype(np.int32)
        latent = int(kept_idx.size)
        if not isinstance(base, tfd.Distribution):
            raise TypeError(f"`base` must be a tfd.Distribution; got {type(base).__name__}.")
        base_shape = tf.TensorShape(base.event_shape)
        if base_shape.rank != 1 or base_shape[0] != latent:
            raise ValueError(f"Funnel: `base` must have event shape [{latent}] (the kept "
                             f"dimensions); got {base_shape}.")
        for attr in ("log_prob", "sample"):
            if not callable(getattr(decoder, attr, None)):
                raise TypeError(f"`decoder` must have a `{attr}` method; "
                                f"got {type(decoder).__name__}.")
        if getattr(decoder, "dropped_size", dropped_idx.size) != dropped_idx.size or getattr(
                decoder, "latent_size", latent) != latent:
            raise ValueError(
                f"Funnel: `decoder` must model {dropped_idx.size} dropped dimensions given a "
                f"{latent}-dimensional latent; got dropped_size={decoder.dropped_size}, "
                f"latent_size={decoder.latent_size}.")
        for arg, value in (("conditional_map", conditional_map), ("pre_bijector", pre_bijector)):
            if value is not None and not isinstance(value, tfb.Bijector):
                raise TypeError(f"`{arg}` must be a tfb.Bijector or None; "
                                f"got {type(value).__name__}.")
        self._dropped_idx, self._kept_idx = dropped_idx, kept_idx
        # Position of each original coordinate in concat([x_minus, x_plus]).
        self._merge_idx = np.argsort(np.concatenate([dropped_idx, kept_idx])).astype(np.int32)
        self._base, self._decoder = base, decoder
        self._map = tfb.Identity() if conditional_map is None else conditional_map
        self._pre = pre_bijector
        super().__init__(event_size, dtype=base.dtype, validate_args=validate_args,
                         parameters=parameters, name=name)
        parts = [p for p in (pre_bijector, self._map, decoder, base) if p is not None]
        layers = [layer for p in parts for layer in keras_owned.find_keras_layers(p)]
        if layers:
            self._own_keras_layers(*layers)

    # -- parts ---------------------------------------------------------------

    @property
    def base(self):
        return self._base

    @property
    def log_prob_kind(self):
        """Exact when every part is (an FFJORD base with Hutchinson makes it an estimate)."""
        parts = [p for p in (self._pre, self._map, self._base) if p is not None]
        return contract.weakest(contract.log_prob_kind(p) for p in parts)

    @property
    def decoder(self):
        return self._decoder

    @property
    def conditional_map(self):
        return self._map

    @property
    def pre_bijector(self):
        return self._pre

    @property
    def latent_size(self):
        return int(self._kept_idx.size)

    @property
    def dropped_indices(self):
        return self._dropped_idx.copy()

    # -- density direction ---------------------------------------------------

    def _map_kwargs(self, x_minus):
        if contract.is_conditional(self._map):
            return contract.conditional_kwargs(self._map, x_minus)
        return {}

    def _split(self, x):
        """`(h, log|det dh/dx|, x_minus, x_plus)` for data `x`."""
        if self._pre is None:
            h, ldj = x, tf.zeros(tf.shape(x)[:-1], x.dtype)
        else:
            h = self._pre.inverse(x)
            ldj = self._pre.inverse_log_det_jacobian(x, event_ndims=1)
        return h, ldj, tf.gather(h, self._dropped_idx, axis=-1), tf.gather(
            h, self._kept_idx, axis=-1)

    def _latent_and_log_det(self, x):
        _, ldj_pre, x_minus, x_plus = self._split(x)
        kw = self._map_kwargs(x_minus)
        z = self._map.inverse(x_plus, **kw)
        ldj_map = self._map.inverse_log_det_jacobian(x_plus, event_ndims=1, **kw)
        return z, x_minus, ldj_pre + ldj_map

    def _log_prob(self, x):
        x = self._check_input(x)
        z, x_minus, ldj = self._latent_and_log_det(x)
        return self._base.log_prob(z) + self._decoder.log_prob(x_minus, z) + ldj

    def encode(self, x, full=False):
        """The latent `z = F^-1(x_plus; x_minus)`, shape `[..., D - m]`.

        With `full=True`, `z` is passed on through `p_Z` (funnels' `encode`,
        flows' inverse) down to the innermost base distribution's space: for a
        trained model that is approximately `N(0, I)` distributed.
        """
        z, _, _ = self._latent_and_log_det(self._check_input(x))
        if not full:
            return z
        return _encode_through(self._base, z)

    # -- generative direction ------------------------------------------------

    def _merge(self, x_minus, x_plus):
        return tf.gather(tf.concat([x_minus, x_plus], axis=-1), self._merge_idx, axis=-1)

    def decode(self, z, seed=None):
        """`x` from latents `z`: `x_minus ~ p_phi(. | z)`, `x_plus = F(z; x_minus)`."""
        z = tf.convert_to_tensor(z, self.dtype)
        x_minus = self._decoder.sample(z, seed=seed)
        x_plus = self._map.forward(z, **self._map_kwargs(x_minus))
        h = self._merge(x_minus, x_plus)
        return h if self._pre is None else self._pre.forward(h)

    def _sample_n(self, n, seed=None, temperature=1.0):
        base_seed, decoder_seed = tfp.random.split_seed(seed, n=2, salt="funnel")
        if isinstance(temperature, int | float) and temperature == 1.0:
            z = self._base.sample(n, seed=base_seed)
        else:
            z = sample_at_temperature(self._base, n, temperature, base_seed)
        return self.decode(z, seed=decoder_seed)

    # -- data-dependent initialisation ---------------------------------------

    def initialize_from_data(self, x):
        """Initialises every part from `x` as it arrives there (eagerly, once per layer)."""
        x = self._check_input(x)
        h = x if self._pre is None else contract.initialize_from_data(self._pre, x)
        x_minus = tf.gather(h, self._dropped_idx, axis=-1)
        x_plus = tf.gather(h, self._kept_idx, axis=-1)
        z = contract.initialize_from_data(
            self._map, x_plus, x_minus if contract.is_conditional(self._map) else None)
        z = tf.identity(z)
        init = getattr(self._decoder, "initialize_from_data", None)
        if init is not None:
            init(x_minus, z)
        contract.initialize_from_data(self._base, z)


def _encode_through(distribution, z):
    if isinstance(distribution, Funnel):
        return distribution.encode(z, full=True)
    if isinstance(distribution, tfp_compat.TRANSFORMED_TYPES):
        return _encode_through(distribution.distribution,
                               distribution.bijector.inverse(tf.identity(z)))
    return z
