"""The flow contract: what every part declares, and the one walker that combines it.

Every bijector and distribution of the library declares two things:

* `conditional_size`: the size `C` of the `conditional_input` it takes
  (`[..., C]`), 0 for none;
* `log_prob_kind`: how exact its log-density (or log-determinant) is, one of
  `KINDS`, from the strongest to the weakest:

  | kind | meaning |
  |---|---|
  | `"exact"` | exact (for ODE flows: up to the solver's error) |
  | `"unbiased estimate"` | unbiased for `log p(x)` (FFJORD's Hutchinson trace) |
  | `"importance-sampled"` | consistent as the sample count grows, biased low for a finite one |
  | `"bound"` | a lower bound only |

Library classes declare both as properties (`KerasBijector`,
`FlowDistribution`); a TFP bijector built around a conditional Keras
conditioner (`tfb.RealNVP`, `tfb.MaskedAutoregressiveFlow`) is declared with
`mark_conditional(bijector, conditional_size)`. The functions here combine the
declarations over TFP's composites (`tfb.Chain`, `tfb.Invert`,
`tfd.TransformedDistribution`); a library object is never looked into (a
funnel's map is conditional on the dropped coordinates, an LGF layer on its
index: internal conditioning that the object routes itself). Plain TFP
objects are unconditional and exact. The same walk routes per-call keyword
arguments (`conditional_input`, and a stateless `seed` split over every part
that takes one), runs data-dependent initialisation and checks conditional
inputs, so evaluation, training, sampling and the CLI never inspect
signatures.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal.tfp_compat import CHAIN_TYPES, INVERT_TYPES, TRANSFORMED_TYPES

tfb = tfp.bijectors
tfd = tfp.distributions

EXACT = "exact"
UNBIASED = "unbiased estimate"
IMPORTANCE_SAMPLED = "importance-sampled"
BOUND = "bound"
KINDS = (EXACT, UNBIASED, IMPORTANCE_SAMPLED, BOUND)

KIND_DESCRIPTIONS = {
    EXACT: "exact (ODE flows: up to the solver's error)",
    UNBIASED: "unbiased estimate (stochastic trace)",
    IMPORTANCE_SAMPLED: "importance-sampled: consistent as S grows, biased low for finite S",
    BOUND: "lower bound",
}

_SIZE_ATTR = "_tfp_flows_conditional_size"
_SEED_ATTR = "_tfp_flows_takes_seed"


# -- declarations ----------------------------------------------------------------


def mark_conditional(bijector, conditional_size):
    """Declares that `bijector` takes `conditional_input` of shape `[..., conditional_size]`.

    For TFP bijectors whose conditioner is conditional (e.g. `tfb.RealNVP`
    around an `AffineCouplingConditioner(conditional_size=C)`); library
    bijectors declare it through their constructor. Returns `bijector`.
    """
    if isinstance(conditional_size, bool) or not isinstance(conditional_size,
                                                            int | np.integer):
        raise TypeError("`conditional_size` must be a positive integer; "
                        f"got {conditional_size!r}.")
    if conditional_size < 1:
        raise ValueError(f"`conditional_size` must be a positive integer; got {conditional_size}.")
    setattr(bijector, _SIZE_ATTR, int(conditional_size))
    return bijector


def declare(obj, conditional_size=0, takes_seed=False):
    """Records a library object's own declarations (called by the base classes)."""
    setattr(obj, _SIZE_ATTR, int(conditional_size))
    setattr(obj, _SEED_ATTR, bool(takes_seed))


def check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"`log_prob_kind` must be one of {list(KINDS)}; got {kind!r}.")
    return kind


def weakest(kinds):
    """The weakest of `kinds` (a sum of exact and unbiased terms is unbiased, and so on)."""
    return max((check_kind(k) for k in kinds), key=KINDS.index, default=EXACT)


class Declared:
    """Mixin of the library's base classes: the contract's properties, read from `declare`.

    `event_size` (set `self._event_size`), `conditional_size` (from the
    declaration) and `log_prob_kind` (`"exact"` unless a subclass overrides it).
    """

    @property
    def event_size(self):
        return self._event_size

    @property
    def conditional_size(self):
        """Size of the `conditional_input` this object takes (0: none)."""
        return getattr(self, _SIZE_ATTR, 0)

    @property
    def log_prob_kind(self):
        """How exact the log-density (bijectors: the log-determinant) is; one of `KINDS`."""
        return EXACT


# -- the walk ----------------------------------------------------------------------


