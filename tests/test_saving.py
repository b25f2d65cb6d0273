"""`model.save` / `keras.saving.load_model` for FlowModels built from distribution objects."""

import functools
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows as tff
from tfp_flows.internal import contract, serialization
from tfp_flows.internal.config import Configurable
from tfp_flows.keras import FlowModel

tfd, tfb = tfp.distributions, tfp.bijectors


@pytest.fixture(scope="module")
def moons():
    return tff.datasets.two_moons(256, seed=0).astype(np.float32)


def _round_trip(model, path, x=None, **log_prob_kwargs):
    """Saves `model`, loads it in safe mode and checks log_prob is unchanged."""
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, FlowModel)
    assert loaded is not model and loaded.distribution is not model.distribution
    if x is not None:
        np.testing.assert_allclose(loaded.log_prob(x, **log_prob_kwargs).numpy(),
                                   model.log_prob(x, **log_prob_kwargs).numpy(),
                                   rtol=1e-6, atol=1e-6)
    return loaded


def _kernel_chain(points):
    return tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(2)),
        tfb.Chain([tff.bijectors.ActNorm(2),
                   tff.bijectors.KernelCoupling(2, num_inducing=8, kernel="matern52",
                                                inducing_points=points),
                   tfb.Permute([1, 0]),
                   tfb.Shift([0.1, -0.2]),
                   tfb.Invert(tfb.Scale(1.5)),
                   tff.bijectors.KernelCoupling(2, num_inducing=8, inducing_points=points),
                   tfb.Permute(np.array([1, 0], np.int32)),
                   tff.bijectors.KernelCoupling(2, num_inducing=8)]))


def test_kernel_coupling_chain_with_shared_points_round_trips(moons, tmp_path):
    points = tff.nets.InducingPoints(num_points=8, point_size=1)
    model = FlowModel(_kernel_chain(points), name="ferumal_by_hand")
    model.initialize_from_data(moons)
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    loaded = _round_trip(model, str(tmp_path / "k.keras"), moons)
    assert loaded.name == "ferumal_by_hand"
    chain = loaded.distribution.bijector.bijectors
    # One shared layer after loading (one weight, trained once), the third coupling its own.
    assert chain[1].inducing_points is chain[5].inducing_points
    assert chain[7].inducing_points is not chain[1].inducing_points
    assert len(loaded.flow_layers) == len(model.flow_layers)
    np.testing.assert_array_equal(chain[1].inducing_points.points.numpy(),
                                  points.points.numpy())
    # A step of training moves the shared points in both couplings at once.
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(loaded.log_prob(moons))
    variables = loaded.trainable_variables
    grads = tape.gradient(loss, variables)
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, variables, strict=True))
    shared = chain[1].inducing_points.points.numpy()
    assert not np.allclose(shared, points.points.numpy())
    np.testing.assert_array_equal(chain[5].inducing_points.points.numpy(), shared)


def test_config_is_json_and_records_parts_once(moons):
    points = tff.nets.InducingPoints(num_points=8, point_size=1)
    config = serialization.serialize(_kernel_chain(points))
    assert json.loads(json.dumps(config)) == config
    layers = [o for o in config["objects"] if o["__tfp_flows__"] == "keras"]
    # The shared points plus the third coupling's own points (constructor-built, recorded as
    # the argument it overwrote); kernel machines are rebuilt by the constructor.
    assert [o["config"]["class_name"] for o in layers] == ["InducingPoints", "InducingPoints"]
    rebuilt = serialization.deserialize(config)
    assert rebuilt.bijector.bijectors[1].inducing_points is (
        rebuilt.bijector.bijectors[5].inducing_points)


