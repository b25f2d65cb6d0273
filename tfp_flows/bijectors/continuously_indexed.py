"""Continuously indexed bijections `G(.; u)`: the layer map of localised generative flows.

A localised generative flow (LGF, Cornish et al., 2019; later "CIF") replaces
each bijection of a flow by a family `G(.; u)` indexed by a continuous latent
`u`. `ContinuouslyIndexed` is the paper's choice,

    G(x; u) = s(u) * g(x) + t(u),        s(u) > 0 elementwise,

with `g` any bijection and `s`, `t` two outputs of one MLP of `u`. For a fixed
`u`, `G(.; u)` is a bijection, so it is a `tfb.Bijector` taking
`conditional_input=u`. `FixedConditional(bijector, u)` bakes a fixed `u` in
(used by the generic bijector checks and by the Dirac reduction).

A conditional density `p(x | c)` conditions every layer on `c` as well: the
layer's conditional input is then `[u, c]` (size U + C), the `s`/`t` MLP
sees all of it, `G(x; u, c) = s(u, c) * g(x; c) + t(u, c)`, and `g` may be a
conditional flow of `c`.

Direction: `G` maps *data towards the base* (the density direction), so it is
this bijector's `inverse`; `forward` is `G^-1(.; u)`, the sampling direction,
as for every bijector of this library (`tfb.Chain([b1, b2])` maps data `x` to
`b2^-1(b1^-1(x))`).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.base import KerasBijector, keras_layer_name
from tfp_flows.bijectors.one_pass import remember_ildj
from tfp_flows.internal import contract, keras_owned, validation
from tfp_flows.internal.math import soft_clamp
from tfp_flows.nets.mlp import MLP

tfb = tfp.bijectors


class ContinuouslyIndexed(KerasBijector):
    """`G(x; u) = s(u) * g(x) + t(u)`, a bijection of `x` for each index `u`.

    Density direction (`inverse`), with `g = bijector.inverse`:

        z = G(x; u) = s(u) * g(x) + t(u),
        log|det D_x G(x; u)| = log|det Dg(x)| + sum_i log s_i(u).

    Sampling direction (`forward`): `x = g^-1((z - t(u)) / s(u))`, with
    log-det `-sum_i log s_i(u) + log|det Dg^-1(.)|`.

    Note on the paper: Cornish et al. (2019, the display defining G) write
    the Jacobian determinant as `det Dg(x) * sum_i s_i(u)`. That is wrong:
    `D_x G = diag(s(u)) Dg(x)`, whose determinant is the *product*
    `det Dg(x) * prod_i s_i(u)`, so

        log|det D_x G(x; u)| = log|det Dg(x)| + sum_i log s_i(u).

    `s` and `t` are the two halves of one `nets.MLP(u)` output, `t = out[:D]`
    and `s = exp(b * tanh(out[D:] / b))` (soft clamp `b = log_scale_bound`, so
    `s` stays in `[e^-b, e^b]`). The MLP's output layer starts at zero, so a
    new layer has `s = 1`, `t = 0`: `G(.; u) = g` for every `u`.

    `inverse` computes `G(x; u)` and its log-det in one pass (one MLP call, one
    pass of `g`) and leaves the log-det in TFP's cache, so an
    `inverse_log_det_jacobian` call at the same point and arguments after it does
    not run the networks again (`bijectors.one_pass`); called on its own, the
    log-det is computed afresh.

    With `conditional_size = C > 0` the layer takes `conditional_input =
    [u, c]` (`[..., U + C]`): the MLP sees `[u, c]` and a conditional `g`
    (conditional size C) gets `c`.

    Args:
      event_size: D, the size of `x`.
      index_size: U, size of the index `u` (>= 1).
      bijector: `g`, a `tfb.Bijector` on `[..., D]` in this library's
        convention (its `inverse` is the density direction), or None for the
        identity. Never conditional on `u`; it may take the condition `c`
        (then its conditional size must be `conditional_size`).
      hidden_units: hidden widths of the `s`/`t` MLP.
      activation: activation of the `s`/`t` MLP.
      log_scale_bound: soft clamp `b` of `log s` (None: no clamp).
      conditional_size: C, size of the outer condition `c` (0: none).
      dtype: float32 or float64.

    #### Examples

    ```python
    g = tfp_flows.flows.maf(event_size=2, num_layers=1).bijector
    layer = ContinuouslyIndexed(event_size=2, index_size=1, bijector=g)
    u = tf.constant([[0.3]])
    z = layer.inverse(x, conditional_input=u)             # G(x; u)
    ildj = layer.inverse_log_det_jacobian(x, event_ndims=1, conditional_input=u)
    flow = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(2)), FixedConditional(layer, [0.3]))
    ```

    #### References

    [1] Rob Cornish, Anthony Caterini, George Deligiannidis, Arnaud Doucet.
        Localised Generative Flows. arXiv:1909.13833, 2019. Published as
        "Relaxing Bijectivity Constraints with Continuously Indexed
        Normalising Flows", ICML 2020.
    """

    def __init__(self, event_size, index_size, bijector=None, hidden_units=(10, 10),
                 activation="relu", log_scale_bound=3.0, dtype=tf.float32, validate_args=False,
                 conditional_size=0, name="continuously_indexed"):
        parameters = dict(locals())
        event_size = validation.positive_int(event_size, "event_size")
        self._index_size = validation.positive_int(index_size, "index_size")
        self._outer_size = validation.positive_int(conditional_size, "conditional_size",
                                                   allow_zero=True)
        dtype = validation.float_dtype(dtype)
        if bijector is None:
            bijector = tfb.Identity()
        if not isinstance(bijector, tfb.Bijector):
            raise TypeError("`bijector` must be a `tfb.Bijector` or None; "
                            f"got {type(bijector).__name__}.")
        g_size = contract.conditional_size(bijector)
        if g_size and not self._outer_size:
            raise ValueError("`bijector` (g) must not be conditional: G(x; u) = s(u) * g(x) + "
                             "t(u) feeds `u` to s and t only; got a conditional bijector.")
        if g_size not in (0, self._outer_size):
            raise ValueError(f"`bijector` (g) must take the outer condition c of size "
                             f"`conditional_size` = {self._outer_size} (or none); got "
                             f"conditional size {g_size}.")
        if log_scale_bound is not None:
            log_scale_bound = validation.positive_float(log_scale_bound, "log_scale_bound")
        self._bound = log_scale_bound
        self._g = bijector

        def make_layers(scope):
            self.net = keras_owned.build_layer(
                MLP(2 * event_size, hidden_units, activation, dtype=dtype.name,
                    name=keras_layer_name(scope, "_st_net")),
                (None, self._index_size + self._outer_size))
            return {"net": self.net}

        super().__init__(parameters, make_layers, event_size, dtype,
                         validate_args=validate_args, name=name,
                         conditional_size=self._index_size + self._outer_size,
                         takes_seed=contract.takes_seed(bijector))

    @property
    def index_size(self):
        """Size of the index `u` that conditions the layer."""
        return self._index_size

    @property
    def outer_conditional_size(self):
        """C, the size of the outer condition `c` in `conditional_input = [u, c]` (0: none)."""
        return self._outer_size

    @property
    def log_prob_kind(self):
        """That of `g` (the `s`, `t` part is exact)."""
        return contract.log_prob_kind(self._g)

    @property
    def bijector(self):
        """`g`, the inner bijection."""
        return self._g

    def _check_index(self, u):
        size = self._index_size + self._outer_size
        if u is None:
            what = "the index u" if not self._outer_size else "[u, c], the index and condition"
            raise ValueError(f"{type(self).__name__} needs `conditional_input` ({what}, "
                             f"shape [..., {size}]); got None.")
        u = tf.convert_to_tensor(u, self.dtype, name="conditional_input")
        return validation.check_event_size(u, size, f"{type(self).__name__} index u",
                                           self.validate_args)

    def shift_and_log_scale(self, u):
        """`t(u)` and `log s(u)`, each `[..., D]` (`u` is `[u, c]` with a condition)."""
        shift, log_scale = tf.split(self.net(self._check_index(u)), 2, axis=-1)
        return shift, soft_clamp(log_scale, self._bound)

    def _g_kwargs(self, x, u, seed):
        """Routing of the outer condition `c = u[..., U:]` (and a seed) to `g`."""
        c = None
        if self._outer_size and contract.is_conditional(self._g):
            c = self._check_index(u)[..., self._index_size:]
            batch = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(c)[:-1])
            c = tf.broadcast_to(c, tf.concat([batch, [self._outer_size]], 0))
        return contract.route(self._g, c, seed)

    def _batch_zeros(self, x, log_scale):
        # The log-det has the broadcast batch shape of x and u, even for g = identity.
        shape = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(log_scale)[:-1])
        return tf.zeros(shape, self.dtype)

    def _inverse(self, y, conditional_input=None, seed=None):
        # One pass for the map and its log-det: the log-det call that follows finds it in
        # TFP's cache, so the s/t MLP and g run once (g's own log-det comes from g's cache).
        shift, log_scale = self.shift_and_log_scale(conditional_input)
        kw = self._g_kwargs(y, conditional_input, seed)
        inner = self._g.inverse(y, **kw)
        inner_ildj = self._g.inverse_log_det_jacobian(y, event_ndims=1, **kw)
        remember_ildj(self, "inverse", y, inner_ildj + tf.reduce_sum(log_scale, -1)
                      + self._batch_zeros(y, log_scale), conditional_input=conditional_input,
                      seed=seed)
        return tf.exp(log_scale) * inner + shift

    def _forward(self, x, conditional_input=None, seed=None):
        shift, log_scale = self.shift_and_log_scale(conditional_input)
        h = (x - shift) * tf.exp(-log_scale)
        return self._g.forward(h, **self._g_kwargs(h, conditional_input, seed))

    def _inverse_log_det_jacobian(self, y, conditional_input=None, seed=None):
        _, log_scale = self.shift_and_log_scale(conditional_input)
        inner = self._g.inverse_log_det_jacobian(y, event_ndims=1,
                                                 **self._g_kwargs(y, conditional_input, seed))
        return inner + tf.reduce_sum(log_scale, -1) + self._batch_zeros(y, log_scale)

    def _forward_log_det_jacobian(self, x, conditional_input=None, seed=None):
        shift, log_scale = self.shift_and_log_scale(conditional_input)
        h = (x - shift) * tf.exp(-log_scale)
        inner = self._g.forward_log_det_jacobian(h, event_ndims=1,
                                                 **self._g_kwargs(h, conditional_input, seed))
        return inner - tf.reduce_sum(log_scale, -1) + self._batch_zeros(x, log_scale)

    def initialize_from_data(self, y, conditional_input=None):
        """Data-dependent initialisation of `g` (e.g. its ActNorms); `s`, `t` start at 1, 0."""
        c = None
        if self._outer_size and conditional_input is not None:
            c = self._check_index(conditional_input)[..., self._index_size:]
        contract.initialize_from_data(self._g, y, c)
