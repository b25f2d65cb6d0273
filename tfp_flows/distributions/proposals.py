"""Proposals q(eps | x, c) for the auxiliary variables of an augmented flow.

An augmented (marginalising) flow models `x in R^D` (given an optional
condition `c in R^C`) through a flow on `(x, eps) in R^{D+B}`; its density and
bounds need a distribution q over the B auxiliary dimensions to draw `eps`
from. Every proposal here has one method,

    sample_and_log_prob(x, seed, conditional_input=None)
        -> (eps [..., B], log q(eps | x, c) [...]),

drawing one `eps` per row of `x` by reparameterisation, so gradients reach
both the flow and the proposal's weights, plus the attributes `num_augment`
(B), `conditional_size` (C, 0 if it ignores the condition) and
`keras_layers`. Any object with these can serve as a proposal.

* `StandardNormalProposal`: `q(eps) = N(0, I_B)`, the thesis' choice (de
  Boer, 2020, eq. 8). No weights, no condition.
* `GaussianProposal`: `q(eps | x, c) = N(mu(x, c), diag(sigma(x, c)^2))`, a
  `nets.GaussianHead` (`scale="exp"`, soft-clamped log scale) whose output
  layer starts at zero, so the proposal starts as `N(0, I_B)`. This is the
  learned proposal of augmented normalizing flows (Huang et al., 2020) and
  VFlow (Chen et al., 2020): training it tightens the bound towards
  `log p(x | c)`.

#### References

[1] Stijn de Boer. Marginalizing Flows. BSc thesis (Artificial Intelligence),
    Radboud University Nijmegen, 2020.
[2] Chin-Wei Huang, Laurent Dinh, Aaron Courville. Augmented Normalizing
    Flows: Bridging the Gap Between Generative Flows and Latent Variable
    Models. arXiv:2002.07101, 2020.
[3] Jianfei Chen, Cheng Lu, Biqi Chenli, Jun Zhu, Tian Tian. VFlow: More
    Expressive Generative Flows with Variational Data Augmentation. ICML 2020.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import keras_owned, validation
from tfp_flows.internal.config import Configurable
from tfp_flows.internal.math import standard_normal_log_prob
from tfp_flows.nets.gaussian import GaussianHead


class StandardNormalProposal(Configurable, tf.Module):
    """`q(eps) = N(0, I_B)`, independent of x and of the condition (the thesis' proposal).

    `log q(eps) = -|eps|^2 / 2 - (B / 2) log(2 pi)`.

    Args:
      num_augment: B, the number of auxiliary dimensions (>= 1).
    """

    conditional_size = 0

    def __init__(self, num_augment, name="standard_normal_proposal"):
        super().__init__(name=name)
        self.num_augment = validation.positive_int(num_augment, "num_augment")
        self.keras_layers = ()

    def sample_and_log_prob(self, x, seed=None, conditional_input=None):
        """One `eps ~ N(0, I_B)` per row of `x` (the condition is ignored) and `log q(eps)`."""
        shape = tf.concat([tf.shape(x)[:-1], [self.num_augment]], 0)
        # The same draw as `GaussianHead` for the same seed: a new GaussianProposal equals this.
        eps = tf.random.stateless_normal(shape, tfp.random.sanitize_seed(seed), dtype=x.dtype)
        return eps, standard_normal_log_prob(eps)


class GaussianProposal(Configurable, tf.Module):
    """Learned proposal `q(eps | x, c) = N(mu(x, c), diag(exp(2 s(x, c))))`: a `GaussianHead`.

    `[mu, s_raw] = MLP([x, c])`, `s = b tanh(s_raw / b)` (soft-clamped log
    scale, `b = log_scale_bound`, so `exp(s)` can neither vanish nor overflow),
    and `eps = mu + exp(s) * u` with `u ~ N(0, I_B)` (reparameterised), so

        log q(eps | x, c) = log N(u; 0, I_B) - sum_b s_b(x, c).

    The MLP's output layer is zero-initialised: a new proposal is `N(0, I_B)`,
    exactly the thesis' proposal. With `hidden_units=()` the MLP is affine and
    can represent the exact posterior of a linear-Gaussian flow.

    Args:
      event_size: D, the size of the data x it conditions on.
      num_augment: B, the number of auxiliary dimensions (>= 1).
      hidden_units: hidden widths of the MLP.
      activation: Keras activation name.
      log_scale_bound: soft bound on |log sigma|.
      conditional_size: C, size of the condition it also sees (0: none).
      dtype: float32 or float64.

    #### Examples

    ```python
    q = GaussianProposal(event_size=2, num_augment=3, conditional_size=1)
    eps, log_q = q.sample_and_log_prob(x, seed=(1, 2), conditional_input=c)  # [N, 3], [N]
    ```
    """

    def __init__(self, event_size, num_augment, hidden_units=(64, 64), activation="relu",
                 log_scale_bound=5.0, conditional_size=0, dtype=tf.float32,
                 name="gaussian_proposal"):
        super().__init__(name=name)
        self.event_size = validation.positive_int(event_size, "event_size")
        self.num_augment = validation.positive_int(num_augment, "num_augment")
        self.log_scale_bound = validation.positive_float(log_scale_bound, "log_scale_bound")
        self.head = GaussianHead(self.event_size, self.num_augment, hidden_units, activation,
                                 conditional_size=conditional_size, scale="exp",
                                 log_scale_bound=self.log_scale_bound,
                                 dtype=validation.float_dtype(dtype), name=name)
        self.conditional_size = self.head.conditional_size
        keras_owned.own_keras_layers(self, *self.head.keras_layers)

    @property
    def net(self):
        """The head's MLP (`[x, c] -> [mu, s_raw]`)."""
        return self.head.net

    @property
    def keras_layers(self):
        """The Keras layers holding the proposal's weights (its head's MLP)."""
        return self.head.keras_layers

    def loc_and_log_scale(self, x, conditional_input=None):
        """`(mu(x, c), s(x, c))`, each `[..., B]`."""
        return self.head.loc_and_log_scale(x, conditional_input)

    def sample_and_log_prob(self, x, seed=None, conditional_input=None):
        """One reparameterised `eps ~ q(. | x, c)` per row of `x` and `log q(eps | x, c)`."""
        return self.head.sample_and_log_prob(x, seed, conditional_input)


PROPOSALS = ("standard_normal", "gaussian")


def make_proposal(kind, event_size, num_augment, dtype=tf.float32, conditional_size=0,
                  **kwargs):
    """A proposal by name: 'standard_normal' (thesis) or 'gaussian' (learned, from x and c).

    `conditional_size` is the size of the flow's condition: the learned
    proposal sees it, the standard normal ignores it. `kwargs` go to
    `GaussianProposal` (e.g. `hidden_units`); the standard normal takes none.
    """
    validation.one_of(kind, "proposal", PROPOSALS)
    if kind == "standard_normal":
        if kwargs:
            raise ValueError("The 'standard_normal' proposal takes no options; "
                             f"got {sorted(kwargs)}.")
        return StandardNormalProposal(num_augment)
    return GaussianProposal(event_size, num_augment, dtype=dtype,
                            conditional_size=conditional_size, **kwargs)
