"""Joint views of the latent-variable families: funnel, augmented flow and LGF as TFP joints."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import bijectors as tffb
from tfp_flows import flows
from tfp_flows.bijectors.funnel_maps import ElementwiseSpline
from tfp_flows.distributions import LGF, Augmented, Funnel, GaussianDecoder, LatentJoint
from tfp_flows.internal import contract

tfd, tfb = tfp.distributions, tfp.bijectors
DTYPES = [tf.float32, tf.float64]
ATOL = {tf.float32: 2e-3, tf.float64: 1e-8}


def _perturb(dist, seed, scale=0.2):
    """Random weights everywhere (new nets start at the identity, which hides mistakes)."""
    rng = np.random.default_rng(seed)
    for v in dist.trainable_variables:
        v.assign(v + scale * rng.standard_normal(v.shape).astype(v.dtype.as_numpy_dtype))
    return dist


def _moments_close(a, b, tol_se=5.0):
    """Means within `tol_se` standard errors and standard deviations within 15%."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    se = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
    np.testing.assert_array_less(np.abs(a.mean(0) - b.mean(0)), tol_se * se)
    np.testing.assert_allclose(a.std(0), b.std(0), rtol=0.15)


# -- funnel ------------------------------------------------------------------------------


def _funnel(dtype, conditional_size=0):
    f = flows.funnel_nsf(4, latent_size=2, num_layers=2, hidden_units=(8,), num_bins=4,
                         dtype=dtype.name, conditional_size=conditional_size)
    return _perturb(f, 1)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_funnel_joint_log_prob_plus_log_det_is_the_exact_density(dtype):
    funnel = _funnel(dtype)
    joint, bij = funnel.joint_distribution(), funnel.joint_bijector()
    assert isinstance(joint, tfd.JointDistribution) and funnel.pre_bijector is not None
    x = tf.random.stateless_normal([6, 4], (1, 2), dtype=dtype)
    v = bij.inverse(x)
    np.testing.assert_allclose(v["z"], funnel.encode(x), atol=ATOL[dtype])
    expected = funnel.log_prob(x)
    got = joint.log_prob(v) + bij.inverse_log_det_jacobian(x, event_ndims=1)
    np.testing.assert_allclose(got, expected, atol=ATOL[dtype])
    # The pushforward of the joint by T is the funnel itself.
    np.testing.assert_allclose(tfd.TransformedDistribution(joint, bij).log_prob(x), expected,
                               atol=ATOL[dtype])
    np.testing.assert_allclose(bij.forward(v), x, atol=ATOL[dtype])
    # Factorised: p_Z(z) p_phi(x_dropped | z).
    np.testing.assert_allclose(
        joint.log_prob(v), funnel.base.log_prob(v["z"])
        + funnel.decoder.log_prob(v["x_dropped"], v["z"]), atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_funnel_joint_samples_push_forward_to_the_funnel(dtype):
    funnel = _funnel(dtype)
    joint = funnel.joint_distribution()
    s = joint.sample(3000, seed=(3, 4))
    assert s["z"].shape == (3000, 2) and s["x_dropped"].shape == (3000, 2)
    assert s["z"].dtype == dtype
    s2 = joint.sample([2, 5], seed=(3, 5))
    assert s2["z"].shape == (2, 5, 2) and joint.log_prob(s2).shape == (2, 5)
    x = funnel.joint_bijector().forward(s)
    _moments_close(x, funnel.sample(3000, seed=(5, 6)))


def test_funnel_pinned_dropped_coordinates_normalise_to_their_marginal():
    # D = 2, m = 1, no pre-flow: int p(z, x_d) dz = p(x_d) = int p(x_d, x_plus) dx_plus.
    f64 = tf.float64
    funnel = Funnel(2, 1, tfd.MultivariateNormalDiag(tf.zeros(1, f64)),
                    GaussianDecoder(1, 1, hidden_units=(8,), dtype="float64"),
                    ElementwiseSpline(1, conditional_size=1, hidden_units=(8,), dtype=f64))
    _perturb(funnel, 2, scale=0.3)
    x_d = tf.constant([0.4], f64)
    pinned = funnel.joint_distribution().experimental_pin(x_dropped=x_d)
    assert list(pinned.event_shape) == ["z"]
    grid = np.linspace(-12.0, 12.0, 6001)
    dz = grid[1] - grid[0]
    lp_z = pinned.unnormalized_log_prob(z=tf.constant(grid[:, None]))
    x = tf.concat([tf.fill([grid.size, 1], tf.constant(0.4, f64)), grid[:, None]], -1)
    lp_x = funnel.log_prob(x)
    mass_z = float(tf.reduce_sum(tf.exp(lp_z))) * dz
    mass_x = float(tf.reduce_sum(tf.exp(lp_x))) * dz
    np.testing.assert_allclose(mass_z, mass_x, rtol=1e-4)
    # The pinned density is p_Z(z) p_phi(x_d | z): the conditional of z up to p(x_d).
    z = tf.constant([[-1.0], [0.3], [2.0]], f64)
    np.testing.assert_allclose(
        pinned.unnormalized_log_prob(z), funnel.base.log_prob(z)
        + funnel.decoder.log_prob(tf.broadcast_to(x_d, [3, 1]), z), atol=1e-12)


def test_conditional_funnel_joint_binds_the_condition():
    funnel = _funnel(tf.float32, conditional_size=3)
    c = tf.random.stateless_normal([5, 3], (1, 1))
    x = tf.random.stateless_normal([5, 4], (2, 2))
    joint, bij = funnel.joint_distribution(c), funnel.joint_bijector(c)
    assert joint.batch_shape == [5]
    got = joint.log_prob(bij.inverse(x)) + bij.inverse_log_det_jacobian(x, event_ndims=1)
    np.testing.assert_allclose(got, funnel.log_prob(x, conditional_input=c), atol=2e-3)
    s = joint.sample(7, seed=(1, 3))
    assert s["z"].shape == (7, 5, 2)
    one = funnel.joint_distribution(c[0])
    xs = funnel.joint_bijector(c[0]).forward(one.sample(2000, seed=(4, 4)))
    _moments_close(xs, funnel.sample(2000, seed=(4, 5), conditional_input=c[0]))
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        funnel.joint_distribution()
    with pytest.raises(ValueError, match=r"`conditional_input` must have shape \[\.\.\., 3\]"):
        funnel.joint_bijector(tf.zeros([2]))
    with pytest.raises(ValueError, match="`conditional_input` must be None"):
        _funnel(tf.float32).joint_distribution(c)


def test_conditional_funnel_pinned_joint_is_the_posterior_under_each_condition():
    funnel = _funnel(tf.float32, conditional_size=3)
    c = tf.random.stateless_normal([5, 3], (6, 1))
    x = tf.random.stateless_normal([5, 4], (6, 2))
    joint, bij = funnel.joint_distribution(c), funnel.joint_bijector(c)
    v = bij.inverse(x)
    pinned = joint.experimental_pin(x_dropped=v["x_dropped"])
    z = tf.random.stateless_normal([3, 5, 2], (6, 3))
    got = pinned.unnormalized_log_prob(z=z)
    c3 = tf.broadcast_to(c, [3, 5, 3])
    # p_Z(z | c) p_phi(x_dropped | z, c), each part given c if it is conditional.
    expected = contract.log_prob(funnel.base, z, c3 if contract.is_conditional(funnel.base)
                                 else None)
    dec_c = {"conditional_input": c3} if funnel.decoder.conditional_size else {}
    expected += funnel.decoder.log_prob(tf.broadcast_to(v["x_dropped"], [3, 5, 2]), z, **dec_c)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    # T with the bound condition maps the posterior's latent back to x (x_dropped pinned).
    np.testing.assert_allclose(bij.forward(v), x, atol=2e-3)
    other = funnel.joint_distribution(c[::-1]).experimental_pin(
        x_dropped=v["x_dropped"]).unnormalized_log_prob(z=z)
    assert np.max(np.abs(other - got)) > 1e-2


def test_joint_views_reject_a_condition_without_a_static_shape():
    funnel = _funnel(tf.float32, conditional_size=3)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def build(c):
        return funnel.joint_distribution(c).log_prob(
            {"z": tf.zeros([2, 2]), "x_dropped": tf.zeros([2, 2])})

    with pytest.raises(ValueError, match="`conditional_input` must have a static shape"):
        build(tf.zeros([2, 3]))


# -- augmented flow ----------------------------------------------------------------------

L4 = np.array([[1.0, 0.0, 0.0, 0.0],
               [0.5, 1.0, 0.0, 0.0],
               [0.8, -0.3, 0.7, 0.0],
               [-0.4, 0.6, 0.2, 0.8]])


def _linear_gaussian_augmented():
    """(x, eps) = L z, z ~ N(0, I_4): p(x) and p(eps | x) are Gaussian in closed form."""
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(4, tf.float64)),
                                       tfb.ScaleMatvecTriL(tf.constant(L4)))
    cov = L4 @ L4.T
    s_xx, s_ex, s_ee = cov[:2, :2], cov[2:, :2], cov[2:, 2:]
    gain = s_ex @ np.linalg.inv(s_xx)
    post_cov = s_ee - gain @ s_ex.T
    return Augmented(flow, 2, 2), cov, gain, post_cov