def test_ffjord_round_trip_keeps_trace_setting(moons, tmp_path):
    net = tff.nets.ODENet(event_size=2, hidden_units=(8,))
    ffjord = tff.bijectors.FFJORD(net, solver="rk4", num_steps=2, trace="hutchinson")
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)),
                                       tfb.Chain([tfb.Shift([0.5, 0.0]), ffjord]))
    model = FlowModel(flow)
    tff.testing.perturb_weights(model.distribution, scale=0.3)
    model.with_trace("exact")                   # switched after construction: saved as is
    loaded = _round_trip(model, str(tmp_path / "f.keras"), moons[:16])
    restored = loaded.distribution.bijector.bijectors[1]
    assert restored.trace == "exact" and restored.solver_options.solver == "rk4"
    assert restored.vector_field is not net and restored.vector_field.hidden_units == (8,)


@pytest.mark.parametrize("flow,kwargs,log_prob_kwargs", [
    ("funnel_nsf", dict(event_size=2, latent_size=1, num_layers=2, num_bins=4,
                        hidden_units=(8,)), {}),
    ("augmented_real_nvp", dict(event_size=2, num_augment=1, num_layers=2, hidden_units=(8,),
                                proposal="gaussian", proposal_kwargs={"hidden_units": [8]}),
     dict(num_samples=8, seed=(1, 2))),
    ("lgf_real_nvp", dict(event_size=2, num_layers=2, hidden_units=(8,)),
     dict(num_samples=8, seed=(1, 2))),
])
def test_family_objects_round_trip_as_objects(moons, tmp_path, flow, kwargs, log_prob_kwargs):
    model = FlowModel(tff.flows.build_flow(flow, **kwargs))   # an object, not from_flow
    model.initialize_from_data(moons)
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    assert "distribution" in model.get_config() and "flow" not in model.get_config()
    loaded = _round_trip(model, str(tmp_path / f"{flow}.keras"), moons[:32], **log_prob_kwargs)
    assert type(loaded.distribution) is type(model.distribution)
    assert len(loaded.flow_layers) == len(model.flow_layers)


def test_conditional_real_nvp_still_requires_conditional_input(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    c = rng.normal(size=(64, 1)).astype(np.float32)
    model = FlowModel(tff.flows.real_nvp(2, num_layers=2, hidden_units=(8,), conditional_size=1))
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    loaded = _round_trip(model, str(tmp_path / "c.keras"), x, conditional_input=c)
    assert contract.conditional_size(loaded.distribution) == 1
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        contract.check_conditional_input(loaded.distribution, None)
    loaded.compile(keras.optimizers.Adam(1e-3))
    loaded.fit({"x": x, "conditional_input": c}, batch_size=32, epochs=1, verbose=0)


def test_model_checkpoint_of_an_object_built_model(moons, tmp_path):
    flow = tff.flows.real_nvp(2, num_layers=2, hidden_units=(8,))
    model = FlowModel(tfd.TransformedDistribution(flow.distribution, tfb.Chain(
        [tff.bijectors.ActNorm(2), flow.bijector])))
    model.initialize_from_data(moons)
    model.compile(keras.optimizers.Adam(1e-2))
    path = str(tmp_path / "best.keras")
    history = model.fit(moons, batch_size=64, epochs=2, verbose=0, validation_data=(moons,),
                        callbacks=[keras.callbacks.ModelCheckpoint(path, save_best_only=True)])
    val = history.history["val_loss"]
    loaded = keras.saving.load_model(path)
    best = -float(np.mean(loaded.log_prob(moons)))
    np.testing.assert_allclose(best, min(val), rtol=1e-5)
    if val[-1] <= val[0]:
        np.testing.assert_allclose(loaded.log_prob(moons), model.log_prob(moons), rtol=1e-6,
                                   atol=1e-6)
    assert int(loaded.optimizer.iterations) > 0


def test_maf_and_spline_conditioners_round_trip(moons, tmp_path):
    flow = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), 2),
        tfb.Chain([tff.flows.maf(2, num_layers=1, hidden_units=(8,)).bijector,
                   tfb.Permute([1, 0]),
                   tff.flows.neural_spline(2, num_layers=1, num_bins=4,
                                           hidden_units=(8,)).bijector]))
    model = FlowModel(flow)
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    _round_trip(model, str(tmp_path / "m.keras"), moons[:32])


