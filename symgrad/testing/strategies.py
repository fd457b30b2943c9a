"""Hypothesis strategies for symgrad, in the style of :mod:`hypothesis.extra.numpy`.

* :func:`activations`: built-in and custom :class:`symgrad.Activation` objects;
* :func:`chains`: Nielsen's single-neuron chains; :func:`networks`: dense networks;
* :func:`parameters`: a parameter mapping for *one given* network (``a0``, ``y`` and every
  weight and bias, as :func:`symgrad.numeric.backprop` takes it), optionally in a **regime**:

  - ``"bounded"``: every weight in ``[-max_weight, max_weight]`` (e.g. ``|w| ≤ 1``);
  - ``"vanishing"``: every chain factor ``|w_{j+1} φ'(z_j)| ≤ rate < 1``;
  - ``"exploding"``: every chain factor ``|w_{j+1} φ'(z_j)| ≥ rate > 1``, built as Nielsen does:
    large weights and ``b_j = z* − w_j a_{j−1}`` so that ``z_j = z*`` (``z* = 0`` where
    ``φ'(0) > 0``, e.g. sigmoid: w = 100 gives exactly 25 per layer);
  - ``"saturated"``: every pre-activation has ``|z| > saturation`` (default 4);
  - ``"dead"``: at least one unit has ``z ≤ 0`` under an activation with ``φ' = 0`` there (ReLU).

* :func:`meanfield_params`: ``(σ_w², σ_b²)`` in the ordered, critical or chaotic mean-field
  phase of an activation (:mod:`symgrad.theory.meanfield`).

Every argument is keyword-only and checked when the strategy is *made*, not when it is drawn:
a bad one raises :class:`symgrad.InvalidArgument` naming the value and saying how to fix it,
including bounds under which some draw would overflow float64 in the forward pass.  Sizes are bounded by
default (chains up to depth 8, dense networks up to 3 layers of width 4), floats are finite
unless ``allow_nan``/``allow_infinity`` ask otherwise, and everything shrinks towards small,
round values (depth ``min_depth``, sigmoid, weights and biases near 0).

>>> from hypothesis import given, strategies as st
>>> import symgrad.testing.strategies as sgst
>>> from symgrad.testing.properties import assert_vanishing
>>> @given(st.data())
... def test_decay(data):
...     net = data.draw(sgst.chains(max_depth=5))
...     params = data.draw(sgst.parameters(net=net, regime="vanishing", rate=0.5))
...     assert_vanishing(net, params, rate=0.5)
>>> test_decay()
"""

from __future__ import annotations

import functools
import math
import numbers
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from symgrad.spec.activations import BUILTIN_ACTIVATIONS, Activation, activation as _activation
from symgrad.errors import InvalidArgument
from symgrad.spec.losses import BUILTIN_LOSSES
from symgrad.symbolic.build import chain as _chain, network as _network
from symgrad.symbolic.networks import Chain, Network

__all__ = ["REGIMES", "PHASES", "activations", "chains", "networks", "parameters", "meanfield_params"]

#: The regimes :func:`parameters` can target.
REGIMES = ("bounded", "vanishing", "exploding", "saturated", "dead")

#: Aliases are left out of the default draw, so that each function is drawn once.
_DEFAULT_BUILTINS = tuple(n for n in BUILTIN_ACTIVATIONS if n not in ("swish", "linear"))
#: Hard ceilings: a strategy that draws deeper or wider than this is a slow test, not a test.
_MAX_DRAW_DEPTH = 10_000
_MAX_DRAW_WIDTH = 64


# ---------------------------------------------------------------------------------------------
# Argument checks (eager; each message says what to pass instead)
# ---------------------------------------------------------------------------------------------


def _check_int(fn, name, value, *, lo, hi):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument("%s: %s=%r must be an int, e.g. %s=%d" % (fn, name, value, name, lo))
    if not lo <= value <= hi:
        raise InvalidArgument("%s: %s=%d must be between %d and %d" % (fn, name, value, lo, hi))
    return int(value)


def _check_range(fn, lo_name, lo, hi_name, hi):
    if lo > hi:
        raise InvalidArgument("%s: %s=%r is greater than %s=%r; pass %s <= %s" % (fn, lo_name, lo, hi_name, hi, lo_name, hi_name))


