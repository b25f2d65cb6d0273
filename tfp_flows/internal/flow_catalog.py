"""The flows this package registers, as a static table importable without TensorFlow.

`tfp-flows list` prints the flows from here, so listing them takes well under
a second instead of the several seconds of importing TensorFlow, TFP and
Keras. `FlowInfo` (what `tfp_flows.flows.describe_flow` returns) and
`describe(name, fn)` (a builder's summary, arguments and whether it takes a
condition, read from its signature and docstring) live here too: the
registry describes a flow with `describe`, and `BUILTIN_FLOWS` is
`describe` applied to every flow the package registers
(tests/test_cli.py checks that the two agree; update the table when a
builder's signature or first docstring sentence changes).

`flow_infos()` is what `list` shows: the live registry when
`tfp_flows.flows.registry` is already imported (flows registered by the
user included), else `BUILTIN_FLOWS`.
"""

import inspect
import re
import sys
from typing import NamedTuple

# A sentence ends at ., ! or ? followed by white space, except after these abbreviations.
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "cf.", "vs.", "Fig.", "Sec.", "Eq.", "approx.")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


class FlowInfo(NamedTuple):
    """What `describe_flow` returns.

    Attributes:
      name: the registered name.
      summary: the first sentence of the builder's docstring ("" if none).
      arguments: the builder's parameters as `"name"` / `"name=default"` strings.
      conditional: whether the builder accepts `conditional_size` (a flow
        conditioned on an input `c` of that size).
    """

    name: str
    summary: str
    arguments: tuple
    conditional: bool


def first_sentence(doc):
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = inspect.cleandoc(doc or "").split("\n\n")[0]
    text = " ".join(paragraph.split())
    for match in _SENTENCE_END.finditer(text):
        head = text[:match.end()]
        # Not inside `code` (an odd number of backticks before), not an abbreviation.
        if head.count("`") % 2 == 0 and not head.endswith(_ABBREVIATIONS):
            return head
    return text