def test_from_flow_models_keep_the_compact_config_and_name(moons, tmp_path):
    model = FlowModel.from_flow("real_nvp", event_size=2, num_layers=2, hidden_units=(8,))
    config = model.get_config()
    assert config["flow"] == "real_nvp" and "distribution" not in config
    loaded = _round_trip(model, str(tmp_path / "r.keras"), moons[:32])
    assert loaded.name == model.name and loaded.get_config()["flow"] == "real_nvp"
    assert FlowModel.from_config({**config, "name": "nvp"}).name == "nvp"


def test_a_lambda_conditioner_is_named_by_its_path():
    def fn(x, **kwargs):
        return tf.zeros_like(x), tf.zeros_like(x)

    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)), tfb.Chain([
        tff.bijectors.ActNorm(2), tfb.Permute([1, 0]),
        tfb.RealNVP(num_masked=1, shift_and_log_scale_fn=lambda x, n, **kw: (x, x))]))
    model = FlowModel(flow)   # the Keras layer is the ActNorm's
    with pytest.raises(TypeError, match=r"cannot save `distribution\.bijector\.bijectors\[2\]"
                                        r"\.shift_and_log_scale_fn`: a function"):
        model.save("unused.keras")
    with pytest.raises(TypeError, match=r"cannot save `distribution\.bijector\.bijector_fn`: a "
                                        r"function .*model\.save_weights"):
        serialization.serialize(tfd.TransformedDistribution(
            tfd.MultivariateNormalDiag(tf.zeros(2)), tfb.MaskedAutoregressiveFlow(
                bijector_fn=lambda x, **kw: tfb.Shift(x))))
    with pytest.raises(TypeError, match=r"`distribution\.shift_and_log_scale_fn`: a "
                                        r"functools\.partial, which is not a saveable part"):
        serialization.serialize(tfb.RealNVP(1, shift_and_log_scale_fn=functools.partial(fn)))


def test_a_trainable_variable_is_named_by_its_path():
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)),
                                       tfb.Chain([tfb.Shift(tf.Variable([0.0, 0.0]))]))
    with pytest.raises(TypeError, match=r"`distribution\.bijector\.bijectors\[0\]\.shift`: "
                                        "a trainable tf.Variable"):
        serialization.serialize(flow)
    frozen = tfb.Shift(tf.Variable([1.0, 2.0], trainable=False))
    rebuilt = serialization.deserialize(serialization.serialize(frozen))
    np.testing.assert_array_equal(rebuilt.forward(tf.zeros(2)), [1.0, 2.0])


def test_unsaveable_classes_and_bad_configs():
    class MyShift(tfb.Shift):
        pass

    with pytest.raises(TypeError, match=r"`distribution`: a .*MyShift, which is not a saveable"):
        serialization.serialize(MyShift(1.0))
    serialization.register_serializable(MyShift, "test>MyShift")
    rebuilt = serialization.deserialize(serialization.serialize(MyShift(2.0)))
    assert type(rebuilt) is MyShift and float(rebuilt.shift) == 2.0
    with pytest.raises(ValueError, match="must be a dict written by"):
        serialization.deserialize({"flow": "real_nvp"})
    with pytest.raises(ValueError, match="Cannot load a 'tfp.bijectors.Unknown'"):
        serialization.deserialize({"format": serialization.FORMAT, "version": 1, "objects": [
            {"__tfp_flows__": "object", "class": "tfp.bijectors.Unknown", "arguments": {}}],
            "root": {"__tfp_flows__": "ref", "id": 0}})


