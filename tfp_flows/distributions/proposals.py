"""Proposals q(eps | x) for the auxiliary variables of an augmented flow.

An augmented (marginalising) flow models `x in R^D` through a flow on
`(x, eps) in R^{D+B}`; its density and bounds need a distribution q over the
B auxiliary dimensions to draw `eps` from (DESIGN.md 3.3). Every proposal
here has one method,

    sample_and_log_prob(x, seed) -> (eps [..., B], log q(eps | x) [...]),

drawing one `eps` per row of `x` by reparameterisation, so gradients reach
both the flow and the proposal's weights. Any object with this method (and a
`num_augment` attribute and a `keras_layers` tuple) can serve as a proposal.

* `StandardNormalProposal`: `q(eps) = N(0, I_B)`, de Boer's choice (seed 002,
  eq. 8). No weights.
* `GaussianProposal`: `q(eps | x) = N(mu(x), diag(sigma(x)^2))` with
  `(mu, log sigma)` from a `nets.MLP` whose output layer starts at zero, so
  the proposal starts as `N(0, I_B)`. This is the learned proposal of
  augmented normalizing flows (Huang et al., 2020) and VFlow (Chen et al.,
  2020): training it tightens the bound towards `log p(x)`.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.conditioners import soft_clamp
from tfp_flows.internal import keras_owned, validation
from tfp_flows.internal.config import Configurable
from tfp_flows.nets.mlp import MLP

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def _normal_noise(x, num_augment, seed):
    """Standard-normal noise `[..., B]` with the batch shape of `x`."""
    shape = tf.concat([tf.shape(x)[:-1], [num_augment]], 0)
    return tf.random.stateless_normal(shape, seed=tfp.random.sanitize_seed(seed), dtype=x.dtype,
                                      alg="philox")


def _standard_normal_log_prob(u):
    return -0.5 * tf.reduce_sum(tf.square(u), axis=-1) - u.shape[-1] * _HALF_LOG_TWO_PI


class StandardNormalProposal(Configurable, tf.Module):
    """`q(eps) = N(0, I_B)`, independent of x (the thesis' proposal).

    `log q(eps) = -|eps|^2 / 2 - (B / 2) log(2 pi)`.

    Args:
      num_augment: B, the number of auxiliary dimensions (>= 1).
    """

    def __init__(self, num_augment, name="standard_normal_proposal"):
        super().__init__(name=name)
        self.num_augment = validation.positive_int(num_augment, "num_augment")
        self.keras_layers = ()

    def sample_and_log_prob(self, x, seed=None):
        eps = _normal_noise(x, self.num_augment, seed)
        return eps, _standard_normal_log_prob(eps)


class GaussianProposal(Configurable, tf.Module):
    """Learned conditional proposal `q(eps | x) = N(mu(x), diag(exp(2 s(x))))`.

    `[mu, s_raw] = MLP(x)`, `s = c tanh(s_raw / c)` (soft-clamped log scale,
    `c = log_scale_bound`, so `exp(s)` can neither vanish nor overflow), and
    `eps = mu + exp(s) * u` with `u ~ N(0, I_B)` (reparameterised), so

        log q(eps | x) = log N(u; 0, I_B) - sum_b s_b(x).

    The MLP's output layer is zero-initialised: a new proposal is `N(0, I_B)`,
    exactly the thesis' proposal. With `hidden_units=()` the MLP is affine and
    can represent the exact posterior of a linear-Gaussian flow.

    Args:
      event_size: D, the size of the data x it conditions on.
      num_augment: B, the number of auxiliary dimensions (>= 1).
      hidden_units: hidden widths of the MLP.
      activation: Keras activation name.
      log_scale_bound: soft bound on |log sigma|.
      dtype: float32 or float64.

    #### Examples

    ```python
    q = GaussianProposal(event_size=2, num_augment=3)
    eps, log_q = q.sample_and_log_prob(x, seed=(1, 2))   # [N, 3], [N]
    ```
    """

    def __init__(self, event_size, num_augment, hidden_units=(64, 64), activation="relu",
                 log_scale_bound=5.0, dtype=tf.float32, name="gaussian_proposal"):
        super().__init__(name=name)
        self.event_size = validation.positive_int(event_size, "event_size")
        self.num_augment = validation.positive_int(num_augment, "num_augment")
        self.log_scale_bound = validation.positive_float(log_scale_bound, "log_scale_bound")
        dtype = validation.float_dtype(dtype)
        self.net = keras_owned.build_layer(
            MLP(2 * self.num_augment, hidden_units, activation, dtype=dtype.name,
                name=f"{name}_mlp"),
            (None, self.event_size))
        self.keras_layers = (self.net,)
        keras_owned.own_keras_layers(self, self.net)

    def loc_and_log_scale(self, x):
        """`(mu(x), s(x))`, each `[..., B]`."""
        loc, log_scale = tf.split(self.net(x), 2, axis=-1)
        return loc, soft_clamp(log_scale, self.log_scale_bound)

    def sample_and_log_prob(self, x, seed=None):
        loc, log_scale = self.loc_and_log_scale(x)
        u = _normal_noise(x, self.num_augment, seed)
        eps = loc + tf.exp(log_scale) * u
        return eps, _standard_normal_log_prob(u) - tf.reduce_sum(log_scale, axis=-1)


PROPOSALS = ("standard_normal", "gaussian")


def make_proposal(kind, event_size, num_augment, dtype=tf.float32, **kwargs):
    """A proposal by name: 'standard_normal' (thesis) or 'gaussian' (learned, from x).

    `kwargs` go to `GaussianProposal` (e.g. `hidden_units`); the standard
    normal takes none.
    """
    validation.one_of(kind, "proposal", PROPOSALS)
    if kind == "standard_normal":
        if kwargs:
            raise ValueError("The 'standard_normal' proposal takes no options; "
                             f"got {sorted(kwargs)}.")
        return StandardNormalProposal(num_augment)
    return GaussianProposal(event_size, num_augment, dtype=dtype, **kwargs)
