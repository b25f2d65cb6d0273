"""Augmented (marginalising) flows: a flow on (x, eps) with eps integrated out.

de Boer's marginalizing flows (2020) and, with a learned proposal, augmented
normalizing flows (Huang et al., 2020) / VFlow (Chen et al., 2020): a
bijective flow `p_T` on `R^{D+B}` whose last B coordinates are auxiliary
variables, integrated out by importance sampling. Conditional on an optional
`c in R^C` throughout: the flow is `p_T(x, eps | c)`, the proposal
`q(eps | x, c)`.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.distributions import joint
from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.distributions.importance import (
    align_condition,
    condition_rows,
    importance_sampled_log_prob,
    sample_rows,
)
from tfp_flows.distributions.proposals import StandardNormalProposal
from tfp_flows.internal import contract, keras_owned, validation

tfd = tfp.distributions

DEFAULT_NUM_SAMPLES = 200  # the thesis' S (de Boer, 2020, Sec. 3.1)


class Augmented(FlowDistribution):
    """Density on `R^D` from a flow `p_T` on `R^{D+B}` by marginalising `eps in R^B`.

    Generative model: `(x, eps) ~ p_T(. | c)`, keep `x`. Its density is

        p(x | c) = integral p_T(x, eps | c) d eps
                 = E_{eps ~ q(.|x, c)} [p_T(x, eps | c) / q(eps | x, c)]

    for any proposal q whose support covers R^B.

    **How exact `log_prob` is.** `log_prob(x, num_samples=S)` is the
    importance-sampled estimate

        log p_S(x | c) = logsumexp_s [log p_T(x, eps_s | c) - log q(eps_s | x, c)] - log S,
        eps_s ~ q(. | x, c) i.i.d.,

    evaluated in chunks (`importance_sampled_log_prob`) so S = 1000 fits in
    memory. It is *consistent* (`-> log p(x | c)` as S grows) and *biased low*
    for finite S (Jensen: `E[log p_S] <= log p`; it is the S-sample
    importance-weighted bound of Burda et al., 2016, whose expectation
    increases with S). The bias is about `Var[w] / (2 S p^2)` for weights
    `w = p_T / q`, so a proposal close to `p_T(eps | x, c)` needs far fewer
    samples. With B = 0 there is nothing to marginalise and `log_prob` is the
    wrapped flow's log-density (exact for a bijective flow).

    **Training.** `elbo(x, seed)` is the single-sample bound
    `log p_T(x, eps | c) - log q(eps | x, c)`, `eps ~ q` drawn afresh each call
    (de Boer's training objective with q = N(0, I)); `importance_weighted_bound(
    x, num_samples=K, seed)` is the K-sample bound, tighter in expectation. Both
    are reparameterised, so the gradient reaches the flow and a learned proposal.

    **Sampling** draws `(x, eps)` from the flow and drops `eps`: exact samples
    from the model's marginal `p(x | c)`.

    **Seeds.** Every estimate uses the stateless `seed` it is given: split into
    one for the proposal and one for the flow (used if the flow's log-density
    itself draws random numbers, e.g. a stochastic trace).

    Args:
      flow: a distribution on `R^{D+B}` (event shape `[D + B]`), e.g.
        `tfp_flows.flows.real_nvp(event_size=D + B, conditional_size=C)`; data
        occupy its first D coordinates, the auxiliary variables the last B.
      event_size: D, the data dimension.
      num_augment: B >= 0, the number of auxiliary dimensions.
      proposal: an object with `sample_and_log_prob(x, seed,
        conditional_input=None)` (see `tfp_flows.distributions.proposals`);
        default `N(0, I_B)`. A proposal with `conditional_size = C` sees `c`.
      num_samples: default S of `log_prob` (200, as in the thesis).
      chunk_size: samples per chunk in `log_prob` (default: the largest divisor
        of S not above 100; an explicit one must divide S).
      conditional_size: C, the size of `conditional_input` (0: none; None:
        that of `flow`). The flow must take exactly this condition.

    `log_prob(x, num_samples=None, seed=None, chunk_size=None,
    conditional_input=None)` overrides S and the chunk size per call. With
    `C > 0`, `log_prob`, `elbo`, the IW bound, `sample` and
    `initialize_from_data` require `conditional_input` (`[..., C]`, or `[C]`
    / `[n, C]` for `sample(n)`); without, they reject one.

    #### Examples

    ```python
    D, B, C = 2, 2, 3
    dist = tfp_flows.distributions.Augmented(
        tfp_flows.flows.real_nvp(event_size=D + B, conditional_size=C), event_size=D,
        num_augment=B, conditional_size=C)
    bound = dist.elbo(x, seed=(0, 1), conditional_input=c)                       # [N]
    log_p = dist.log_prob(x, num_samples=1000, seed=(0, 2), conditional_input=c)  # [N]
    samples = dist.sample(500, seed=(0, 3), conditional_input=c[0])               # [500, D]
    ```

    #### References

    [1] Stijn de Boer. Marginalizing Flows. BSc thesis (Artificial
        Intelligence), Radboud University Nijmegen, 2020.
    [2] Chin-Wei Huang, Laurent Dinh, Aaron Courville. Augmented Normalizing
        Flows: Bridging the Gap Between Generative Flows and Latent Variable
        Models. arXiv:2002.07101, 2020.
    [3] Jianfei Chen, Cheng Lu, Biqi Chenli, Jun Zhu, Tian Tian. VFlow: More
        Expressive Generative Flows with Variational Data Augmentation. ICML 2020.
    [4] Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance Weighted
        Autoencoders. ICLR 2016.
    """

    def __init__(self, flow, event_size, num_augment, proposal=None,
                 num_samples=DEFAULT_NUM_SAMPLES, chunk_size=None, validate_args=False,
                 conditional_size=None, name="Augmented"):
        parameters = dict(locals())
        if not isinstance(flow, tfd.Distribution):
            raise TypeError(f"`flow` must be a tfd.Distribution; got {type(flow).__name__}.")
        event_size = validation.positive_int(event_size, "event_size")
        self._num_augment = validation.positive_int(num_augment, "num_augment",
                                                    allow_zero=True)
        flow_event = tf.TensorShape(flow.event_shape)
        expected = event_size + self._num_augment
        if flow_event.rank != 1 or flow_event[0] != expected:
            raise ValueError(
                f"`flow` must have event shape [event_size + num_augment] = [{expected}]; "
                f"got {flow_event}.")
        flow_size = contract.conditional_size(flow)
        if conditional_size is None:
            conditional_size = flow_size
        conditional_size = validation.positive_int(conditional_size, "conditional_size",
                                                   allow_zero=True)
        if flow_size != conditional_size:
            raise ValueError(f"`flow` must take a `conditional_input` of size "
                             f"`conditional_size` = {conditional_size} (p_T(x, eps | c)); "
                             f"got a flow with conditional size {flow_size}.")
        self._num_samples = validation.positive_int(num_samples, "num_samples")
        self._chunk_size = (None if chunk_size is None
                            else validation.positive_int(chunk_size, "chunk_size"))
        if proposal is None and self._num_augment:
            proposal = StandardNormalProposal(self._num_augment)
        if proposal is not None:
            self._check_proposal(proposal, conditional_size)
        self._flow = flow
        self._proposal = proposal
        with tf.name_scope(name) as name:
            super().__init__(event_size, dtype=flow.dtype, validate_args=validate_args,
                             parameters=parameters, name=name,
                             conditional_size=conditional_size, takes_seed=True)
        layers = keras_owned.find_keras_layers(flow)
        layers += list(getattr(proposal, "keras_layers", ()))
        self._own_keras_layers(*layers)

    def _check_proposal(self, proposal, conditional_size):
        if not callable(getattr(proposal, "sample_and_log_prob", None)):
            raise TypeError("`proposal` must have a `sample_and_log_prob(x, seed)` method; "
                            f"got {type(proposal).__name__}.")
        if self._num_augment == 0:
            raise ValueError("`proposal` must be None when `num_augment` is 0.")
        if getattr(proposal, "num_augment", self._num_augment) != self._num_augment:
            raise ValueError(f"`proposal` draws {proposal.num_augment} auxiliary dimensions; "
                             f"expected `num_augment` = {self._num_augment}.")
        size = getattr(proposal, "conditional_size", 0)
        if size not in (0, conditional_size):
            raise ValueError(f"`proposal` takes a `conditional_input` of size {size}; expected "
                             f"0 or `conditional_size` = {conditional_size}.")

    @property
    def flow(self):
        """The flow on the augmented space `R^(D+B)` (a distribution)."""
        return self._flow

    @property
    def proposal(self):
        """The proposal `q(eps | x [, c])` of the augmented coordinates."""
        return self._proposal

    @property
    def num_augment(self):
        """B, the number of augmented coordinates."""
        return self._num_augment

    @property
    def num_samples(self):
        """Default importance samples S of `log_prob`."""
        return self._num_samples

    @property
    def log_prob_kind(self):
        """Importance-sampled for B > 0; for B = 0 that of the wrapped flow (exact if bijective)."""
        if self._num_augment == 0:
            return contract.log_prob_kind(self._flow)
        return contract.weakest([contract.IMPORTANCE_SAMPLED, contract.log_prob_kind(self._flow)])

    # -- bounds and estimates -----------------------------------------------

    def _inputs(self, x, conditional_input):
        """Checked `x` and condition, broadcast to a common batch shape."""
        x = self._check_input(x)
        c = contract.check_conditional_input(self, conditional_input, self.dtype,
                                             type(self).__name__)
        return align_condition(x, c)

    def _propose(self, x, seed, conditional_input):
        c = conditional_input if getattr(self._proposal, "conditional_size", 0) else None
        eps, log_q = self._proposal.sample_and_log_prob(x, seed=seed, conditional_input=c)
        return tf.concat([x, tf.cast(eps, x.dtype)], axis=-1), log_q

    def _flow_log_prob(self, y, conditional_input, seed):
        return contract.log_prob(self._flow, y, conditional_input, seed=seed)

    def _log_weights(self, x, seed, conditional_input=None):
        """`log p_T(x, eps | c) - log q(eps | x, c)`, one fresh `eps ~ q` per row of x."""
        seed_q, seed_t = tfp.random.split_seed(tfp.random.sanitize_seed(seed), n=2,
                                               salt="augmented")
        y, log_q = self._propose(x, seed_q, conditional_input)
        return self._flow_log_prob(y, conditional_input, seed_t) - log_q

    def elbo(self, x, seed=None, conditional_input=None):
        """Single-sample bound `log p_T(x, eps | c) - log q(eps | x, c)`, `eps ~ q`; `[...]`.

        An unbiased estimate of the ELBO `E_q[log p_T - log q] <= log p(x | c)`;
        `log p(x | c)` itself when B = 0.
        """
        x, c = self._inputs(x, conditional_input)
        if self._num_augment == 0:
            return self._flow_log_prob(x, c, seed)
        return self._log_weights(x, seed, c)

    def importance_weighted_bound(self, x, num_samples, seed=None, conditional_input=None):
        """K-sample bound `logsumexp_k [log p_T(x, eps_k | c) - log q(eps_k | x, c)] - log K`.

        `E[bound_K] <= E[bound_{K+1}] <= log p(x | c)` (Burda et al., 2016);
        K = 1 is the ELBO. Computed in one chunk (for training, K is small).
        """
        num_samples = validation.positive_int(num_samples, "num_samples")
        return self._estimate(x, num_samples, seed, num_samples, conditional_input)

    def _log_prob(self, x, num_samples=None, seed=None, chunk_size=None,
                  conditional_input=None):
        num_samples = self._num_samples if num_samples is None else validation.positive_int(
            num_samples, "num_samples")
        chunk_size = self._chunk_size if chunk_size is None else chunk_size
        return self._estimate(x, num_samples, seed, chunk_size, conditional_input)

    def _estimate(self, x, num_samples, seed, chunk_size, conditional_input):
        x, c = self._inputs(x, conditional_input)
        if self._num_augment == 0:
            # Nothing to marginalise: the flow's density, for any S.
            return self._flow_log_prob(x, c, seed)
        return importance_sampled_log_prob(self._log_weights, x, num_samples, seed=seed,
                                           chunk_size=chunk_size, conditional_input=c)

    def joint_distribution(self, conditional_input=None):
        """The joint `p(x, eps | c) = p_T(concat(x, eps) | c)` as a `LatentJoint`.

        A `tfd.JointDistributionNamed` over `{"x": [D], "eps": [B]}` whose
        `log_prob` is the flow's; `experimental_pin(x=x)` is the unnormalised
        posterior `p(eps | x, c)`, the optimal proposal, whose normaliser is
        `p(x | c)`. Needs B > 0. `conditional_input`: `[C]` or `[*batch, C]`.
        See `distributions.joint`.
        """
        return joint.augmented_joint(self, conditional_input)

    # -- sampling and initialisation ----------------------------------------

    def _sample_n(self, n, seed=None, conditional_input=None):
        c = contract.check_conditional_input(self, conditional_input, self.dtype,
                                             type(self).__name__)
        c = condition_rows(c, n, type(self).__name__)
        y = sample_rows(self._flow, n, c, seed, type(self).__name__)
        return y[..., :self.event_size]

    def initialize_from_data(self, x, conditional_input=None, seed=(0, 0)):
        """Data-dependent initialisation of the wrapped flow (ActNorm etc.).

        The flow sees `(x, eps)` with `eps ~ q(. | x, c)`, i.e. the inputs it is
        trained on; with the default (or a fresh learned) proposal that is
        `N(0, I_B)`. Idempotent as far as the flow's layers are.
        """
        x, c = self._inputs(x, conditional_input)
        y = x
        if self._num_augment:
            y, _ = self._propose(x, seed, c)
        contract.initialize_from_data(self._flow, y, c)