def test_configurable_keyword_arguments_are_kept():
    class Scaled(Configurable, tf.Module):
        def __init__(self, factor, **kwargs):
            super().__init__(name=kwargs.pop("name", "scaled"))
            self.factor, self.extra = factor, kwargs

    serialization.register_serializable(Scaled, "test>Scaled")
    rebuilt = serialization.deserialize(serialization.serialize(Scaled(2.0, offset=1.0)))
    assert rebuilt.factor == 2.0 and rebuilt.extra == {"offset": 1.0}


def test_values_round_trip():
    values = [None, True, 3, 2.5, "s", (1, [2, 3]), {"a": (1.0,)}, np.float32(1.5),
              np.arange(3, dtype=np.int32), tf.float64, tf.TensorShape([None, 2])]
    encoded = serialization._Encoder().encode(values, "v")
    decoded = serialization._Decoder([]).decode(json.loads(json.dumps(encoded)))
    assert decoded[:7] == values[:7]
    assert decoded[7].dtype == np.float32 and decoded[7] == 1.5
    np.testing.assert_array_equal(decoded[8], values[8])
    assert decoded[8].dtype == np.int32
    assert decoded[9] == tf.float64 and decoded[10].as_list() == [None, 2]


def test_float64_flow_round_trips(tmp_path):
    x = np.random.default_rng(1).normal(size=(16, 2))
    flow = tff.flows.real_nvp(2, num_layers=2, hidden_units=(8,), dtype="float64")
    model = FlowModel(flow)
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    loaded = _round_trip(model, str(tmp_path / "d.keras"), x)
    assert loaded.distribution.dtype == tf.float64


_SMALL = dict(hidden_units=(8,))
_EVERY_FLOW = {
    "real_nvp": dict(event_size=2, num_layers=2, **_SMALL),
    "glow": dict(event_size=2, num_layers=2, **_SMALL),
    "maf": dict(event_size=2, num_layers=2, **_SMALL),
    "neural_spline": dict(event_size=2, num_layers=2, num_bins=4, **_SMALL),
    "ferumal": dict(event_size=2),
    "ffjord": dict(event_size=2),
    "funnel_nsf": dict(event_size=3, num_layers=2, num_bins=4, **_SMALL),
    "funnel_glow": dict(event_size=3, num_layers=2, **_SMALL),
    "funnel_slice": dict(event_size=3, num_layers=2, **_SMALL),
    "funnel_mlp": dict(event_size=3, **_SMALL),
    "mlp_flow": dict(event_size=3),
    "funnel_conv": dict(image_shape=[4, 4], num_layers=1, hidden_units=[8]),
    "augmented_real_nvp": dict(event_size=2, num_augment=1, num_layers=2, **_SMALL),
    "marginalizing_flow": dict(event_size=2, num_augment=1, num_blocks=1),
    "lgf_real_nvp": dict(event_size=2, num_layers=2, **_SMALL),
    "lgf_maf": dict(event_size=2, num_layers=2, **_SMALL),
}


@pytest.mark.slow
@pytest.mark.parametrize("flow", sorted(_EVERY_FLOW))
def test_every_registered_flow_round_trips_as_an_object(flow, tmp_path):
    model = FlowModel(tff.flows.build_flow(flow, **_EVERY_FLOW[flow]))
    size = model.distribution.event_shape[-1]
    x = np.random.default_rng(0).normal(size=(16, size)).astype(np.float32)
    model.initialize_from_data(x)
    tff.testing.perturb_weights(model.distribution, scale=0.1)
    kwargs = {"seed": (1, 2)} if contract.takes_seed(model.distribution) else {}
    if hasattr(model.distribution, "num_samples"):
        kwargs["num_samples"] = 4
    loaded = _round_trip(model, str(tmp_path / "m.keras"), x, **kwargs)
    assert len(loaded.flow_layers) == len(model.flow_layers)


@pytest.mark.slow
def test_every_registered_flow_has_a_saving_case():
    assert sorted(_EVERY_FLOW) == tff.flows.available_flows()
