"""FlowModel follows the flow contract: conditions, Keras forms, data checks, traces, seeds,
precision; every baseline takes a condition, coupling flows a scalar p(y | c)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows as tff
from tfp_flows import bijectors, flows, nets, testing
from tfp_flows.internal import contract, validation
from tfp_flows.keras import FlowModel, ReverseKL, objectives

tfd = tfp.distributions
RNG = np.random.default_rng(0)
C = RNG.standard_normal((128, 1)).astype("float32")
Y = (np.concatenate([2.0 * C, -C], axis=1)
     + 0.1 * RNG.standard_normal((128, 2))).astype("float32")


def _conditional(seed=0, **kwargs):
    dist = flows.real_nvp(2, num_layers=2, hidden_units=(8,), conditional_size=1, **kwargs)
    testing.perturb_weights(dist, scale=0.3, seed=seed)
    return dist


def _unconditional():
    return flows.real_nvp(2, num_layers=1, hidden_units=(4,))


def _hutchinson(**kwargs):
    flow = flows.ffjord(2, hidden_units=(8,), solver="rk4", num_steps=3, trace="hutchinson",
                        **kwargs)
    testing.perturb_weights(flow, scale=0.5, seed=1)
    return flow


# -- 1. sample and log_prob through the contract --------------------------------------


def test_sample_with_one_condition_or_one_per_row():
    model = FlowModel(_conditional())
    one = model.sample(3, conditional_input=[0.7], seed=(1, 2))
    rows = model.sample(3, conditional_input=[[0.7], [0.7], [0.7]], seed=(1, 2))
    assert one.shape == rows.shape == (3, 2)
    np.testing.assert_allclose(one, rows, rtol=1e-6)
    other = model.sample(3, conditional_input=[-2.0], seed=(1, 2))
    assert not np.allclose(one, other)  # the condition is used
    grid = model.sample([2, 3], conditional_input=np.zeros((2, 3, 1), "float32"), seed=(0, 1))
    assert grid.shape == (2, 3, 2)
    with pytest.raises(ValueError, match=r"must have shape \[C\].*got shape \(4, 1\)"):
        model.sample(3, conditional_input=np.zeros((4, 1), "float32"))


def test_log_prob_routes_condition_and_seed():
    model = FlowModel(_conditional())
    expected = contract.log_prob(model.distribution, Y[:5], C[:5])
    np.testing.assert_array_equal(model.log_prob(Y[:5], conditional_input=C[:5]), expected)
    hutch = FlowModel(_hutchinson())
    a = hutch.log_prob(Y[:5], seed=(1, 2))
    np.testing.assert_array_equal(a, hutch.log_prob(Y[:5], seed=(1, 2)))
    assert not np.allclose(a, hutch.log_prob(Y[:5], seed=(3, 4)))


@pytest.mark.parametrize("call", ["log_prob", "sample", "fit", "evaluate", "predict"])
def test_missing_condition_is_a_value_error(call):
    model = FlowModel(_conditional())
    model.compile(keras.optimizers.Adam(1e-3))
    run = {"log_prob": lambda: model.log_prob(Y),
           "sample": lambda: model.sample(2),
           "fit": lambda: model.fit(Y, epochs=1, verbose=0),
           "evaluate": lambda: model.evaluate(tf.data.Dataset.from_tensor_slices(Y).batch(32),
                                              verbose=0),
           "predict": lambda: model.predict(Y, verbose=0)}[call]
    with pytest.raises(ValueError, match=r"FlowModel: `conditional_input` is required: "
                                         r"expected a tensor of shape \[\.\.\., 1\]; got None"):
        run()


@pytest.mark.parametrize("call", ["log_prob", "sample", "fit"])
def test_condition_for_an_unconditional_flow_is_a_value_error(call):
    model = FlowModel(_unconditional())
    model.compile(keras.optimizers.Adam(1e-3))
    run = {"log_prob": lambda: model.log_prob(Y, conditional_input=C),
           "sample": lambda: model.sample(2, conditional_input=[1.0]),
           "fit": lambda: model.fit({"x": Y, "conditional_input": C}, epochs=1, verbose=0)}[call]
    with pytest.raises(ValueError, match="`conditional_input` must be None for an "
                                         "unconditional flow"):
        run()


@pytest.mark.parametrize("net", ["mlp", "made"])
def test_conditional_net_without_its_condition(net):
    dist = (flows.real_nvp if net == "mlp" else flows.maf)(
        2, num_layers=1, hidden_units=(4,), conditional_size=1)
    with pytest.raises(ValueError, match=r"`conditional_input` is required: expected a "
                                         r"tensor of shape \[\.\.\., 1\]; got None"):
        dist.log_prob(Y[:3])


# -- 2. Keras forms -------------------------------------------------------------------


def test_condition_target_form_equals_dict_form_and_trains():
    model = FlowModel(_conditional())
    model.compile(keras.optimizers.Adam(1e-2))
    as_pair = model.evaluate(C, Y, batch_size=32, verbose=0)
    as_dict = model.evaluate({"x": Y, "conditional_input": C}, batch_size=32, verbose=0)
    np.testing.assert_allclose(as_pair, as_dict, rtol=1e-6)
    np.testing.assert_allclose(as_pair, -np.mean(model.log_prob(Y, conditional_input=C)),
                               rtol=1e-5)
    pairs = tf.data.Dataset.from_tensor_slices((C, Y)).batch(32)
    history = model.fit(pairs, epochs=4, verbose=0, validation_data=(C, Y))
    assert history.history["val_loss"][-1] < as_pair - 0.3, (as_pair, history.history)
    weighted = model.evaluate(C, Y, sample_weight=np.ones(128, "float32"), batch_size=32,
                              verbose=0)
    np.testing.assert_allclose(weighted, model.evaluate(C, Y, batch_size=32, verbose=0),
                               rtol=1e-5)


def test_y_for_an_unconditional_flow_names_the_forms():
    model = FlowModel(_unconditional())
    model.compile(keras.optimizers.Adam(1e-3))
    match = r"`y` must be None for an unconditional flow.*fit\(x=condition, y=target\)"
    with pytest.raises(ValueError, match=match):
        model.fit(Y, Y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=match):  # pairs from a dataset, checked per batch
        model.evaluate(tf.data.Dataset.from_tensor_slices((Y, Y)).batch(32), verbose=0)


def test_dict_and_y_together_are_rejected():
    model = FlowModel(_conditional())
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="not both"):
        model.fit({"x": Y, "conditional_input": C}, Y, epochs=1, verbose=0)


# -- 3. data checks, one per message ---------------------------------------------------


def _model():
    model = FlowModel(_unconditional())
    model.compile(keras.optimizers.Adam(1e-3))
    return model


def test_wrong_event_size():
    match = r"^FlowModel: expected inputs of shape \[\.\.\., 2\]; got shape \(5, 3\)\.$"
    with pytest.raises(ValueError, match=match):
        _model().fit(np.zeros((5, 3), "float32"), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=match):
        _model().log_prob(np.zeros((5, 3), "float32"))
    with pytest.raises(ValueError, match=r"expected inputs of shape \[\.\.\., 2\]; got shape "
                                         r"\(None, 3\)"):  # a dataset, when tracing
        _model().evaluate(tf.data.Dataset.from_tensor_slices(np.zeros((5, 3), "float32"))
                          .batch(2), verbose=0)


def test_rank_one_data_does_not_train_silently():
    with pytest.raises(ValueError, match=r"^FlowModel: expected inputs of shape \[batch, 2\]; "
                                         r"got shape \(100,\)\.$"):
        _model().fit(np.zeros(100, "float32"), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"\[batch, 2\]; got shape \(None,\)"):
        _model().fit(tf.data.Dataset.from_tensor_slices(np.zeros(100, "float32")).batch(10),
                     epochs=1, verbose=0)


def test_unknown_event_size_is_checked_at_run_time():
    def gen():
        yield np.zeros((4, 3), "float32")
    data = tf.data.Dataset.from_generator(
        gen, output_signature=tf.TensorSpec((None, None), tf.float32))
    model = _model()
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"FlowModel: expected inputs of shape \[\.\.\., 2\]; got shape"):
        model.evaluate(data, verbose=0)


def test_scalar_data():
    with pytest.raises(ValueError, match=r"^FlowModel: expected inputs of shape \[\.\.\., 2\]; "
                                         r"got a scalar\.$"):
        _model().log_prob(3.0)


def test_string_data_is_a_type_error():
    with pytest.raises(TypeError, match=r"FlowModel: inputs must be a floating-point array of "
                                        r"shape \[\.\.\., 2\]; got an array of dtype <U1"):
        _model().fit(np.array([["a", "b"]] * 4), epochs=1, verbose=0)
    with pytest.raises(TypeError, match="got a string 'ab'"):
        _model().log_prob("ab")


def test_integer_data_is_a_type_error():
    with pytest.raises(TypeError, match=r"^FlowModel: inputs must be floating point \(float32 "
                                        r"or float64\); got dtype int64\.$"):
        _model().fit(np.zeros((4, 2), "int64"), epochs=1, verbose=0)


def test_condition_shape_checks():
    model = FlowModel(_conditional())
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match=r"FlowModel: expected `conditional_input` of shape "
                                         r"\[batch, 1\]; got shape \(128,\)\."):
        model.fit(C[:, 0], Y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"`conditional_input` must have shape \[\.\.\., 1\]; "
                                         r"got shape \(5, 3\)"):
        model.log_prob(Y[:5], conditional_input=np.zeros((5, 3), "float32"))
    # Integer labels are conditions too: cast, not rejected.
    assert model.log_prob(Y[:4], conditional_input=np.ones((4, 1), "int32")).shape == (4,)


def test_check_data_is_the_one_home():
    x = validation.check_data(np.zeros((3, 2)), [2], tf.float32, "Owner")
    assert x.dtype == tf.float32 and x.shape == (3, 2)
    with pytest.raises(ValueError, match=r"^Owner: expected `c` of shape \[\.\.\., 4, 4\]; got "
                                         r"shape \(2, 4, 3\)\.$"):
        validation.check_data(np.zeros((2, 4, 3)), [4, 4], tf.float32, "Owner", name="`c`")


# -- 4. the trace is an option that takes effect ---------------------------------------


def test_ffjord_with_trace_shares_the_field_and_updates_parameters():
    flow = _hutchinson()
    (block,) = flows.ffjord_blocks(flow)
    exact = block.with_trace("exact")
    assert exact.vector_field is block.vector_field
    assert exact.parameters["trace"] == exact.copy().trace == "exact"
    assert block.parameters["trace"] == block.copy().trace == "hutchinson"
    assert exact.name == block.name
    with pytest.raises(AttributeError, match="use `bijector.with_trace"):
        block.trace = "exact"


def test_flows_with_trace_replaces_every_block():
    flow = flows.ffjord(2, num_blocks=2, hidden_units=(4,), actnorm=True, trace="hutchinson")
    assert contract.log_prob_kind(flow) == contract.UNBIASED
    exact = flows.with_trace(flow, "exact")
    assert [b.trace for b in flows.ffjord_blocks(exact)] == ["exact", "exact"]
    assert [b.trace for b in flows.ffjord_blocks(flow)] == ["hutchinson", "hutchinson"]
    assert contract.log_prob_kind(exact) == contract.EXACT
    assert {id(v) for v in exact.trainable_variables} == {id(v) for v in
                                                          flow.trainable_variables}
    inverted = tfp.bijectors.Invert(flows.ffjord_blocks(flow)[0])
    assert flows.with_trace(inverted, "exact").bijector.trace == "exact"
    with pytest.raises(ValueError, match="needs a distribution or bijector with FFJORD blocks"):
        flows.with_trace(_unconditional(), "exact")
    with pytest.raises(ValueError, match="`trace` must be one of"):
        flows.with_trace(flow, "approx")


def test_model_with_trace_takes_effect_in_compiled_evaluate():
    model = FlowModel.from_flow("ffjord", event_size=2, hidden_units=(8,), solver="rk4",
                                num_steps=3, trace="hutchinson")
    testing.perturb_weights(model.distribution, scale=0.5, seed=1)
    # A compiled (graph) test step; the XLA one is exercised in test_ffjord.py (slow).
    model.compile(keras.optimizers.Adam(1e-3))
    x = Y[:64]
    noisy0 = model.evaluate(x, batch_size=32, verbose=0)
    model.seed = 1  # a new seed after compile: new probes in the compiled step
    noisy1 = model.evaluate(x, batch_size=32, verbose=0)
    assert abs(noisy0 - noisy1) > 1e-4, (noisy0, noisy1)
    assert contract.log_prob_kind(model.distribution) == contract.UNBIASED
    model.with_trace("exact")
    assert contract.log_prob_kind(model.distribution) == contract.EXACT
    exact = -np.mean(model.log_prob(x))
    exact0 = model.evaluate(x, batch_size=32, verbose=0)
    model.seed = 5
    np.testing.assert_allclose([exact0, model.evaluate(x, batch_size=32, verbose=0)],
                               [exact, exact], rtol=1e-5)
    assert abs(noisy0 - exact) > 1e-4 and abs(noisy1 - exact) > 1e-4
    assert model.get_config()["flow_kwargs"]["trace"] == "exact"


# -- 5. seeds ---------------------------------------------------------------------------


def test_maximum_likelihood_passes_the_step_seed():
    flow = _hutchinson()
    objective = objectives.MaximumLikelihood()
    a = objective(flow, Y[:8], seed=tf.constant([3, 4]))
    np.testing.assert_array_equal(a, objective(flow, Y[:8], seed=tf.constant([3, 4])))
    assert not np.allclose(a, objective(flow, Y[:8], seed=tf.constant([3, 5])))


def test_seed_property_changes_training_steps():
    def train(seed_after_compile):
        model = FlowModel(_hutchinson(), seed=0)
        model.compile(keras.optimizers.SGD(1e-2))
        model.fit(Y[:32], batch_size=32, epochs=1, verbose=0)  # traces with seed 0
        model.seed = seed_after_compile
        return model.fit(Y[:32], batch_size=32, epochs=1, verbose=0).history["loss"][0]

    assert train(0) != train(7)
    with pytest.raises(TypeError, match="`seed` must be an integer; got 1.5"):
        FlowModel(_unconditional(), seed=1.5)


def test_reverse_kl_routes_the_seed_and_rejects_conditional_flows():
    target = tfd.MultivariateNormalDiag([1.0, -1.0]).log_prob
    objective = ReverseKL(target, num_samples=16)
    flow = _hutchinson()
    a = objective(flow, seed=tf.constant([1, 2]))
    np.testing.assert_array_equal(a, objective(flow, seed=tf.constant([1, 2])))
    model = FlowModel(_conditional(), objective=objective)
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="ReverseKL does not take conditional flows"):
        model.fit(steps_per_epoch=1, epochs=1, verbose=0)


# -- 6. every flow takes a condition; scalar p(y | c) for couplings ---------------------


@pytest.mark.parametrize("flow", ["real_nvp", "glow", "neural_spline", "maf", "ferumal",
                                  "ffjord"])
def test_scalar_conditional_flows(flow):
    kwargs = {"ferumal": dict(num_blocks=1, num_inducing=8),
              "ffjord": dict(hidden_units=(8,), solver="rk4", num_steps=2)}.get(
        flow, dict(num_layers=2, hidden_units=(8,)))
    model = FlowModel.from_flow(flow, event_size=1, conditional_size=1, **kwargs)
    y = Y[:, :1]
    model.initialize_from_data(y, conditional_input=C)
    testing.perturb_weights(model.distribution, scale=0.3, seed=2)
    assert contract.conditional_size(model.distribution) == 1
    lp = model.log_prob(y[:4], conditional_input=C[:4])
    assert lp.shape == (4,) and np.all(np.isfinite(lp))
    assert not np.allclose(lp, model.log_prob(y[:4], conditional_input=C[:4] + 1.0))
    assert model.sample(3, conditional_input=[0.5], seed=(0, 1)).shape == (3, 1)


@pytest.mark.parametrize("flow", ["real_nvp", "glow", "neural_spline", "ferumal"])
def test_scalar_coupling_flow_needs_a_condition(flow):
    with pytest.raises(ValueError, match=r"Coupling flows need `event_size` >= 2; got 1 \(a "
                                         r"scalar flow needs a condition"):
        flows.build_flow(flow, event_size=1)


def test_scalar_kernel_coupling_needs_a_condition():
    with pytest.raises(ValueError, match=r"`event_size` must be >= 2 for a coupling; got 1 "
                                         r"\(1 needs a condition: `conditional_size` > 0\)"):
        bijectors.KernelCoupling(1, 4)


# -- 7. precision ---------------------------------------------------------------------


def test_float64_end_to_end_with_default_nets():
    model = FlowModel.from_flow("ffjord", event_size=2, hidden_units=(8,), solver="rk4",
                                num_steps=2, dtype="float64")
    model.compile(keras.optimizers.Adam(1e-2))
    x = Y.astype("float64")
    model.fit(x, batch_size=64, epochs=1, verbose=0)
    assert model.log_prob(x[:3]).dtype == tf.float64
    assert model.sample(2, seed=(0, 1)).dtype == tf.float64
    field = bijectors.FFJORD(nets.ODENet(2, (8,), dtype="float64"), solver="rk4", num_steps=2)
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64)),
                                       field)
    assert flow.log_prob(x[:3]).dtype == tf.float64


def test_float32_field_fed_float64_names_the_dtypes():
    block = bijectors.FFJORD(nets.ODENet(2, (4,)), solver="euler", num_steps=1)
    with pytest.raises(TypeError, match=r"FFJORD: `y` has dtype float64 but the vector field "
                                        r".* computes in float32; build the field with "
                                        r"`dtype='float64'`"):
        block.inverse(tf.constant(Y.astype("float64")))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_is_rejected(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        with pytest.raises(ValueError, match=f"dtype policy '{policy}' computes in .*16; flows "
                                             "need float32 or float64"):
            FlowModel.from_flow("ferumal", event_size=2)
        with pytest.raises(ValueError, match=f"'{policy}'"):
            FlowModel(tff.flows.standard_normal(2))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert keras.mixed_precision.global_policy().name == "float32"


# -- exactness is declared, and evaluation reports the declaration ---------------------------


@pytest.mark.parametrize("flow,kwargs,kind", [
    # Regression: a Hutchinson FFJORD used to be labelled "exact" ...
    ("ffjord", dict(trace="hutchinson", solver="rk4", num_steps=2), "unbiased estimate"),
    ("ffjord", dict(trace="exact", solver="rk4", num_steps=2), "exact"),
    # ... and LGF(dirac=True), which is exact, "importance-sampled".
    ("lgf_maf", dict(num_layers=1, dirac=True), "exact"),
    ("lgf_maf", dict(num_layers=1, num_importance_samples=4), "importance-sampled (S=3)"),
    ("augmented_real_nvp", dict(num_augment=0, num_layers=2), "exact"),
    ("augmented_real_nvp", dict(num_augment=1, num_layers=2), "importance-sampled (S=3)"),
    ("funnel_mlp", dict(event_size=3, latent_sizes=(2,)), "exact"),
])
def test_evaluation_reports_the_declared_kind(flow, kwargs, kind):
    kwargs = {"event_size": 2, "hidden_units": (4,), **kwargs}
    model = FlowModel.from_flow(flow, **kwargs)
    x = np.random.default_rng(0).standard_normal((6, kwargs["event_size"])).astype("float32")
    mean, label = tff.evaluation.mean_log_prob(model, x, num_samples=3)
    assert label == kind and np.isfinite(mean)
    assert kind.startswith(contract.log_prob_kind(model.distribution))


def test_contract_declarations_combine_over_composites():
    tfb = tfp.bijectors
    hutchinson = flows.ffjord(2, hidden_units=(4,), trace="hutchinson").bijector
    exact_cond = flows.real_nvp(2, num_layers=1, hidden_units=(4,), conditional_size=3).bijector
    chain = tfb.Chain([tfb.Invert(exact_cond), tfb.Shift([1.0, 2.0]), hutchinson])
    assert contract.conditional_size(chain) == 3
    assert contract.log_prob_kind(chain) == contract.UNBIASED  # the weakest part wins
    assert contract.takes_seed(chain) and not contract.takes_seed(exact_cond)
    other = flows.real_nvp(2, num_layers=1, hidden_units=(4,), conditional_size=2).bijector
    with pytest.raises(ValueError, match="different sizes"):
        contract.conditional_size(tfb.Chain([exact_cond, other]))
    routed = contract.route(chain, tf.zeros([5, 3]), seed=(1, 2))
    # Nested by name: Invert -> inner chain -> coupling; the FFJORD block gets a seed.
    inner = routed[chain.bijectors[0].name]
    assert all("conditional_input" in kw for kw in inner.values()) and inner
    assert set(routed[hutchinson.name]["ffjord_0"]) == {"seed"}
    testing.perturb_weights(chain, scale=0.3)
    dist = tfp.distributions.TransformedDistribution(
        tfp.distributions.MultivariateNormalDiag(tf.zeros(2)), chain)
    x = tf.constant([[0.3, -0.2]])
    a, b = (contract.log_prob(dist, x, tf.fill([1, 3], v), seed=(1, 2)) for v in (0.0, 1.0))
    assert np.isfinite(a).all() and not np.allclose(a, b)  # the condition reached the coupling
