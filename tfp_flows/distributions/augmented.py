"""Augmented (marginalising) flows: a flow on (x, eps) with eps integrated out.

de Boer's marginalizing flows (seed 002) and, with a learned proposal,
augmented normalizing flows / VFlow. See DESIGN.md 3.3.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.distributions.importance import importance_sampled_log_prob
from tfp_flows.distributions.proposals import StandardNormalProposal
from tfp_flows.internal import contract, keras_owned, tfp_compat, validation

tfd = tfp.distributions

DEFAULT_NUM_SAMPLES = 200  # the thesis' S (seed 002, Sec. 3.1)


class Augmented(FlowDistribution):
    """Density on `R^D` from a flow `p_T` on `R^{D+B}` by marginalising `eps in R^B`.

    Generative model: `(x, eps) ~ p_T`, keep `x`. Its density is

        p(x) = integral p_T(x, eps) d eps = E_{eps ~ q(.|x)} [p_T(x, eps) / q(eps | x)]

    for any proposal q whose support covers R^B.

    **How exact `log_prob` is.** `log_prob(x, num_samples=S)` is the
    importance-sampled estimate

        log p_S(x) = logsumexp_s [log p_T(x, eps_s) - log q(eps_s | x)] - log S,
        eps_s ~ q(. | x) i.i.d.,

    evaluated in chunks (`importance_sampled_log_prob`) so S = 1000 fits in
    memory. It is *biased low* for finite S (Jensen: `E[log p_S(x)] <= log p(x)`;
    it is the S-sample importance-weighted bound of Burda et al., 2016, whose
    expectation increases with S) and *consistent* (`-> log p(x)` as S grows).
    The bias is about `Var[w] / (2 S p(x)^2)` for weights `w = p_T / q`, so a
    proposal close to `p_T(eps | x)` needs far fewer samples. With B = 0 there is
    nothing to marginalise and `log_prob` is the wrapped flow's exact log-density.

    **Training.** `elbo(x, seed)` is the single-sample bound
    `log p_T(x, eps) - log q(eps | x)`, `eps ~ q(. | x)` drawn afresh each call
    (de Boer's training objective with q = N(0, I)); `importance_weighted_bound(
    x, num_samples=K, seed)` is the K-sample bound, tighter in expectation. Both
    are reparameterised, so the gradient reaches the flow and a learned proposal.

    **Sampling** draws `(x, eps)` from the flow and drops `eps`: exact samples
    from the model's marginal.

    Args:
      flow: a distribution on `R^{D+B}` (event shape `[D + B]`), e.g.
        `tfp_flows.flows.real_nvp(event_size=D + B)`; data occupy its first D
        coordinates, the auxiliary variables the last B.
      event_size: D, the data dimension.
      num_augment: B >= 0, the number of auxiliary dimensions.
      proposal: an object with `sample_and_log_prob(x, seed)` (see
        `tfp_flows.distributions.proposals`); default `N(0, I_B)`.
      num_samples: default S of `log_prob` (200, as in the thesis).
      chunk_size: samples per chunk in `log_prob` (default: the largest divisor
        of S not above 100).

    `log_prob(x, num_samples=None, seed=None, chunk_size=None,
    conditional_input=None)` overrides S and the chunk size per call; `seed` is
    a stateless seed (None draws one). `conditional_input` (in `log_prob`,
    `elbo`, the IW bound and `sample`) is routed to the wrapped flow's
    conditional bijectors; the proposal sees only x.

    #### Examples

    ```python
    D, B = 2, 2
    dist = tfp_flows.distributions.Augmented(
        tfp_flows.flows.real_nvp(event_size=D + B), event_size=D, num_augment=B)
    bound = dist.elbo(x, seed=(0, 1))                       # [N], train on this
    log_p = dist.log_prob(x, num_samples=1000, seed=(0, 2))  # [N], estimate
    samples = dist.sample(500, seed=(0, 3))                   # [500, D]
    ```

    #### References

    [1]: Marcello de Boer. Marginalizing flows. Bachelor thesis (seed 002).
    [2]: Chin-Wei Huang, Laurent Dinh, Aaron Courville. Augmented normalizing
         flows: bridging the gap between generative flows and latent variable
         models. arXiv:2002.07101, 2020.
    [3]: Jianfei Chen et al. VFlow: more expressive generative flows with
         variational data augmentation. ICML 2020.
    [4]: Yuri Burda, Roger Grosse, Ruslan Salakhutdinov. Importance weighted
         autoencoders. ICLR 2016.
    """

    def __init__(self, flow, event_size, num_augment, proposal=None,
                 num_samples=DEFAULT_NUM_SAMPLES, chunk_size=None, validate_args=False,
                 name="Augmented"):
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
        self._num_samples = validation.positive_int(num_samples, "num_samples")
        self._chunk_size = (None if chunk_size is None
                            else validation.positive_int(chunk_size, "chunk_size"))
        if proposal is None and self._num_augment:
            proposal = StandardNormalProposal(self._num_augment)
        if proposal is not None:
            if not callable(getattr(proposal, "sample_and_log_prob", None)):
                raise TypeError("`proposal` must have a `sample_and_log_prob(x, seed)` method; "
                                f"got {type(proposal).__name__}.")
            if self._num_augment == 0:
                raise ValueError("`proposal` must be None when `num_augment` is 0.")
            if getattr(proposal, "num_augment", self._num_augment) != self._num_augment:
                raise ValueError(f"`proposal` draws {proposal.num_augment} auxiliary dimensions; "
                                 f"expected `num_augment` = {self._num_augment}.")
        self._flow = flow
        self._proposal = proposal
        with tf.name_scope(name) as name:
            super().__init__(event_size, dtype=flow.dtype, validate_args=validate_args,
                             parameters=parameters, name=name, takes_seed=True)
        layers = keras_owned.find_keras_layers(flow)
        layers += list(getattr(proposal, "keras_layers", ()))
        self._own_keras_layers(*layers)

    @property
    def flow(self):
        return self._flow

    @property
    def proposal(self):
        return self._proposal

    @property
    def num_augment(self):
        return self._num_augment

    @property
    def num_samples(self):
        return self._num_samples

    @property
    def log_prob_kind(self):
        """Importance-sampled for B > 0; for B = 0 that of the wrapped flow (exact if bijective)."""
        if self._num_augment == 0:
            return contract.log_prob_kind(self._flow)
        return contract.weakest([contract.IMPORTANCE_SAMPLED, contract.log_prob_kind(self._flow)])

    # -- bounds and estimates -----------------------------------------------

    def _flow_log_prob(self, y, conditional_input):
        return contract.log_prob(self._flow, y, conditional_input)

    def _log_weights(self, x, seed, conditional_input=None):
        """`log p_T(x, eps) - log q(eps | x)`, one fresh `eps ~ q(. | x)` per row of x."""
        eps, log_q = self._proposal.sample_and_log_prob(x, seed=seed)
        y = tf.concat([x, tf.cast(eps, x.dtype)], axis=-1)
        return self._flow_log_prob(y, conditional_input) - log_q

    def elbo(self, x, seed=None, conditional_input=None):
        """Single-sample bound `log p_T(x, eps) - log q(eps | x)`, `eps ~ q`; shape `[...]`.

        An unbiased estimate of the ELBO `E_q[log p_T(x, eps) - log q(eps | x)]
        <= log p(x)`; exact `log p(x)` when B = 0.
        """
        x = self._check_input(x)
        if self._num_augment == 0:
            return self._flow_log_prob(x, conditional_input)
        return self._log_weights(x, seed, conditional_input)

    def importance_weighted_bound(self, x, num_samples, seed=None, conditional_input=None):
        """K-sample bound `logsumexp_k [log p_T(x, eps_k) - log q(eps_k | x)] - log K`.

        `E[bound_K] <= E[bound_{K+1}] <= log p(x)` (Burda et al., 2016); K = 1 is
        the ELBO. Computed in one chunk (for training, K is small).
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
        x = self._check_input(x)
        if self._num_augment == 0:
            # Nothing to marginalise: the exact flow density, for any S.
            return self._flow_log_prob(x, conditional_input)
        if chunk_size is None:
            chunk_size = min(num_samples, 100)
            while num_samples % chunk_size:  # largest divisor of S not above 100
                chunk_size -= 1
        cond = None
        if conditional_input is not None:
            cond = tf.broadcast_to(
                tf.convert_to_tensor(conditional_input, self.dtype),
                tf.concat([tf.shape(x)[:-1], tf.shape(conditional_input)[-1:]], 0))
        return importance_sampled_log_prob(
            lambda x_rep, s, c_rep: self._log_weights(x_rep, s, c_rep),
            x, num_samples, seed=tfp.random.sanitize_seed(seed), chunk_size=chunk_size,
            conditional_input=cond)

    # -- sampling and initialisation ----------------------------------------

    def _sample_n(self, n, seed=None, conditional_input=None):
        kwargs = {}
        if conditional_input is not None and isinstance(self._flow,
                                                        tfp_compat.TRANSFORMED_TYPES):
            bkw = contract.conditional_kwargs(self._flow.bijector, conditional_input)
            if bkw:
                kwargs["bijector_kwargs"] = bkw
        y = self._flow.sample(n, seed=seed, **kwargs)
        return y[..., :self.event_size]

    def initialize_from_data(self, x, conditional_input=None, seed=(0, 0)):
        """Data-dependent initialisation of the wrapped flow (ActNorm etc.).

        The flow sees `(x, eps)` with `eps ~ q(. | x)`, i.e. the inputs it is
        trained on; with the default (or a fresh learned) proposal that is
        `N(0, I_B)`. Idempotent as far as the flow's layers are.
        """
        x = self._check_input(x)
        y = x
        if self._num_augment:
            eps, _ = self._proposal.sample_and_log_prob(x, seed=seed)
            y = tf.concat([x, tf.cast(eps, x.dtype)], axis=-1)
        contract.initialize_from_data(self._flow, y, conditional_input)
