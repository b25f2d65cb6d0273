"""The funnel: a dimension-reducing surjection with an exact likelihood.

S. Klein, J. A. Raine, S. Pina-Otey, S. Voloshynovskiy and T. Golling,
"Funnels: Exact maximum likelihood with dimensionality reduction",
arXiv:2112.08069, 2021. The data `x in R^D` (after optional flow layers
`pre_bijector`, `h = pre^-1(x)`) is split into dropped coordinates
`x_minus in R^m` and kept ones `x_plus in R^(D-m)`; a bijection of `x_plus`
conditioned on `x_minus` gives the latent

    z = F^-1(x_plus; x_minus)                      in R^(D-m).

The density is exact (paper Eq. 6, with the latent's own density):

    log p(x) = log p_Z(z) + log p_phi(x_minus | z) + log|det dz/dx_plus|
               + log|det dh/dx|                    (pre_bijector, if any)

and it integrates to one: for fixed `x_minus`, `x_plus -> z` is a change of
variables, and `p_phi(. | z)` is normalised in `x_minus`. Sampling runs the
generative direction: `z ~ p_Z`, `x_minus ~ p_phi(. | z)`,
`x_plus = F(z; x_minus)`. `p_Z` may be any distribution on `R^(D-m)`: a flow,
or another `Funnel` (a stack of funnels).

A conditional funnel (`conditional_size=C`) is a density `p(x | c)`,
`c in R^C`: every learned part sees `c` (the pre-flow `h = pre^-1(x; c)`, the
map `z = F^-1(x_plus; [x_minus, c])`, the decoder `p_phi(x_minus | z, c)` and
the base `p_Z(z | c)`), and

    log p(x | c) = log p_Z(z | c) + log p_phi(x_minus | z, c)
                   + log|det dz/dx_plus| + log|det dh/dx|,

normalised in `x` for every `c` by the same argument.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.distributions import joint
from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.internal import contract, keras_owned, tfp_compat, validation
from tfp_flows.nets.mlp import concat_condition

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


def sample_at_temperature(distribution, n, temperature, seed=None, conditional_input=None):
    """`n` samples with the base noise scaled by `temperature` (the trick of D. P. Kingma
    and P. Dhariwal, "Glow: Generative flow with invertible 1x1 convolutions", NeurIPS 2018).

    Funnels recurse into `p_Z` (`sample(..., temperature=T)`); a transformed
    distribution scales its base sample and maps it through its bijector (the
    condition routed by `contract.route`); a plain TFP distribution `d` is
    sampled as `mean + T (sample - mean)` (exactly `N(mu, T^2 Sigma)` for a
    Gaussian). `conditional_input`: `[C]` or `[n, C]`.

    Raises:
      TypeError: another library distribution (it has no temperature).
    """
    seed = tfp.random.sanitize_seed(seed, salt="temperature")
    c = contract.check_conditional_input(distribution, conditional_input, distribution.dtype,
                                         owner="sample_at_temperature")
    if c is not None:
        c = contract.broadcast_condition(c, [n], owner="sample_at_temperature")
    if isinstance(distribution, Funnel):
        return contract.sample(distribution, n, c, seed, temperature=temperature)
    if isinstance(distribution, tfp_compat.TRANSFORMED_TYPES):
        base_seed, bij_seed = tfp.random.split_seed(seed, n=2, salt="temperature")
        inner = distribution.distribution
        u = sample_at_temperature(inner, n, temperature, base_seed,
                                  c if contract.is_conditional(inner) else None)
        return distribution.bijector.forward(u, **contract.route(distribution.bijector, c,
                                                                 bij_seed))
    if isinstance(distribution, FlowDistribution):
        raise TypeError(f"sample_at_temperature: {type(distribution).__name__} has no "
                        "temperature; expected a Funnel, a transformed distribution or a "
                        "plain TFP distribution.")
    s = distribution.sample(n, seed=seed)
    mean = distribution.mean()
    return mean + tf.cast(temperature, s.dtype) * (s - mean)


def _encode_through(distribution, z, conditional_input=None):
    """`z` passed on through `p_Z` (funnels' `encode`, flows' inverse) to the innermost base."""
    c = conditional_input if contract.is_conditional(distribution) else None
    if isinstance(distribution, Funnel):
        return distribution.encode(z, conditional_input=c, full=True)
    if isinstance(distribution, tfp_compat.TRANSFORMED_TYPES):
        u = distribution.bijector.inverse(tf.identity(z),
                                          **contract.route(distribution.bijector, c))
        return _encode_through(distribution.distribution, u, c)
    return z


class Funnel(FlowDistribution):
    """A funnel layer as a TFP distribution on `R^D`; `log_prob` is exact.

    Args:
      event_size: D, the data dimension.
      dropped: m (drop the first m coordinates, the paper's `x_{1:m-1}`) or a
        sequence of indices to drop. 1 <= m <= D - 1.
      base: `p_Z(z [| c])`, a distribution on `R^(D-m)` (flow, `Funnel`,
        Gaussian); unconditional, or conditional with size C.
      decoder: `p_phi(x_minus | z [, c])` (see `funnel_decoders`), with
        `dropped_size == m`, `latent_size == D - m` and a `conditional_size`
        of 0 or C.
      conditional_map: F, a `tfb.Bijector` of `x_plus` taking
        `conditional_input=x_minus` (`concat([x_minus, c])` when the funnel is
        conditional; see `bijectors.funnel_maps`), or a bijector without
        conditional input. None: the identity, i.e. the slice surjection
        (`z = x_plus`).
      pre_bijector: optional flow layers on `x` before the split (a
        `tfb.Chain` in density order); unconditional or conditional with size C.
      conditional_size: C, the size of the condition `c` of `p(x | c)` (0: an
        unconditional density). `log_prob`, `sample`, `encode`, `decode` and
        `initialize_from_data` then take `conditional_input=c`, `[..., C]`
        (for `sample`: `[C]` or `[n, C]`), and pass it to every part.

    `encode(x)` returns the latent; `sample(n, seed, temperature=T)` samples
    with the base noise scaled by T; `initialize_from_data(x)` initialises
    ActNorm-style layers of every part with data as it arrives there.

    Raises:
      ValueError: a part's size does not fit, or a part declares a conditional
        size other than C (the map: other than `m + C`).

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
    # p(x | c), c in R^3: the map sees [x_minus, c], the decoder c.
    cond = Funnel(2, 1, tfd.MultivariateNormalDiag(tf.zeros(1)),
                  GaussianDecoder(1, 1, conditional_size=3),
                  ElementwiseSpline(1, conditional_size=1 + 3), conditional_size=3)
    lp = cond.log_prob(x, conditional_input=c)           # c: [N, 3]
    xs = cond.sample(10, seed=(1, 2), conditional_input=c[0])
    ```
    """

    def __init__(self, event_size, dropped, base, decoder, conditional_map=None,
                 pre_bijector=None, validate_args=False, name="funnel", conditional_size=0):
        parameters = dict(locals())
        event_size = validation.positive_int(event_size, "event_size")
        size = validation.positive_int(conditional_size, "conditional_size", allow_zero=True)
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
        conditional_map = tfb.Identity() if conditional_map is None else conditional_map
        _check_part_sizes(size, dropped_idx.size, base, decoder, conditional_map, pre_bijector)
        self._dropped_idx, self._kept_idx = dropped_idx, kept_idx
        # Position of each original coordinate in concat([x_minus, x_plus]).
        self._merge_idx = np.argsort(np.concatenate([dropped_idx, kept_idx])).astype(np.int32)
        self._base, self._decoder = base, decoder
        self._map, self._pre = conditional_map, pre_bijector
        parts = [p for p in (pre_bijector, self._map, base) if p is not None]
        super().__init__(event_size, dtype=base.dtype, validate_args=validate_args,
                         parameters=parameters, name=name, conditional_size=size,
                         takes_seed=any(contract.takes_seed(p) for p in parts))
        layers = [layer for p in (*parts, decoder) for layer in keras_owned.find_keras_layers(p)]
        if layers:
            self._own_keras_layers(*layers)

    # -- parts ---------------------------------------------------------------

    @property
    def base(self):
        """`p_Z(z [| c])`, the distribution of the latent on `R^(D-m)`."""
        return self._base

    @property
    def log_prob_kind(self):
        """Exact when every part is (an FFJORD base with Hutchinson makes it an estimate)."""
        parts = [p for p in (self._pre, self._map, self._base) if p is not None]
        return contract.weakest(contract.log_prob_kind(p) for p in parts)

    @property
    def decoder(self):
        """`p_phi(x_minus | z [, c])`, the density of the dropped coordinates."""
        return self._decoder

    @property
    def conditional_map(self):
        """The bijection `F(. ; x_minus)` from the latent to the kept coordinates, or None."""
        return self._map

    @property
    def pre_bijector(self):
        """Flow layers applied to `x` before the split (None: none)."""
        return self._pre

    @property
    def latent_size(self):
        """D - m, the size of the latent `z` (the kept coordinates)."""
        return int(self._kept_idx.size)

    @property
    def dropped_indices(self):
        """Indices of the dropped coordinates `x_minus` in `x` (a copy)."""
        return self._dropped_idx.copy()

    # -- conditions ----------------------------------------------------------

    def _condition(self, conditional_input):
        return contract.check_conditional_input(self, conditional_input, self.dtype,
                                                owner=self.name)

    @staticmethod
    def _for(part, c):
        """`c` if `part` takes the funnel's condition, else None."""
        return c if c is not None and contract.is_conditional(part) else None

    def _map_kwargs(self, x_minus, c, seed=None):
        """Routes the map's condition, `x_minus` (and `c`, if conditional)."""
        if not contract.is_conditional(self._map):
            return contract.route(self._map, None, seed)
        return contract.route(self._map, concat_condition(x_minus, c), seed)

    def _decoder_kwargs(self, c):
        c = self._for(self._decoder, c)
        return {} if c is None else {"conditional_input": c}

    # -- density direction ---------------------------------------------------

    def _latent_and_log_det(self, x, c, seed=None):
        """`(z, x_minus, log|det dz/dx_plus| + log|det dh/dx|)` for data `x` given `c`."""
        pre_seed, map_seed = (None, None) if seed is None else tfp.random.split_seed(
            seed, n=2, salt="funnel_latent")
        if self._pre is None:
            h, ldj = x, tf.zeros(tf.shape(x)[:-1], x.dtype)
        else:
            kw = contract.route(self._pre, c, pre_seed)
            h = self._pre.inverse(x, **kw)
            ldj = self._pre.inverse_log_det_jacobian(x, event_ndims=1, **kw)
        x_minus = tf.gather(h, self._dropped_idx, axis=-1)
        x_plus = tf.gather(h, self._kept_idx, axis=-1)
        kw = self._map_kwargs(x_minus, c, map_seed)
        z = self._map.inverse(x_plus, **kw)
        return z, x_minus, ldj + self._map.inverse_log_det_jacobian(x_plus, event_ndims=1, **kw)

    def _inputs(self, x, conditional_input, size=None):
        """`x` (data, or latents of `size`) and the checked `c`, broadcast to one batch shape."""
        x = self._check_input(x) if size is None else tf.convert_to_tensor(x, self.dtype)
        c = self._condition(conditional_input)
        if c is None:
            return x, None
        batch = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(c)[:-1])
        return (tf.broadcast_to(x, tf.concat([batch, [size or self.event_size]], 0)),
                tf.broadcast_to(c, tf.concat([batch, [self.conditional_size]], 0)))

    def _log_prob(self, x, conditional_input=None, seed=None):
        x, c = self._inputs(x, conditional_input)
        latent_seed, base_seed = (None, None) if seed is None else tfp.random.split_seed(
            seed, n=2, salt="funnel_log_prob")
        z, x_minus, ldj = self._latent_and_log_det(x, c, latent_seed)
        return (contract.log_prob(self._base, z, self._for(self._base, c), base_seed)
                + self._decoder.log_prob(x_minus, z, **self._decoder_kwargs(c)) + ldj)

    def encode(self, x, conditional_input=None, full=False):
        """The latent `z = F^-1(x_plus; x_minus[, c])`, shape `[..., D - m]`.

        With `full=True`, `z` is passed on through `p_Z` (funnels' `encode`,
        flows' inverse) down to the innermost base distribution's space: for a
        trained model that is approximately `N(0, I)` distributed.
        """
        x, c = self._inputs(x, conditional_input)
        z, _, _ = self._latent_and_log_det(x, c)
        return _encode_through(self._base, z, c) if full else z

    # -- generative direction ------------------------------------------------

    def _merge(self, x_minus, x_plus):
        return tf.gather(tf.concat([x_minus, x_plus], axis=-1), self._merge_idx, axis=-1)

    def decode(self, z, seed=None, conditional_input=None):
        """`x` from latents `z`: `x_minus ~ p_phi(. | z, c)`, `x_plus = F(z; x_minus, c)`."""
        z, c = self._inputs(z, conditional_input, size=self.latent_size)
        x_minus = self._decoder.sample(z, seed=seed, **self._decoder_kwargs(c))
        x_plus = self._map.forward(z, **self._map_kwargs(x_minus, c))
        h = self._merge(x_minus, x_plus)
        return h if self._pre is None else self._pre.forward(h, **contract.route(self._pre, c))

    def _sample_n(self, n, seed=None, conditional_input=None, temperature=1.0):
        c = self._condition(conditional_input)
        if c is not None:
            c = contract.broadcast_condition(tf.reshape(c, [-1, self.conditional_size])
                                             if c.shape.rank > 2 else c, [n], owner=self.name)
        base_seed, decoder_seed = tfp.random.split_seed(seed, n=2, salt="funnel")
        c_base = self._for(self._base, c)
        if isinstance(temperature, int | float) and temperature == 1.0:
            z = contract.sample(self._base, n, c_base, base_seed)
        else:
            z = sample_at_temperature(self._base, n, temperature, base_seed, c_base)
        return self.decode(z, seed=decoder_seed, conditional_input=c)

    # -- the joint view ------------------------------------------------------

    def joint_distribution(self, conditional_input=None):
        """The joint `p(z, x_dropped | c) = p_Z(z | c) p_phi(x_dropped | z, c)`, a `LatentJoint`.

        A `tfd.JointDistributionNamed` over `{"z": [L], "x_dropped": [m]}`
        (the generative process `z ~ p_Z`, `x_dropped ~ p_phi(. | z)`); `x` is
        `joint_bijector()` of its sample, and `log p(x | c)` is the joint's
        log-density at `joint_bijector().inverse(x)` plus
        `log|det dz/dx_plus| + log|det dh/dx|`. `conditional_input`: `[C]` or
        `[*batch, C]` (batch shape `batch`). See `distributions.joint`.
        """
        return joint.funnel_joint(self, conditional_input)

    def joint_bijector(self, conditional_input=None):
        """`T: {"z", "x_dropped"} -> x`, `x = pre(merge(x_dropped, F(z; x_dropped, c)); c)`.

        `tfd.TransformedDistribution(self.joint_distribution(c),
        self.joint_bijector(c))` is this funnel (for the condition `c`).
        """
        return joint.funnel_joint_bijector(self, conditional_input)

    # -- data-dependent initialisation ---------------------------------------

    def initialize_from_data(self, x, conditional_input=None):
        """Initialises every part from `x` (and `c`) as it arrives there (eagerly, once)."""
        x, c = self._inputs(x, conditional_input)
        h = x if self._pre is None else contract.initialize_from_data(self._pre, x, c)
        x_minus = tf.gather(h, self._dropped_idx, axis=-1)
        x_plus = tf.gather(h, self._kept_idx, axis=-1)
        map_c = (concat_condition(x_minus, c) if contract.is_conditional(self._map)
                 else None)
        z = tf.identity(contract.initialize_from_data(self._map, x_plus, map_c))
        init = getattr(self._decoder, "initialize_from_data", None)
        if init is not None:
            init(x_minus, z, **self._decoder_kwargs(c))
        contract.initialize_from_data(self._base, z, self._for(self._base, c))


def _check_part_sizes(size, num_dropped, base, decoder, conditional_map, pre_bijector):
    """Every part takes the funnel's condition `c` (size C) or none; the map `[x_minus, c]`."""
    expected = {"pre_bijector": size, "base": size, "decoder": size,
                "conditional_map": num_dropped + size}
    for arg, part in (("pre_bijector", pre_bijector), ("base", base), ("decoder", decoder),
                      ("conditional_map", conditional_map)):
        if part is None:
            continue
        got = contract.conditional_size(part)
        if got and got != expected[arg]:
            what = ("concat([x_minus, c]): the dropped coordinates plus the funnel's "
                    f"condition, {num_dropped} + {size}" if arg == "conditional_map"
                    else "the funnel's `conditional_size`")
            raise ValueError(f"Funnel: `{arg}` must take a conditional input of size "
                             f"{expected[arg]} ({what}) or none; got conditional_size={got}.")