def test_augmented_joint_is_the_flow_on_the_concatenation_and_pins_to_the_posterior():
    aug, cov, gain, post_cov = _linear_gaussian_augmented()
    joint = aug.joint_distribution()
    v = joint.sample(5, seed=(1, 2))
    assert v["x"].shape == (5, 2) and v["eps"].shape == (5, 2)
    np.testing.assert_allclose(joint.log_prob(v), aug.flow.log_prob(
        tf.concat([v["x"], v["eps"]], -1)), atol=1e-12)
    # Pinned at x: log p_T(x, eps) = log p(eps | x) + log p(x), the constant the exact marginal.
    x = tf.constant([0.7, -1.1], tf.float64)
    pinned = joint.experimental_pin(x=x)
    eps = tf.random.stateless_normal([6, 2], (3, 4), dtype=tf.float64)
    posterior = tfd.MultivariateNormalTriL(tf.linalg.matvec(tf.constant(gain), x),
                                           tf.constant(np.linalg.cholesky(post_cov)))
    marginal = tfd.MultivariateNormalTriL(tf.zeros(2, tf.float64),
                                          tf.constant(np.linalg.cholesky(cov[:2, :2])))
    np.testing.assert_allclose(pinned.unnormalized_log_prob(eps) - posterior.log_prob(eps),
                               np.full(6, marginal.log_prob(x)), atol=1e-10)
    # Batched pins: one posterior per row of x.
    xs = tf.random.stateless_normal([3, 2], (5, 6), dtype=tf.float64)
    assert joint.experimental_pin(x=xs).unnormalized_log_prob(tf.zeros([4, 3, 2],
                                                                       tf.float64)).shape == (4, 3)
    # Samples: the joint's x is the model's marginal.
    s = joint.sample(4000, seed=(7, 8))
    np.testing.assert_allclose(np.cov(np.concatenate([s["x"], s["eps"]], -1).T), cov, atol=0.15)
    _moments_close(s["x"], aug.sample(4000, seed=(8, 9)))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_conditional_augmented_joint_matches_the_flow(dtype):
    aug = _perturb(flows.augmented_real_nvp(2, num_augment=2, num_layers=2, hidden_units=(8,),
                                            dtype=dtype.name, conditional_size=3), 3)
    c = tf.random.stateless_normal([4, 3], (1, 5), dtype=dtype)
    joint = aug.joint_distribution(c)
    v = joint.sample(6, seed=(2, 3))
    assert v["x"].shape == (6, 4, 2) and v["x"].dtype == dtype
    y = tf.concat([v["x"], v["eps"]], -1)
    np.testing.assert_allclose(joint.log_prob(v), aug.flow.log_prob(
        y, bijector_kwargs=contract.route(aug.flow.bijector, c)), atol=ATOL[dtype])
    lp = tf.function(lambda x, e: joint.log_prob(x=x, eps=e), jit_compile=True)
    np.testing.assert_allclose(lp(v["x"], v["eps"]), joint.log_prob(v), atol=ATOL[dtype])
    one = aug.joint_distribution(c[0])
    _moments_close(one.sample(2000, seed=(5, 5))["x"],
                   aug.sample(2000, seed=(5, 6), conditional_input=c[0]))


