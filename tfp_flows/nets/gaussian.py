"""One conditional diagonal-Gaussian head: `N(u; mu(h, c), diag sigma(h, c)^2)` from an MLP.

Funnel decoders `p(x_minus | z)`, augmentation's learned proposal
`q(eps | x)` and LGF's `p(u | z)` / `q(u | z)` are all this head.
`[mu, raw] = MLP([h, c])` (the optional conditional input `c` concatenated),
and the scale is

* `scale="exp"`: `sigma = exp(soft_clamp(raw, log_scale_bound))`, so
  `log sigma` stays in `[-bound, bound]`;
* `scale="softplus"`: `sigma = softplus(raw + log(e - 1)) + min_scale`, so
  `sigma >= min_scale` and the density stays finite.

The MLP's output layer is zero-initialised, so a new head is `N(0, I)` for
every input (either scale rule gives `sigma = 1` at `raw = 0`). Sampling is
reparameterised, `u = mu + sigma * e`, `e ~ N(0, I)`, so gradients reach the
head's weights and its inputs. `log_prob` is exact and never clipped.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import keras_owned, validation
from tfp_flows.internal.config import Configurable
from tfp_flows.internal.math import (
    UNIT_SOFTPLUS_SHIFT,
    diagonal_normal_log_prob,
    soft_clamp,
    standard_normal_log_prob,
)
from tfp_flows.nets.mlp import MLP

SCALES = ("exp", "softplus")


class GaussianHead(Configurable, tf.Module):
    """`N(u; mu(h, c), diag sigma(h, c)^2)` over `[..., output_size]` given `h` `[..., input_size]`.

    Args:
      input_size: size of `h`.
      output_size: size of `u`.
      hidden_units: hidden widths of the MLP (`()`: affine).
      activation: Keras activation name.
      conditional_size: size of an optional `conditional_input` `c` (0: none).
      scale: `"exp"` (soft-clamped log scale) or `"softplus"` (scale floor).
      log_scale_bound: bound of `|log sigma|` for `scale="exp"` (None: no clamp).
      min_scale: floor of `sigma` for `scale="softplus"`.
      dtype: float32 or float64.

    #### Examples

    ```python
    head = GaussianHead(input_size=6, output_size=2, conditional_size=3)
    u, log_q = head.sample_and_log_prob(h, seed=(0, 1), conditional_input=c)  # [N, 2], [N]
    log_p = head.log_prob(u, h, conditional_input=c)                          # [N]
    ```
    """

    def __init__(self, input_size, output_size, hidden_units=(64, 64), activation="relu",
                 conditional_size=0, scale="exp", log_scale_bound=5.0, min_scale=1e-3,
                 dtype="float32", name="gaussian_head"):
        super().__init__(name=name)
        self.input_size = validation.positive_int(input_size, "input_size", allow_zero=True)
        self.output_size = validation.positive_int(output_size, "output_size")
        self.conditional_size = validation.positive_int(conditional_size, "conditional_size",
                                                        allow_zero=True)
        self.scale = validation.one_of(scale, "scale", SCALES)
        self.log_scale_bound = (None if log_scale_bound is None else
                                validation.positive_float(log_scale_bound, "log_scale_bound"))
        self.min_scale = validation.positive_float(min_scale, "min_scale")
        dtype = validation.float_dtype(dtype)
        self.net = keras_owned.build_layer(
            MLP(2 * self.output_size, hidden_units, activation,
                conditional_size=self.conditional_size, dtype=dtype.name, name=f"{name}_mlp"),
            (None, self.input_size))
        keras_owned.own_keras_layers(self, self.net)

    @property
    def keras_layers(self):
        """The Keras layers holding the head's weights (its MLP)."""
        return (self.net,)

    def loc_and_log_scale(self, h, conditional_input=None):
        """`(mu, log sigma)`, each `[..., output_size]`."""
        loc, raw = tf.split(self.net(h, conditional_input=conditional_input), 2, axis=-1)
        if self.scale == "exp":
            return loc, soft_clamp(raw, self.log_scale_bound)
        return loc, tf.math.log(tf.nn.softplus(raw + UNIT_SOFTPLUS_SHIFT) + self.min_scale)

    def log_prob(self, u, h, conditional_input=None):
        """`log N(u; mu, diag sigma^2)` summed over the last axis, `[...]`."""
        loc, log_scale = self.loc_and_log_scale(h, conditional_input)
        return diagonal_normal_log_prob(u, loc, log_scale)

    def sample_and_log_prob(self, h, seed=None, conditional_input=None):
        """One reparameterised draw per row of `h` and its log-density."""
        loc, log_scale = self.loc_and_log_scale(h, conditional_input)
        e = tf.random.stateless_normal(tf.shape(loc), tfp.random.sanitize_seed(seed),
                                       dtype=loc.dtype)
        return loc + tf.exp(log_scale) * e, (standard_normal_log_prob(e)
                                             - tf.reduce_sum(log_scale, axis=-1))

    def sample(self, h, seed=None, conditional_input=None):
        """One reparameterised draw per row of `h`."""
        return self.sample_and_log_prob(h, seed, conditional_input)[0]