def describe(name, fn):
    """`FlowInfo` of the builder `fn` registered as `name` (nothing is built)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins / C callables have no signature
        params = ()
    arguments, names = [], set()
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            arguments.append(("*" if p.kind == p.VAR_POSITIONAL else "**") + p.name)
            continue
        names.add(p.name)
        arguments.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return FlowInfo(name, first_sentence(inspect.getdoc(fn)), tuple(arguments),
                    "conditional_size" in names)


def flow_infos():
    """`FlowInfo`s to list, sorted by name: the live registry if loaded, else `BUILTIN_FLOWS`."""
    registry = sys.modules.get("tfp_flows.flows.registry")
    if registry is not None:
        return [registry.describe_flow(name) for name in registry.available_flows()]
    return list(BUILTIN_FLOWS)


BUILTIN_FLOWS = (
    FlowInfo(
        'augmented_real_nvp',
        '`Augmented(real_nvp(event_size + num_augment, **flow_kwargs), ...)` on '
        '`R^event_size`.',
        ('event_size', 'num_augment=2', "proposal='standard_normal'", 'proposal_kwargs=None',
         'num_samples=200', "dtype='float32'", 'conditional_size=0', '**flow_kwargs'),
        True),
    FlowInfo(
        'ferumal',
        'Ferumal flow: `num_blocks` blocks of ActNorm and two `KernelCoupling`s.',
        ('event_size', 'num_blocks=2', 'num_inducing=32', "kernel='squared_exponential'",
         "inducing='per_layer'", 'length_scale=None', 'learn_length_scale=True',
         'log_scale_bound=3.0', 'conditional_size=0', 'seed=0', "dtype='float32'", 'base=None'),
        True),
    FlowInfo(
        'ffjord',
        'FFJORD (Grathwohl et al., 2019) on `R^event_size` with a standard normal base.',
        ('event_size', 'num_blocks=1', 'hidden_units=(64, 64)', "activation='tanh'",
         'conditional_size=0', 'actnorm=False', "solver='dopri5'", 'rtol=1e-05', 'atol=1e-05',
         'num_steps=8', 'max_num_steps=1000', "trace='exact'", 'num_probes=1',
         "probe='rademacher'", "gradient='adjoint'", 'adjoint_options=None',
         'control_log_det=None', 't1=1.0', "dtype='float32'", 'base=None'),
        True),
    FlowInfo(
        'funnel_conv',
        'Convolutional funnels on flat images `[..., H*W*C]` (row-major `[H, W, C]`).',
        ('image_shape', 'kernel_size=2', 'num_funnels=1', 'num_layers=2', 'actnorm=True',
         'num_bins=8', 'bound=4.0', 'hidden_units=(64, 64)', 'decoder_hidden_units=(64,)',
         'neighbourhood=1', 'seed=0', "dtype='float32'", 'conditional_size=0'),
        True),
    FlowInfo(
        'funnel_glow',
        'F-Glow: Glow steps with one step replaced by an affine coupling funnel.',
        ('event_size', 'latent_size=None', 'num_layers=4', 'funnel_layer=None',
         'hidden_units=(64, 64)', "decoder='flow'", 'decoder_hidden_units=None', 'seed=0',
         "dtype='float32'", 'conditional_size=0'),
        True),
    FlowInfo(
        'funnel_mlp',
        'F-MLP: `event_size -> latent_sizes[0] -> ... -> latent_sizes[-1]` funnels.',
        ('event_size', 'latent_sizes=None', 'num_bins=5', 'bound=4.0', 'hidden_units=(64, 64)',
         'seed=0', "dtype='float32'", 'conditional_size=0'),
        True),
    FlowInfo(
        'funnel_nsf',
        'F-NSF: a neural spline flow with step `funnel_layer` replaced by a funnel.',
        ('event_size', 'latent_size=None', 'num_layers=4', 'funnel_layer=None', 'num_bins=8',
         'bound=4.0', 'hidden_units=(64, 64)', "decoder='flow'", 'decoder_hidden_units=None',
         'seed=0', "dtype='float32'", 'conditional_size=0'),
        True),
    FlowInfo(
        'funnel_slice',
        'The slice surjection (SurVAE; paper A.3): a funnel with F = identity.',
        ('event_size', 'latent_size=None', 'num_layers=4', 'funnel_layer=None', 'num_bins=8',
         'bound=4.0', 'hidden_units=(64, 64)', "decoder='gaussian'", 'seed=0', "dtype='float32'",
         'conditional_size=0'),
        True),
    FlowInfo(
        'glow',
        'Glow-style flow (Kingma & Dhariwal, 2018) for vectors: per step ActNorm, an '
        'LU-parameterised invertible linear map, and an affine coupling.',
        ('event_size', 'num_layers=4', 'hidden_units=(64, 64)', "activation='relu'",
         'residual=False', 'conditional_size=0', 'log_scale_bound=3.0', 'seed=0',
         "dtype='float32'", 'base=None'),
        True),
    FlowInfo(
        'lgf_maf',
        'LGF-MAF: per layer, `G_l(x; u) = s_l(u) * MADE_l(x) + t_l(u)`, orders reversed '
        'between.',
        ('event_size', 'num_layers=5', 'index_size=None', 'hidden_units=(50, 50)',
         'st_hidden_units=(10, 10)', 'prior_hidden_units=(50, 50)',
         'posterior_hidden_units=(50, 50)', "activation='relu'", 'log_scale_bound=3.0',
         'dirac=False', 'num_importance_samples=1000', "dtype='float32'", 'base=None',
         'conditional_size=0'),
        True),
    FlowInfo(
        'lgf_real_nvp',
        'LGF-RealNVP: affine couplings (permutations as in `flows.real_nvp`) indexed by '
        '`u`.',
        ('event_size', 'num_layers=4', 'index_size=None', "index_mode='affine'",
         'hidden_units=(64, 64)', 'st_hidden_units=(10, 10)', 'prior_hidden_units=(50, 50)',
         'posterior_hidden_units=(50, 50)', "activation='relu'", 'log_scale_bound=3.0',
         'dirac=False', 'num_importance_samples=1000', 'seed=0', "dtype='float32'", 'base=None',
         'conditional_size=0'),
        True),
    FlowInfo(
        'maf',
        'Masked autoregressive flow (Papamakarios et al., 2017) with Keras 3 MADEs, the '
        'order reversed between layers.',
        ('event_size', 'num_layers=5', 'hidden_units=(64, 64)', "activation='relu'",
         'conditional_size=0', 'log_scale_bound=3.0', "dtype='float32'", 'base=None'),
        True),
    FlowInfo(
        'marginalizing_flow',
        "de Boer's marginalizing flow: `Augmented` around `rblock_real_nvp` on "
        "`R^{D+B}`.",
        ('event_size', 'num_augment=2', "proposal='standard_normal'", 'proposal_kwargs=None',
         'num_samples=200', "dtype='float32'", 'conditional_size=0', '**flow_kwargs'),
        True),
    FlowInfo(
        'mlp_flow',
        "The F-MLP's dimension-preserving baseline: `num_layers` of `LULinear` (plus "
        "bias-free) and a learnable elementwise RQ spline activation.",
        ('event_size', 'num_layers=2', 'num_bins=5', 'bound=4.0', 'seed=0', "dtype='float32'",
         'conditional_size=0', 'hidden_units=(64, 64)'),
        True),
    FlowInfo(
        'neural_spline',
        'Rational-quadratic spline coupling flow (NSF-C, Durkan et al., 2019).',
        ('event_size', 'num_layers=4', 'num_bins=8', 'bound=4.0', 'hidden_units=(64, 64)',
         "activation='relu'", 'residual=False', 'conditional_size=0', 'lu_linear=False', 'seed=0',
         "dtype='float32'", 'base=None'),
        True),
    FlowInfo(
        'real_nvp',
        'RealNVP (Dinh et al., 2017): affine couplings between fixed permutations.',
        ('event_size', 'num_layers=4', 'hidden_units=(64, 64)', "activation='relu'",
         'residual=False', 'conditional_size=0', 'log_scale_bound=3.0', 'actnorm=False', 'seed=0',
         "dtype='float32'", 'base=None'),
        True),
)
"""`describe(name, builder)` of every flow `tfp_flows.flows` registers, sorted by name."""