def test_conditional_augmented_joint_pins_per_condition_and_rejects_bad_conditions():
    aug = _perturb(flows.augmented_real_nvp(2, num_augment=2, num_layers=2, hidden_units=(8,),
                                            conditional_size=3), 3)
    c = tf.random.stateless_normal([4, 3], (1, 5))
    x = tf.random.stateless_normal([4, 2], (2, 5))
    eps = tf.random.stateless_normal([6, 4, 2], (3, 5))
    joint = aug.joint_distribution(c)
    assert joint.batch_shape == [4] and aug.joint_distribution(c[0]).batch_shape == []
    # The pinned joint is p_T(x_i, eps | c_i): row i of the pin sees condition i.
    pinned = joint.experimental_pin(x=x)
    got = pinned.unnormalized_log_prob(eps=eps)
    y = tf.concat([tf.broadcast_to(x, [6, 4, 2]), eps], -1)
    expected = aug.flow.log_prob(y, bijector_kwargs=contract.route(
        aug.flow.bijector, tf.broadcast_to(c, [6, 4, 3])))
    assert got.shape == (6, 4)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    # A different condition gives a different posterior.
    other = aug.joint_distribution(c[::-1]).experimental_pin(x=x).unnormalized_log_prob(eps=eps)
    assert np.max(np.abs(other - got)) > 1e-2
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        aug.joint_distribution()
    with pytest.raises(ValueError, match=r"`conditional_input` must have shape \[\.\.\., 3\]"):
        aug.joint_distribution(tf.zeros([4, 2]))
    with pytest.raises(ValueError, match="`conditional_input` must be None"):
        _linear_gaussian_augmented()[0].joint_distribution(tf.zeros([3], tf.float64))