def parts(obj):
    """The parts a TFP composite is made of; `[]` for a leaf or a library object."""
    if hasattr(obj, _SIZE_ATTR):
        return []
    if isinstance(obj, CHAIN_TYPES):
        return list(obj.bijectors)
    if isinstance(obj, INVERT_TYPES):
        return [obj.bijector]
    if isinstance(obj, TRANSFORMED_TYPES):
        return [obj.distribution, obj.bijector]
    return []


def chain_members(bijector):
    """The bijectors of a (nested) `tfb.Chain` in the order data meet them (density direction)."""
    if isinstance(bijector, CHAIN_TYPES) and not hasattr(bijector, _SIZE_ATTR):
        return [b for part in bijector.bijectors for b in chain_members(part)]
    return [bijector]


def rebuild(obj, fn):
    """`obj` with every part `b` replaced by `fn(b)`, through TFP's composites.

    `fn` returns its argument unchanged to keep a part; composites around a
    replaced part are rebuilt with TFP's `.copy(...)`, the others are kept (so
    weights are shared). A library object is replaced as a whole or not at all.
    """
    new = fn(obj)
    if new is not obj or hasattr(obj, _SIZE_ATTR):
        return new
    if isinstance(obj, CHAIN_TYPES):
        members = [rebuild(b, fn) for b in obj.bijectors]
        same = all(a is b for a, b in zip(members, obj.bijectors, strict=True))
        return obj if same else obj.copy(bijectors=members)
    if isinstance(obj, INVERT_TYPES + TRANSFORMED_TYPES):
        member = rebuild(obj.bijector, fn)
        return obj if member is obj.bijector else obj.copy(bijector=member)
    return obj


def conditional_size(obj):
    """Size of the `conditional_input` that `obj` (bijector or distribution) takes; 0 if none.

    Raises:
      ValueError: parts of a composite declare different sizes.
    """
    own = getattr(obj, _SIZE_ATTR, None)
    if own is not None:
        return own
    sizes = {s for s in (conditional_size(p) for p in parts(obj)) if s}
    if len(sizes) > 1:
        raise ValueError(f"The parts of {getattr(obj, 'name', type(obj).__name__)!r} take "
                         f"conditional inputs of different sizes {sorted(sizes)}; a flow takes "
                         "one `conditional_input`.")
    return sizes.pop() if sizes else 0


def is_conditional(obj):
    """`conditional_size(obj) > 0`: whether `obj` takes a `conditional_input`."""
    return conditional_size(obj) > 0


def log_prob_kind(obj):
    """How exact `obj.log_prob` (or a bijector's log-det) is: one of `KINDS`."""
    own = getattr(obj, "log_prob_kind", None)
    if own is not None and hasattr(obj, _SIZE_ATTR):
        return check_kind(own)
    return weakest(log_prob_kind(p) for p in parts(obj))


def takes_seed(obj):
    """Whether `obj` (or a part) draws random numbers in `log_prob` / `inverse`."""
    own = getattr(obj, _SEED_ATTR, None)
    if own is not None:
        return own
    return any(takes_seed(p) for p in parts(obj))


def describe_kind(kind, num_samples=None):
    """A label for tables: `'exact'`, `'importance-sampled (S=1000)'`, ..."""
    kind = check_kind(kind)
    return f"{kind} (S={num_samples})" if kind == IMPORTANCE_SAMPLED and num_samples else kind


# -- conditional inputs --------------------------------------------------------------


def check_conditional_input(obj, conditional_input, dtype=None, owner=None):
    """Checks `conditional_input` against `obj`'s declared size; returns it as a tensor (or None).

    Raises:
      ValueError: a conditional flow got none, an unconditional one got one, or
        the last axis has the wrong size.
      TypeError: a non-numeric condition.
    """
    size = conditional_size(obj)
    owner = owner or getattr(obj, "name", None) or type(obj).__name__
    if conditional_input is None:
        if size:
            raise ValueError(f"{owner}: `conditional_input` is required: expected a tensor of "
                             f"shape [..., {size}]; got None.")
        return None
    if not size:
        raise ValueError(f"{owner}: `conditional_input` must be None for an unconditional flow "
                         "(build it with `conditional_size=C` to condition it); got a "
                         f"{type(conditional_input).__name__}.")
    given = getattr(conditional_input, "dtype", None)
    given = tf.as_dtype(given) if given is not None else None
    # A chain has no dtype of its own: use its parts', else the condition's, else float32.
    dtype = dtype or dtype_of(obj, None) or (given if given is not None and given.is_floating
                                             else tf.float32)
    if isinstance(conditional_input, tf.Tensor | tf.Variable) and not (
            conditional_input.dtype.is_floating or conditional_input.dtype.is_integer):
        raise TypeError(f"{owner}: `conditional_input` must be numeric; got dtype "
                        f"{conditional_input.dtype.name}.")
    try:
        c = tf.cast(conditional_input, dtype) if isinstance(conditional_input, tf.Tensor) else (
            tf.convert_to_tensor(np.asarray(conditional_input, dtype=np.dtype(
                tf.as_dtype(dtype).as_numpy_dtype))))
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: `conditional_input` must be a numeric array of shape "
                        f"[..., {size}]; got {conditional_input!r:.80}.") from None
    if c.shape.rank == 0:
        raise ValueError(f"{owner}: `conditional_input` must have shape [..., {size}]; "
                         "got a scalar.")
    last = tf.compat.dimension_value(c.shape[-1]) if c.shape.rank is not None else None
    if last is not None and last != size:
        raise ValueError(f"{owner}: `conditional_input` must have shape [..., {size}]; "
                         f"got shape {c.shape}.")
    return c