def _check_float(fn, name, value, *, positive=True, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument("%s: %s=%r must be a real number, e.g. %s=1.0" % (fn, name, value, name))
    value = float(value)
    if not math.isfinite(value):
        raise InvalidArgument("%s: %s=%r must be finite" % (fn, name, value))
    if positive and not value > 0:
        raise InvalidArgument("%s: %s=%r must be > 0, e.g. %s=1.0" % (fn, name, value, name))
    return value


def _activation_spec(fn, spec):
    """A fixed Activation (from a name, expression or Activation), or a strategy of them."""
    if spec is None:
        return activations()
    if isinstance(spec, SearchStrategy):
        return spec
    if isinstance(spec, (list, tuple)):
        raise InvalidArgument(
            "%s: activation=%r is a sequence; pass one activation, or a strategy such as "
            "activations(names=%r)" % (fn, spec, list(spec))
        )
    try:
        return st.just(_activation(spec))
    except InvalidArgument as exc:
        raise InvalidArgument("%s: activation=%r is not an activation: %s" % (fn, spec, exc)) from None


def _loss_spec(fn, spec):
    if isinstance(spec, SearchStrategy):
        return spec
    if spec not in BUILTIN_LOSSES:
        raise InvalidArgument("%s: loss=%r is unknown; pass one of %s, or a strategy such as st.sampled_from(%r)"
                              % (fn, spec, ", ".join(map(repr, BUILTIN_LOSSES)), list(BUILTIN_LOSSES)))
    return st.just(spec)


# ---------------------------------------------------------------------------------------------
# Activations and networks
# ---------------------------------------------------------------------------------------------


def activations(*, names=None, custom=()) -> SearchStrategy[Activation]:
    """Activations: built-ins by name (default parameters), and the ``custom`` ones given.

    * ``names``: built-in names to draw from (default: every built-in except the aliases
      ``swish`` and ``linear``); ``()`` for none.  Shrinks towards the first name (sigmoid).
    * ``custom``: extra activations, each anything :func:`symgrad.activation` accepts (an
      expression string in ``z``, a SymPy expression, an :class:`~symgrad.Activation`).  They
      are built once, here, so drawing never runs SymPy.  They are drawn after the built-ins,
      so a failing example shrinks to a built-in where it can.

    >>> from hypothesis import given
    >>> from symgrad.testing.strategies import activations
    >>> @given(activations(names=["sigmoid", "tanh"], custom=["z/(1 + abs(z))"]))
    ... def test_derivative_is_finite(act):
    ...     assert act.grad(0.0) >= 0
    >>> test_derivative_is_finite()
    """
    fn = "activations"
    if names is None:
        names = _DEFAULT_BUILTINS
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise InvalidArgument("%s: names=%r must be a list of built-in names, e.g. names=['sigmoid', 'tanh']" % (fn, names))
    for n in names:
        if n not in BUILTIN_ACTIVATIONS:
            raise InvalidArgument("%s: names contains %r, which is not a built-in; known: %s (put expressions in custom=)"
                                  % (fn, n, ", ".join(BUILTIN_ACTIVATIONS)))
    if isinstance(custom, str) or not isinstance(custom, (list, tuple)):
        raise InvalidArgument("%s: custom=%r must be a list, e.g. custom=['z*sigmoid(z)']" % (fn, custom))
    built = []
    for spec in custom:
        try:
            built.append(_activation(spec))
        except InvalidArgument as exc:
            raise InvalidArgument("%s: custom activation %r is invalid: %s" % (fn, spec, exc)) from None
    pool = [_activation(n) for n in names] + built
    if not pool:
        raise InvalidArgument("%s: names=%r and custom=%r leave nothing to draw; give at least one" % (fn, names, custom))
    return st.sampled_from(pool)


def chains(*, min_depth=1, max_depth=8, activation=None, loss="quadratic") -> SearchStrategy[Chain]:
    """Nielsen's single-neuron chains ``symgrad.chain(depth, activation, loss)``.

    * ``min_depth``, ``max_depth``: the depth range (default 1..8; at most 10000).  Shrinks
      towards ``min_depth``.
    * ``activation``: one activation for every layer (a name such as ``"tanh"``, an
      expression, an Activation), or a strategy of them; default :func:`activations`.
    * ``loss``: ``"quadratic"`` (default) or ``"cross_entropy"``, or a strategy of names.

    Building a chain derives nothing; derive the gradients you need once, outside ``@given``.

    >>> from hypothesis import given
    >>> from symgrad.testing.strategies import chains
    >>> @given(chains(min_depth=2, max_depth=5, activation="tanh"))
    ... def test_depth(net):
    ...     assert 2 <= net.depth <= 5 and net.activation.name == "tanh"
    >>> test_depth()
    """
    fn = "chains"
    min_depth = _check_int(fn, "min_depth", min_depth, lo=1, hi=_MAX_DRAW_DEPTH)
    max_depth = _check_int(fn, "max_depth", max_depth, lo=1, hi=_MAX_DRAW_DEPTH)
    _check_range(fn, "min_depth", min_depth, "max_depth", max_depth)
    acts = _activation_spec(fn, activation)
    losses = _loss_spec(fn, loss)
    return st.builds(_chain, st.integers(min_depth, max_depth), acts, losses)


def networks(*, min_depth=1, max_depth=3, min_width=1, max_width=4, activation=None, loss="quadratic") -> SearchStrategy[Network]:
    """Dense networks ``symgrad.network([n0, ..., nL], activation, loss)``.

    * ``min_depth``, ``max_depth``: the number of layers L (default 1..3, at most 10000);
    * ``min_width``, ``max_width``: every width n0..nL (default 1..4, at most 64);
    * ``activation``, ``loss``: as for :func:`chains`.

    Shrinks towards ``min_depth`` layers of ``min_width`` units.  Wide, deep networks make every
    example slower (backprop is O(Σ n_l n_{l-1})), so raise the bounds only where needed.

    >>> from hypothesis import given
    >>> from symgrad.testing.strategies import networks
    >>> @given(networks(min_depth=2, max_depth=2, max_width=3, activation="relu"))
    ... def test_shape(net):
    ...     assert net.depth == 2 and max(net.widths) <= 3
    >>> test_shape()
    """
    fn = "networks"
    min_depth = _check_int(fn, "min_depth", min_depth, lo=1, hi=_MAX_DRAW_DEPTH)
    max_depth = _check_int(fn, "max_depth", max_depth, lo=1, hi=_MAX_DRAW_DEPTH)
    _check_range(fn, "min_depth", min_depth, "max_depth", max_depth)
    min_width = _check_int(fn, "min_width", min_width, lo=1, hi=_MAX_DRAW_WIDTH)
    max_width = _check_int(fn, "max_width", max_width, lo=1, hi=_MAX_DRAW_WIDTH)
    _check_range(fn, "min_width", min_width, "max_width", max_width)
    acts = _activation_spec(fn, activation)
    losses = _loss_spec(fn, loss)
    widths = st.integers(min_depth, max_depth).flatmap(
        lambda L: st.lists(st.integers(min_width, max_width), min_size=L + 1, max_size=L + 1))
    return st.builds(_network, widths, acts, losses)


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


def _floats(lo, hi, *, allow_nan=False, allow_infinity=False):
    s = st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    extra = ([st.just(math.nan)] if allow_nan else []) + ([st.sampled_from([math.inf, -math.inf])] if allow_infinity else [])
    return st.one_of(s, *extra) if extra else s


def _signed(lo, hi):
    """A magnitude in [lo, hi] with either sign; shrinks towards +lo."""
    return st.tuples(st.floats(lo, hi, allow_subnormal=False), st.booleans()).map(lambda t: -t[0] if t[1] else t[0])


def _kink_point(act: Activation) -> float:
    """The pre-activation z* among 0 and 1 where |φ'| is larger (0 on a tie): 0 for sigmoid,
    tanh, softsign, ELU; 1 for ReLU (φ'(0) = 0 by the left-derivative convention), leaky ReLU
    (φ'(0) = α), softplus, SiLU and GELU.  The exploding regime pins z_j there."""
    g0, g1 = (abs(float(act.grad(np.array(v)))) for v in (0.0, 1.0))
    return 0.0 if g0 >= g1 else 1.0


def _abs_value_bound(act: Activation, zmax: float) -> float:
    """max |φ(±zmax)|: a bound on |φ(z)| for |z| ≤ zmax for the built-ins (each |φ| is largest at
    an end of a symmetric interval); custom activations are also probed at 0 and ±1."""
    with np.errstate(all="ignore"):
        pts = np.array([-zmax, zmax, 0.0, -1.0, 1.0])
        return float(np.max(np.abs(act.value(pts))))


def _check_magnitudes(fn, net, regime, max_weight, max_bias, max_input, saturation):
    """Eagerly refuse bounds under which some draw would overflow float64 in the forward pass
    (|z_l| ≤ max_weight·n_{l−1}·max|a_{l−1}| + max|b_l|, layer by layer), so that every example
    drawn is a valid input.  Raises InvalidArgument naming the layer and the values."""
    widths = (1,) * (net.depth + 1) if isinstance(net, Chain) else tuple(net.widths)
    sat_z = saturation * (1 + 1e-9) + 1e-9 + 8.0
    A = max_input
    for l, act in enumerate(net.activations, start=1):
        wa = max_weight * widths[l - 1] * A
        if regime == "exploding" and isinstance(net, Chain) and l < net.depth:
            zmax = abs(_kink_point(act))
            reach = wa + zmax  # b = z* − w·a
        elif regime == "saturated":
            zmax = sat_z
            reach = wa + sat_z  # b = ±target − w·a
        else:
            zmax = reach = wa + max(max_bias, 8.0 if regime == "dead" else 0.0)
        A = _abs_value_bound(act, zmax)
        # 1e300 rather than the float64 maximum: headroom for the rounding of this bound itself.
        if not (math.isfinite(reach) and math.isfinite(A) and reach < 1e300):
            raise InvalidArgument(
                "%s: with max_weight=%r, max_bias=%r, max_input=%r%s, |z%d| (or the bias that sets it) can reach %.3g "
                "for %r, which overflows float64; lower max_weight or max_input, or use a shallower network"
                % (fn, max_weight, max_bias, max_input, ", saturation=%r" % saturation if regime == "saturated" else "",
                   l, reach, net))


def _dead_ok(act: Activation) -> bool:
    return bool(np.all(act.grad(np.array([-1.0, -1e-3, 0.0])) == 0.0))


def parameters(*, net, regime="bounded", rate=None, max_weight=None, max_bias=4.0, max_input=4.0,
               saturation=4.0, allow_nan=False, allow_infinity=False) -> SearchStrategy[dict]:
    """Parameter mappings for the given ``net`` (a chain or a dense network), in a regime.

    The mapping holds ``a0``, ``y`` and every parameter, as :func:`symgrad.numeric.sample`
    returns it: Python floats for a chain, float64 arrays for a dense network.  ``y`` is in
    ``[0, 1]`` (a valid cross-entropy target).

    * ``net``: a :class:`~symgrad.symbolic.Chain` or :class:`~symgrad.symbolic.Network` (to draw the network too,
      use ``st.data()`` or ``chains().flatmap(lambda n: parameters(net=n).map(lambda p: (n, p)))``).
    * ``regime``: one of :data:`REGIMES`:

      - ``"bounded"`` (default): weights in ``[-max_weight, max_weight]`` (default 4), biases in
        ``[-max_bias, max_bias]``, inputs in ``[-max_input, max_input]``;
      - ``"vanishing"`` (chains): ``|w_{j+1} φ'(z_j)| ≤ rate`` for every j < L, ``0 < rate < 1``
        (default 1/2), each weight also bounded by ``max_weight``;
      - ``"exploding"`` (chains): ``|w_{j+1} φ'(z_j)| ≥ rate`` for every j < L, ``rate > 1``
        (default 2), with ``z_j`` pinned where φ' is largest (0 for sigmoid, tanh) by
        ``b_j = z* − w_j a_{j−1}``; ``|w| ≤ max_weight`` (default 100, Nielsen's value);
      - ``"saturated"``: every ``|z| > saturation`` (default 4: σ'(z) < 0.018 there);
      - ``"dead"``: at least one unit with ``z ≤ 0``; the activation must have φ' = 0 there (ReLU).

    * ``allow_nan``, ``allow_infinity``: also draw nan / ±inf for the input ``a0`` (to test that
      your code rejects them; symgrad's own functions raise :class:`~symgrad.InvalidArgument`).

    >>> import symgrad
    >>> from hypothesis import given
    >>> from symgrad.testing.strategies import parameters
    >>> net = symgrad.chain(3)
    >>> @given(parameters(net=net, regime="exploding", rate=25.0))   # Nielsen: w = 100, z = 0
    ... def test_nielsen(p):
    ...     assert abs(p["w2"]) == 100.0 and symgrad.forward(net, p)["z1"] == 0.0
    >>> test_nielsen()
    """
    fn = "parameters"
    if not isinstance(net, (Chain, Network)):
        hint = " (it is a strategy: draw the network first, e.g. net = data.draw(chains()))" if isinstance(net, SearchStrategy) else ""
        raise InvalidArgument("%s: net=%r must be a symgrad chain or network%s" % (fn, net, hint))
    if regime not in REGIMES:
        raise InvalidArgument("%s: regime=%r is unknown; pass one of %s" % (fn, regime, ", ".join(map(repr, REGIMES))))
    max_bias = _check_float(fn, "max_bias", max_bias)
    max_input = _check_float(fn, "max_input", max_input)
    saturation = _check_float(fn, "saturation", saturation)
    max_weight = _check_float(fn, "max_weight", max_weight, allow_none=True)
    if max_weight is None:
        max_weight = 100.0 if regime == "exploding" else 4.0
    for flag, val in (("allow_nan", allow_nan), ("allow_infinity", allow_infinity)):
        if not isinstance(val, bool):
            raise InvalidArgument("%s: %s=%r must be True or False" % (fn, flag, val))
    if rate is not None and regime not in ("vanishing", "exploding"):
        raise InvalidArgument("%s: rate=%r only applies to regime='vanishing' or 'exploding', not %r" % (fn, rate, regime))
    is_chain = isinstance(net, Chain)
    if regime in ("vanishing", "exploding") and not is_chain:
        raise InvalidArgument("%s: regime=%r is defined for chains (one factor per layer); use symgrad.chain(...) "
                              "or regime='bounded' for %r" % (fn, regime, net))
    if regime == "vanishing":
        rate = 0.5 if rate is None else _check_float(fn, "rate", rate)
        if not rate < 1:
            raise InvalidArgument("%s: regime='vanishing' needs 0 < rate < 1 (every factor |w φ'| ≤ rate); got rate=%r, "
                                  "e.g. rate=0.25" % (fn, rate))
    if regime == "exploding":
        rate = 2.0 if rate is None else _check_float(fn, "rate", rate)
        if not rate > 1:
            raise InvalidArgument("%s: regime='exploding' needs rate > 1 (every factor |w φ'| ≥ rate); got rate=%r, "
                                  "e.g. rate=2" % (fn, rate))
        for j, act in enumerate(net.activations[:-1], start=1):
            peak = float(act.grad(np.array(_kink_point(act))))
            need = rate / peak if peak > 0 else math.inf
            if need > max_weight:
                raise InvalidArgument(
                    "%s: regime='exploding' with rate=%r needs |w%d| ≥ rate/|φ'(z*)| = %.6g for %s (φ'(z*) = %.6g), "
                    "but max_weight=%r; raise max_weight to at least %.6g or lower rate"
                    % (fn, rate, j + 1, need, act.name, peak, max_weight, need))
    if regime == "dead":
        ok = [l for l, act in enumerate(net.activations, start=1) if _dead_ok(act)]
        if not ok:
            raise InvalidArgument("%s: regime='dead' needs an activation with φ'(z) = 0 for z ≤ 0, such as relu; "
                                  "%r has none" % (fn, net))
    _check_magnitudes(fn, net, regime, max_weight, max_bias, max_input, saturation)
    inputs = _floats(-max_input, max_input, allow_nan=allow_nan, allow_infinity=allow_infinity)
    targets = st.floats(0.0, 1.0)
    if is_chain:
        return st.builds(_ChainBuilder(net, regime, rate, max_weight, max_bias, saturation).build, st.data(), inputs, targets)
    return st.builds(_DenseBuilder(net, regime, max_weight, max_bias, max_input, saturation).build, st.data(), inputs, targets)


def _nudge(b, z_of, ok, direction):
    """Move the bias b in ``direction`` (±1) by growing steps (1, 2, 4, … ulps) until ``ok(z_of(b))``.
    The regimes set b = target − w·a, and z = w·a + b then misses the target by the rounding,
    up to ε·(|w·a| + |target|), which can cross a threshold when |w·a| is large; ``z_of`` computes
    z exactly as the forward pass does, so the condition holds for the z the user sees."""
    step = 0.0
    for k in range(1100):
        if ok(z_of(b)):
            return b
        nb = math.nextafter(b, direction * math.inf) if step == 0.0 else b + direction * step
        step = max(abs(nb - b), math.ulp(b)) * 2
        b = nb
    raise AssertionError("symgrad.testing.strategies: could not move z past its threshold by adjusting b=%r" % b)  # pragma: no cover


def _sigmoid_scalar(z: float) -> float:
    """σ(z) by the formula symgrad's forward pass uses for one sample of an all-sigmoid chain
    (``numeric._sigmoid_forward_scalar``), so that the z's drawn here are the z's it computes."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


class _ChainBuilder:
    """Draws a chain's parameters layer by layer, running the forward pass as it goes, so each
    layer's weight or bias can be chosen to meet the regime's condition at that layer."""

    def __init__(self, net, regime, rate, max_weight, max_bias, saturation):
        self.net, self.regime, self.rate = net, regime, rate
        self.max_weight, self.max_bias, self.saturation = max_weight, max_bias, saturation

    def build(self, data, a0, y):
        net, L, regime = self.net, self.net.depth, self.regime
        out = {"a0": a0, "y": y}
        free_w = _floats(-self.max_weight, self.max_weight)
        free_b = _floats(-self.max_bias, self.max_bias)
        dead_layer = None
        if regime == "dead":
            ok = [l for l, act in enumerate(net.activations, start=1) if _dead_ok(act)]
            dead_layer = data.draw(st.sampled_from(ok), label="dead layer")
        a = a0 if math.isfinite(a0) else 0.0
        all_sigmoid = all(act.logistic for act in net.activations)
        prev_grad = None  # φ'(z_{j-1})
        for j, act in enumerate(net.activations, start=1):
            if regime == "vanishing" and prev_grad is not None and prev_grad > 0:
                # |w_j φ'(z_{j-1})| ≤ rate, with a margin so that rounding cannot push it over.
                cap = min(self.max_weight, self.rate / prev_grad * (1 - 1e-9))
                w = data.draw(_floats(-cap, cap), label="w%d" % j)
            elif regime == "exploding" and j > 1:
                # From the φ'(z_{j−1}) actually reached: z = w·a + (z* − w·a) can miss z* by a rounding
                # of order ε·|w·a|, and φ' moves with it (not at z* = 0 of sigmoid, tanh, but at z* = 1).
                prev = net.activations[j - 2]
                reached = prev_grad if prev_grad else float(prev.grad(np.array(_kink_point(prev))))
                lo = self.rate / reached * (1 + 1e-9)
                w = data.draw(_signed(min(lo, self.max_weight), self.max_weight), label="w%d" % j)
            else:
                w = data.draw(free_w, label="w%d" % j)
            if regime == "exploding" and j < L:
                b = _kink_point(act) - w * a  # Nielsen: z_j = z* (0 for sigmoid)
            elif regime == "saturated":
                mag = data.draw(st.floats(0.0, 8.0), label="|z%d| - saturation" % j)
                target = self.saturation * (1 + 1e-9) + 1e-9 + mag
                if data.draw(st.booleans(), label="z%d < 0" % j):
                    target = -target
                b = _nudge(target - w * a, lambda b: w * a + b, lambda z: abs(z) > self.saturation, 1.0 if target > 0 else -1.0)
            elif j == dead_layer:
                b = _nudge(-data.draw(st.floats(1e-6, 8.0), label="-z%d" % j) - w * a, lambda b: w * a + b, lambda z: z < 0, -1.0)
            else:
                b = data.draw(free_b, label="b%d" % j)
            out["w%d" % j], out["b%d" % j] = float(w), float(b)
            zj = w * a + b  # = the forward pass's a·w + b, bit for bit (a is its a: see below)
            prev_grad = abs(float(act.grad(np.array(zj))))
            a = _sigmoid_scalar(zj) if all_sigmoid else float(act.value(np.array(zj)))
        return {k: out[k] for k in ("a0", "y") + net.parameters}


class _DenseBuilder:
    def __init__(self, net, regime, max_weight, max_bias, max_input, saturation):
        self.net, self.regime, self.max_input = net, regime, max_input
        self.max_weight, self.max_bias, self.saturation = max_weight, max_bias, saturation

    def build(self, data, a0, y):
        from hypothesis.extra.numpy import arrays

        net, n = self.net, self.net.widths
        rest = arrays(np.float64, (n[0] - 1,), elements=_floats(-self.max_input, self.max_input))
        first = data.draw(rest, label="a0[1:]")
        a_in = np.concatenate([[a0], first]).astype(np.float64)
        ys = data.draw(arrays(np.float64, (n[-1],), elements=st.floats(0.0, 1.0)), label="y")
        ys[0] = y
        out = {"a0": a_in, "y": ys}
        dead = None
        if self.regime == "dead":
            ok = [l for l, act in enumerate(net.activations, start=1) if _dead_ok(act)]
            layer = data.draw(st.sampled_from(ok), label="dead layer")
            dead = (layer, data.draw(st.integers(0, n[layer] - 1), label="dead unit"))
        a = np.where(np.isfinite(a_in), a_in, 0.0)
        Ws, bs = {}, {}
        for l, act in enumerate(net.activations, start=1):
            W = data.draw(arrays(np.float64, (n[l], n[l - 1]), elements=_floats(-self.max_weight, self.max_weight)), label="W%d" % l)
            wa = a @ W.T  # as the forward pass computes W a (symgrad.numeric._matvec), so z here is its z
            if self.regime == "saturated":
                mag = data.draw(arrays(np.float64, (n[l],), elements=st.floats(0.0, 8.0)), label="|z%d| - saturation" % l)
                neg = data.draw(arrays(np.bool_, (n[l],)), label="z%d < 0" % l)
                target = (self.saturation * (1 + 1e-9) + 1e-9 + mag) * np.where(neg, -1.0, 1.0)
                b = target - wa
                for i in range(n[l]):
                    b[i] = _nudge(float(b[i]), lambda v, i=i: float(wa[i] + v), lambda z: abs(z) > self.saturation,
                                  1.0 if target[i] > 0 else -1.0)
            else:
                b = data.draw(arrays(np.float64, (n[l],), elements=_floats(-self.max_bias, self.max_bias)), label="b%d" % l)
                if dead is not None and dead[0] == l:
                    i = dead[1]
                    b[i] = _nudge(-data.draw(st.floats(1e-6, 8.0), label="-z%d[%d]" % (l, i)) - float(wa[i]),
                                  lambda v: float(wa[i] + v), lambda z: z < 0, -1.0)
            Ws["W%d" % l], bs["b%d" % l] = W, b
            a = act.value(wa + b)
        out.update(Ws)
        out.update(bs)
        return {k: out[k] for k in ("a0", "y") + net.parameters}


# ---------------------------------------------------------------------------------------------
# Mean-field phases: (σ_w², σ_b²) in the ordered, critical or chaotic phase of an activation
# ---------------------------------------------------------------------------------------------

#: The phases :func:`meanfield_params` can target (those of :func:`symgrad.theory.meanfield.phase`).
PHASES = ("ordered", "critical", "chaotic")
#: The σ_b² drawn when none is given, simplest first (a failing example shrinks towards σ_b² = 0).
MEANFIELD_SIGMA_B2 = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Ordered draws go down to this fraction of the critical σ_w², chaotic ones up to this multiple.
_ORDERED_LOW, _CHAOTIC_HIGH = 0.25, 4.0


def _finite_fixed_point(act, sigma_w2, sigma_b2) -> bool:
    from symgrad.theory import meanfield

    try:
        meanfield.q_star(act, sigma_w2, sigma_b2)
    except InvalidArgument:  # no finite fixed point (ReLU with σ_w² > 2, ...)
        return False
    return True


@functools.lru_cache(maxsize=128)  # bounded: one entry per (activation, σ_b²) asked for
def _critical(act: Activation, sigma_b2: float):
    """meanfield.critical_sigma_w2(act, sigma_b2), or the InvalidArgument saying there is none."""
    from symgrad.theory import meanfield

    try:
        return meanfield.critical_sigma_w2(act, sigma_b2)
    except InvalidArgument as exc:
        return exc


@functools.lru_cache(maxsize=256)  # bounded: one entry per (activation, σ_b², phase, margin) asked for
def _phase_range(act: Activation, sigma_b2: float, phase: str, margin: float):
    """``(lo, hi)`` for σ_w² in ``phase`` at ``sigma_b2`` (``lo == hi`` on the critical line, a
    Fraction where the line is an exact non-dyadic rational), or a string saying why there is none."""
    crit = _critical(act, sigma_b2)
    if isinstance(crit, InvalidArgument):
        return "no critical line there (%s)" % crit
    if phase == "critical":
        if crit.exact is not None:
            if not crit.exact.is_Rational:
                return "the critical σ_w² = %s is irrational, so no number passed to meanfield lies exactly on it" % crit.exact
            w = Fraction(int(crit.exact.p), int(crit.exact.q))
            w = float(w) if float(w) == w else w
        else:
            w = crit.value  # on the line within the quadrature error, which phase() allows for
        if not _finite_fixed_point(act, w, sigma_b2):
            return "the length map has no finite fixed point at the critical σ_w² = %s" % w
        return (w, w)
    c = float(crit.value) if crit.exact is None else float(crit.exact)
    if phase == "ordered":
        lo, hi = c * _ORDERED_LOW, c * (1 - margin)
        if not _finite_fixed_point(act, hi, sigma_b2):
            return "the length map has no finite fixed point below the critical σ_w² = %.6g" % c
        return (lo, hi)
    lo, hi = c * (1 + margin), c * _CHAOTIC_HIGH
    if not _finite_fixed_point(act, lo, sigma_b2):
        return "the length map has no finite fixed point above the critical σ_w² = %.6g (q grows without bound)" % c
    # The length map grows with σ_w², so a finite fixed point at hi means one everywhere below it.
    for _ in range(12):
        if _finite_fixed_point(act, hi, sigma_b2):
            break
        hi = lo + (hi - lo) / 2
    else:
        hi = lo
    return (lo, hi)


def meanfield_params(activation, phase="ordered", *, sigma_b2=None, margin=0.1) -> SearchStrategy[tuple]:
    """``(sigma_w2, sigma_b2)`` in the mean-field ``phase`` of ``activation``, for a wide dense
    network with ``W_ij ~ N(0, σ_w²/n_in)`` and ``b_i ~ N(0, σ_b²)`` (unitless variances).

    The phases are those of :func:`symgrad.theory.meanfield.phase` (Schoenholz et al. 2017):

    * ``"ordered"``: σ_w² in ``[c/4, c(1 − margin)]`` below the critical σ_w² = c at that σ_b²
      (χ₁ < 1, gradients vanish);
    * ``"chaotic"``: σ_w² in ``[c(1 + margin), 4c]`` above it (χ₁ > 1), cut down to where the
      length map still has a finite fixed point;
    * ``"critical"``: σ_w² = c, exactly where :func:`~symgrad.theory.meanfield.critical_sigma_w2`
      is exact (a ``fractions.Fraction`` when c is a rational that no float equals, e.g. leaky
      ReLU's 20000/10001; a float otherwise), else its quadrature value, on the line within the
      quadrature error.

    * ``activation``: a built-in name, an expression string in ``z`` or an
      :class:`~symgrad.Activation` (one activation, not a strategy: its critical line is computed
      when the strategy is made);
    * ``sigma_b2``: one σ_b² (≥ 0), or None to draw from :data:`MEANFIELD_SIGMA_B2`, shrinking
      towards 0; values where the phase does not exist are left out;
    * ``margin``: the relative distance from the critical line, in ``(0, 0.5]``.

    Points with no finite fixed point are never drawn (ReLU, leaky ReLU and the identity have no
    chaotic phase: above the critical line q grows without bound; their critical point needs
    σ_b² = 0).  Where the phase does not exist at all — GELU at σ_b² = 0 has no critical line,
    erf(z) at σ_b² = 0 is critical at the irrational π/4 — making the strategy raises
    :class:`~symgrad.InvalidArgument` saying which σ_b² to use.  Sigmoid (φ(0) = 1/2, so q* > 0)
    does have a critical line at σ_b² = 0, at σ_w² ≈ 103.  Everything is checked when the
    strategy is made; the critical line of each (activation, σ_b²) is cached (bounded).

    >>> from hypothesis import given
    >>> from symgrad.theory import meanfield
    >>> @given(meanfield_params("tanh", "chaotic", sigma_b2=0.05))
    ... def test_gradients_explode(params):
    ...     assert meanfield.chi1("tanh", *params).value > 1
    >>> test_gradients_explode()
    >>> from hypothesis import find
    >>> find(meanfield_params("relu", "critical"), lambda params: True)
    (2.0, 0.0)
    """
    fn = "meanfield_params"
    if isinstance(activation, SearchStrategy) or isinstance(activation, (list, tuple)):
        raise InvalidArgument("%s: activation=%r must be one activation (its critical line is computed now); "
                              "use data.draw(st.sampled_from(...)) and call %s per activation" % (fn, activation, fn))
    try:
        act = _activation(activation)
    except InvalidArgument as exc:
        raise InvalidArgument("%s: activation=%r is not an activation: %s" % (fn, activation, exc)) from None
    if not isinstance(phase, str) or phase not in PHASES:
        raise InvalidArgument("%s: phase=%r is unknown; pass one of %s" % (fn, phase, ", ".join(map(repr, PHASES))))
    margin = _check_float(fn, "margin", margin)
    if margin > 0.5:
        raise InvalidArgument("%s: margin=%r must be in (0, 0.5], e.g. margin=0.1 (a relative distance from the critical line)" % (fn, margin))
    if sigma_b2 is None:
        candidates = MEANFIELD_SIGMA_B2
    else:
        b = _check_float(fn, "sigma_b2", sigma_b2, positive=False)
        if b < 0 or b > 1e6:
            raise InvalidArgument("%s: sigma_b2=%r must be between 0 and 1e6, e.g. sigma_b2=0.05" % (fn, sigma_b2))
        candidates = (b,)
    ranges, why = [], {}
    for b in candidates:
        r = _phase_range(act, b, phase, margin)
        if isinstance(r, str):
            why[b] = r
        else:
            ranges.append((b, r))
    if not ranges:
        hint = ""
        if sigma_b2 is not None:
            ok = [b for b in MEANFIELD_SIGMA_B2 if not isinstance(_phase_range(act, b, phase, margin), str)]
            hint = "; try sigma_b2 in %s" % ok if ok else ""
        raise InvalidArgument("%s: %s has no %s phase at σ_b² in %s: %s%s" % (
            fn, act.name, phase, list(candidates), "; ".join("σ_b² = %g: %s" % kv for kv in why.items()), hint or
            ("; pick another phase or activation" if sigma_b2 is None else "")))

    def at(item):
        b, (lo, hi) = item
        if lo == hi:
            return st.just((lo, b))
        return st.floats(lo, hi).map(lambda w: (w, b))

    return st.sampled_from(ranges).flatmap(at)