def test_augmented_joint_rejects_no_augmentation():
    aug = Augmented(flows.real_nvp(2, num_layers=1, hidden_units=(4,)), 2, 0)
    with pytest.raises(ValueError, match="`num_augment` must be positive"):
        aug.joint_distribution()


# -- LGF ---------------------------------------------------------------------------------


def _lgf(dtype, conditional_size=0):
    lgf = flows.lgf_maf(2, num_layers=2, index_size=2, hidden_units=(8,), st_hidden_units=(4,),
                        prior_hidden_units=(8,), posterior_hidden_units=(8,), dtype=dtype.name,
                        conditional_size=conditional_size)
    return _perturb(lgf, 4)


def _record_posteriors(lgf, record):
    """Wraps each `q(u_l | z)` so the draws of the family's own `elbo` are recorded."""
    for i, head in enumerate(lgf.posteriors):
        original = head.sample_and_log_prob

        def wrapped(h, seed=None, conditional_input=None, _i=i, _f=original):
            u, log_q = _f(h, seed, conditional_input)
            record[_i] = (u, log_q)
            return u, log_q

        head.sample_and_log_prob = wrapped


@pytest.mark.parametrize("conditional_size", [0, 3], ids=["plain", "conditional"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_lgf_joint_log_prob_is_the_p_part_of_the_elbo_integrand(dtype, conditional_size):
    lgf = _lgf(dtype, conditional_size)
    x = tf.random.stateless_normal([5, 2], (1, 2), dtype=dtype)
    c = (tf.random.stateless_normal([5, conditional_size], (2, 3), dtype=dtype)
         if conditional_size else None)
    record = {}
    _record_posteriors(lgf, record)
    elbo = lgf.elbo(x, seed=(4, 5), conditional_input=c)
    us = {f"u_{i + 1}": record[i][0] for i in range(2)}
    log_q = record[0][1] + record[1][1]
    joint = lgf.joint_distribution(c)
    assert list(joint.part_sizes) == ["u_1", "u_2", "x"]
    # log w = log p(x, u) - log q(u | x): the joint is the p part, computed independently.
    np.testing.assert_allclose(joint.log_prob(x=x, **us), elbo + log_q,
                               atol=10 * ATOL[dtype], rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_lgf_joint_samples_match_the_family(dtype):
    lgf = _lgf(dtype)
    s = lgf.joint_distribution().sample(3000, seed=(1, 1))
    assert s["u_1"].shape == (3000, 2) and s["x"].shape == (3000, 2) and s["x"].dtype == dtype
    _moments_close(s["x"], lgf.sample(3000, seed=(2, 2)))


def test_conditional_lgf_joint_samples_pins_and_rejects_bad_conditions():
    lgf = _lgf(tf.float32, conditional_size=3)
    c = tf.random.stateless_normal([5, 3], (7, 1))
    joint = lgf.joint_distribution(c)
    assert joint.batch_shape == [5]
    s = joint.sample(7, seed=(1, 2))
    assert s["u_1"].shape == (7, 5, 2) and s["x"].shape == (7, 5, 2)
    # One condition: the joint's x is the family's p(x | c).
    one = lgf.joint_distribution(c[0])
    assert one.batch_shape == []
    _moments_close(one.sample(3000, seed=(2, 3))["x"],
                   lgf.sample(3000, seed=(3, 4), conditional_input=c[0]))
    # Pinned at x: a posterior over (u_1, u_2) per row, each under its own condition.
    x = tf.random.stateless_normal([5, 2], (4, 4))
    us = {k: tf.random.stateless_normal([3, 5, 2], (5, i)) for i, k in enumerate(["u_1", "u_2"])}
    got = joint.experimental_pin(x=x).unnormalized_log_prob(**us)
    assert got.shape == (3, 5)
    for i in range(5):
        row = lgf.joint_distribution(c[i]).log_prob(
            x=x[i], **{k: u[:, i] for k, u in us.items()})
        np.testing.assert_allclose(got[:, i], row, atol=2e-3, rtol=1e-5)
    other = lgf.joint_distribution(c[::-1]).experimental_pin(x=x).unnormalized_log_prob(**us)
    assert np.max(np.abs(other - got)) > 1e-2
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        lgf.joint_distribution()
    with pytest.raises(ValueError, match=r"`conditional_input` must have shape \[\.\.\., 3\]"):
        lgf.joint_distribution(tf.zeros([5, 4]))
    with pytest.raises(ValueError, match="`conditional_input` must be None"):
        _lgf(tf.float32).joint_distribution(c)


def test_lgf_pinned_x_is_the_exact_posterior_of_a_linear_gaussian_stack():
    # One layer, diagonal: z0 ~ N(0, 1), u | z0 ~ N(A z0 + a, sig^2), z0 = s x + C u + c0.
    A, a, sig = np.array([0.8, -0.5]), np.array([0.3, 0.1]), np.array([0.5, 1.2])
    Cc, c0, s = np.array([1.2, -0.7]), np.array([0.2, -0.3]), np.array([1.5, 0.7])

    def set_dense(mlp, diag, bias):
        kernel = np.zeros((2, 4))
        kernel[:, :2] = np.diag(diag)
        mlp.set_weights([kernel, np.asarray(bias, np.float64)])

    unclamp = lambda v, b: b * np.arctanh(v / b)  # noqa: E731
    layer = tffb.ContinuouslyIndexed(2, 2, None, hidden_units=(), log_scale_bound=3.0,
                                     dtype=tf.float64)
    lgf = LGF([layer], index_size=2, event_size=2, prior_hidden_units=(),
              posterior_hidden_units=(), log_scale_bound=5.0, dtype=tf.float64)
    set_dense(layer.net, Cc, np.concatenate([c0, unclamp(np.log(s), 3.0)]))
    set_dense(lgf.priors[0].net, A, np.concatenate([a, unclamp(np.log(sig), 5.0)]))
    mean_x = -(Cc * a + c0) / s
    var_x = ((1 - Cc * A) ** 2 + Cc**2 * sig**2) / s**2
    cov_ux = (A * (1 - Cc * A) - Cc * sig**2) / s
    gain = cov_ux / var_x
    var_post = A**2 + sig**2 - cov_ux**2 / var_x
    x = tf.constant([0.4, -0.9], tf.float64)
    pinned = lgf.joint_distribution().experimental_pin(x=x)
    u = tf.random.stateless_normal([5, 2], (6, 7), dtype=tf.float64)
    posterior = tfd.MultivariateNormalDiag(a + gain * (x - mean_x), np.sqrt(var_post))
    marginal = tfd.MultivariateNormalDiag(mean_x, np.sqrt(var_x))
    np.testing.assert_allclose(pinned.unnormalized_log_prob(u_1=u) - posterior.log_prob(u),
                               np.full(5, marginal.log_prob(x)), atol=1e-10)
    xs = lgf.joint_distribution().sample(4000, seed=(3, 3))["x"]
    np.testing.assert_array_less(np.abs(np.mean(xs, 0) - mean_x), 5 * np.sqrt(var_x / 4000))
    np.testing.assert_allclose(np.var(xs, 0), var_x, rtol=0.1)


def test_lgf_joint_rejects_dirac_and_latent_joint_limits():
    lgf = flows.lgf_maf(2, num_layers=1, hidden_units=(4,), dirac=True)
    with pytest.raises(ValueError, match="`dirac=True`"):
        lgf.joint_distribution()
    aug, *_ = _linear_gaussian_augmented()
    joint = aug.joint_distribution()
    assert isinstance(joint, LatentJoint)
    assert joint.part_sizes == collections.OrderedDict(x=2, eps=2)
    with pytest.raises(NotImplementedError, match="not a sum over parts"):
        joint.log_prob_parts(joint.sample(seed=(1, 1)))
    with pytest.raises(NotImplementedError, match="conditional inference"):
        joint.experimental_pin(x=tf.zeros(2, tf.float64)).sample_unpinned(2, seed=(1, 2))