def route(bijector, conditional_input=None, seed=None):
    """Keyword arguments that route `conditional_input` and seeds through `bijector`.

    A chain routes keyword arguments by bijector name, so the result is nested:
    `{name: {"conditional_input": c, "seed": s}}`. Every part that takes a seed
    gets its own, split from `seed`. Returns `{}` when nothing needs routing.
    """
    seeded = seed is not None and takes_seed(bijector)
    if not seeded and (conditional_input is None or not is_conditional(bijector)):
        return {}
    if isinstance(bijector, CHAIN_TYPES) and not hasattr(bijector, _SIZE_ATTR):
        members = bijector.bijectors
        seeds = (tfp.random.split_seed(seed, n=len(members), salt="route") if seeded
                 else [None] * len(members))
        out = {}
        for b, s in zip(members, seeds, strict=True):
            kw = route(b, conditional_input, s)
            if kw:
                out[b.name] = {**out.get(b.name, {}), **kw}
        return out
    if isinstance(bijector, INVERT_TYPES) and not hasattr(bijector, _SIZE_ATTR):
        return route(bijector.bijector, conditional_input, seed)
    out = {}
    if conditional_input is not None and is_conditional(bijector):
        out["conditional_input"] = conditional_input
    if seeded:
        out["seed"] = seed
    return out


def _distribution_kwargs(distribution, conditional_input, seed, **kwargs):
    """Keyword arguments for a distribution's own `log_prob` / `sample` per the contract."""
    if not hasattr(distribution, _SIZE_ATTR):
        return {}  # a plain TFP distribution takes none
    out = dict(kwargs)
    if conditional_input is not None and is_conditional(distribution):
        out["conditional_input"] = conditional_input
    if seed is not None and takes_seed(distribution):
        out["seed"] = seed
    return out


def log_prob(distribution, x, conditional_input=None, seed=None, **kwargs):
    """`distribution.log_prob(x)` with the condition and seeds routed to every part.

    `kwargs` (e.g. `num_samples`) go to the library distribution that takes
    them (the distribution itself, or a transformed distribution's base).
    A missing, unexpected or wrong-sized condition raises `ValueError`
    (`check_conditional_input`).
    """
    conditional_input = check_conditional_input(distribution, conditional_input)
    if isinstance(distribution, TRANSFORMED_TYPES) and not hasattr(distribution, _SIZE_ATTR):
        base_seed, bij_seed = (None, None) if seed is None else tfp.random.split_seed(
            seed, n=2, salt="log_prob")
        call = {}
        bkw = route(distribution.bijector, conditional_input, bij_seed)
        if bkw:
            call["bijector_kwargs"] = bkw
        dkw = _distribution_kwargs(distribution.distribution, conditional_input, base_seed,
                                   **kwargs)
        if dkw:
            call["distribution_kwargs"] = dkw
        return distribution.log_prob(x, **call)
    return distribution.log_prob(x, **_distribution_kwargs(distribution, conditional_input,
                                                           seed, **kwargs))


def _shape_tensor(sample_shape):
    """`sample_shape` (int, sequence or tensor) as an int32 vector, and its static value."""
    shape = tf.reshape(tf.cast(sample_shape, tf.int32), [-1])
    static = tf.get_static_value(shape)
    return shape, None if static is None else tuple(int(s) for s in static)


def broadcast_condition(conditional_input, sample_shape, owner="sample"):
    """A condition `[C]` or `[*sample_shape, C]` as `[prod(sample_shape), C]`.

    `sample_shape` may be known only at run time (inside `tf.function`); then a
    per-sample condition is checked at run time too.
    """
    c = tf.convert_to_tensor(conditional_input)
    shape, static = _shape_tensor(sample_shape)
    n = tf.reduce_prod(shape)
    size = tf.shape(c)[-1]
    if c.shape.rank == 1:
        return tf.broadcast_to(c, tf.stack([n, size]))
    expected = "[C] (every sample with one condition) or [*sample_shape, C]"
    if static is not None:
        total = int(np.prod(static)) if static else 1
        if tuple(c.shape[:-1]) == static or (c.shape.rank == 2 and c.shape[0] == total):
            return tf.reshape(c, [total, c.shape[-1]])
        raise ValueError(f"{owner}: `conditional_input` must have shape {expected} = "
                         f"{[*static, 'C']} (one condition per sample); got shape {c.shape} for "
                         f"sample_shape {list(static)}.")
    flat = tf.reshape(c, tf.stack([-1, size]))
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.shape(flat)[0], n, message=f"{owner}: `conditional_input` must have shape "
                                          f"{expected}: one condition per sample.")]):
        return tf.identity(flat)


def sample(distribution, sample_shape=(), conditional_input=None, seed=None, **kwargs):
    """`distribution.sample(sample_shape)` with the condition and seeds routed to every part.

    `conditional_input` is `[C]` (all samples share it) or `[*sample_shape, C]`
    (one condition per sample). A missing, unexpected or wrong-sized condition
    raises `ValueError` (`check_conditional_input`).
    """
    conditional_input = check_conditional_input(distribution, conditional_input)
    shape, static = _shape_tensor(sample_shape)
    c = conditional_input
    if c is not None:
        c = broadcast_condition(c, shape if static is None else static)
    n = tf.reduce_prod(shape) if static is None else (int(np.prod(static)) if static else 1)
    seed = tfp.random.sanitize_seed(seed, salt="sample")
    if isinstance(distribution, TRANSFORMED_TYPES) and not hasattr(distribution, _SIZE_ATTR):
        base_seed, bij_seed = tfp.random.split_seed(seed, n=2, salt="sample")
        call = {}
        bkw = route(distribution.bijector, c, bij_seed)
        if bkw:
            call["bijector_kwargs"] = bkw
        dkw = _distribution_kwargs(distribution.distribution, c, None, **kwargs)
        if dkw:
            call["distribution_kwargs"] = dkw
        out = distribution.sample(n, seed=base_seed, **call)
    else:
        out = distribution.sample(n, seed=seed, **_distribution_kwargs(distribution, c, None,
                                                                        **kwargs))
    return tf.reshape(out, tf.concat([shape, tf.shape(out)[1:]], 0))


def dtype_of(obj, default=tf.float32):
    """The dtype of `obj`, or of its first part that has one (a `tfb.Chain` has none)."""
    if getattr(obj, "dtype", None) is not None:
        return tf.as_dtype(obj.dtype)
    for part in _members(obj):
        dtype = dtype_of(part, None)
        if dtype is not None:
            return dtype
    return default


def _members(obj):
    """Parts of a TFP composite, looking into library wrappers' `bijector` too."""
    found = parts(obj)
    if not found and isinstance(getattr(obj, "bijector", None), tfb.Bijector):
        found = [obj.bijector]
    return found


# -- data-dependent initialisation -------------------------------------------------


def initialize_from_data(obj, x, conditional_input=None):
    """Data-dependent initialisation of every part of `obj` that supports it.

    A `tfb.Chain([b1, b2, b3])` samples with `b1(b2(b3(z)))`, so data meet `b1`
    first in the density direction: the walk initialises each part from the
    data *as they arrive at it* (`part.initialize_from_data(y[,
    conditional_input=c])`) and passes them on through the part's (now
    initialised) inverse. Returns the data as they arrive at the base
    distribution (bijectors and transformed distributions), else None. Eager.
    """
    if isinstance(obj, TRANSFORMED_TYPES) and not hasattr(obj, _SIZE_ATTR):
        h = initialize_from_data(obj.bijector, x, conditional_input)
        initialize_from_data(obj.distribution, h, conditional_input)
        return h
    if isinstance(obj, CHAIN_TYPES) and not hasattr(obj, _SIZE_ATTR):
        h = x
        for b in obj.bijectors:
            h = initialize_from_data(b, h, conditional_input)
        return h
    init = getattr(obj, "initialize_from_data", None)
    if init is not None:
        if is_conditional(obj) and conditional_input is not None:
            init(x, conditional_input=conditional_input)
        else:
            init(x)
    if isinstance(obj, tfb.Bijector):
        # Fresh tensor: TFP caches inverse() by input, and parameters just changed.
        return obj.inverse(tf.identity(x), **route(obj, conditional_input))
    return None
