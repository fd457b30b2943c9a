r"""Reusable assertions about gradient flow, each with a clear failure message.

Every ``assert_*`` function returns quietly when the property holds and raises
:class:`symgrad.GradientCheckError` (an ``AssertionError``) naming the layer or parameter, the
values and the bound when it does not.  A violated *precondition* (e.g. a factor above the
``rate`` given to :func:`assert_vanishing`) is a misuse and raises
:class:`symgrad.InvalidArgument`.  The ``verify_*`` functions are the symbolic counterparts:
exact SymPy checks on the closed forms, cached, so call them once, outside ``@given``.

1. :func:`assert_derivative_in_range` / :func:`verify_derivative_bound`: ``0 < σ' ≤ 1/4``
   (equality only at 0), ``0 < tanh' ≤ 1``, ``relu' ∈ {0, 1}``, ``leaky_relu' ∈ {α, 1}``, and in
   general φ' within the catalogue's range and sup.
2. :func:`assert_vanishing`: every factor ``|w_{j+1} φ'(z_j)| ≤ r < 1`` ⇒
   ``|∂C/∂b_1| ≤ r^{L−1} |∂C/∂b_L|``.
3. :func:`assert_exploding`: every factor ``≥ c > 1`` ⇒ ``|∂C/∂b_1| ≥ c^{L−1} |∂C/∂b_L|``.
4. :func:`assert_chain_identity` / :func:`verify_chain_identity`:
   ``∂C/∂b_1 / ∂C/∂b_L = Π_{j=1}^{L−1} w_{j+1} φ'(z_j)``, to rounding and in log space.
5. :func:`assert_dense_delta_bound`: ``‖δ^l‖ ≤ ‖δ^L‖ · Π_{k=l}^{L−1} sup|φ'_k| · ‖W^{k+1}‖_2``.
6. :func:`steep_interval_width` / :func:`assert_steep_interval` /
   :func:`steep_interval_derivation`: ``|w σ'(wa + b)| ≥ 1`` needs ``|w| ≥ 4`` and then holds
   only for ``a`` in an interval of width ``(2/|w|)·ln(|w|(1 + √(1 − 4/|w|))/2 − 1)``.
7. :func:`assert_gradient_fn`: a user's gradient function agrees with the closed form.
8. :func:`assert_residual_path_bounds` / :func:`residual_path_factors`: in a residual chain, every
   ``|α w_k φ'(z_k)| ≤ r < 1`` ⇒ ``(1 − r)^{L−j} ≤ |Π_{k>j} (1 + α w_k φ'(z_k))| ≤ (1 + r)^{L−j}``.

>>> import symgrad
>>> from symgrad.testing.properties import assert_chain_identity
>>> net = symgrad.chain(4)
>>> assert_chain_identity(net, symgrad.sample(net, seed=0))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy

from symgrad.spec.activations import Activation, activation as _activation, sigmoid as _sigmoid, z as _z
from symgrad.errors import GradientCheckError, InvalidArgument
from symgrad.interop._common import is_torch_module
from symgrad.symbolic.networks import Chain, Network

__all__ = [
    "assert_chain_identity",
    "assert_dense_delta_bound",
    "assert_derivative_in_range",
    "assert_exploding",
    "assert_gradient_fn",
    "assert_residual_path_bounds",
    "assert_steep_interval",
    "assert_vanishing",
    "chain_factors",
    "dense_delta_bounds",
    "residual_path_factors",
    "steep_interval",
    "steep_interval_derivation",
    "steep_interval_width",
    "verify_chain_identity",
    "verify_derivative_bound",
]

_EPS = float(np.finfo(np.float64).eps)


def _scalar_params(net, params, fn):
    from symgrad.numeric import forward

    if not isinstance(net, Chain):
        raise InvalidArgument("%s: net must be a symgrad chain (symgrad.chain(depth)), not %r" % (fn, net))
    for k, v in params.items() if hasattr(params, "items") else ():
        if np.ndim(v) != 0:
            raise InvalidArgument("%s: parameter %r is batched (shape %s); pass one network's parameters (scalars)" % (fn, k, np.shape(v)))
    return forward(net, params)


def _factor_parts(net: Chain, params):
    """(values, log|w_{j+1}|, log|φ'(z_j)|, signs, z, φ'(z_j)) for j = 1..L−1, from the forward pass that
    backprop's log-space kernel also runs (the same z's, bit for bit).  Signs come from the
    exact sign of φ' (``grad_sign``), so a factor that underflows to 0 in linear space keeps its
    sign; only a true zero (w = 0, a dead ReLU) has sign 0 and log −inf."""
    from symgrad.numeric.logspace import grad_sign

    loc = _scalar_params(net, params, "chain_factors")
    L = net.depth
    z = np.array([float(loc["z%d" % j]) for j in range(1, L)], dtype=np.float64)
    w = np.array([float(params["w%d" % (j + 1)]) for j in range(1, L)], dtype=np.float64)
    acts = net.activations
    grads = np.array([float(acts[j - 1].grad(np.array(z[j - 1]))) for j in range(1, L)], dtype=np.float64)
    logg = np.array([float(acts[j - 1].log_abs_grad(np.array(z[j - 1]))) for j in range(1, L)], dtype=np.float64)
    gsign = np.array([float(grad_sign(acts[j - 1], np.array(z[j - 1]), np.array(grads[j - 1]))) for j in range(1, L)],
                     dtype=np.float64)
    gsign = np.where(np.isfinite(logg), gsign, 0.0)  # log|φ'| = −inf exactly where φ' = 0 exactly
    with np.errstate(divide="ignore", over="ignore", under="ignore"):
        vals = w * grads
        logw = np.where(w != 0, np.log(np.where(w != 0, np.abs(w), 1.0)), -np.inf)
    return vals, logw, logg, np.sign(w) * gsign, z, grads


def chain_factors(net: Chain, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The factors ``w_{j+1} φ'(z_j)`` (j = 1..L−1) of a chain at ``params``, as
    ``(values, log|values|, signs)``; logs are sums ``log|w| + log|φ'|`` (finite where the
    product underflows) and the signs are exact (nonzero where the value underflows to 0).

    >>> import symgrad
    >>> net = symgrad.chain(3)
    >>> p = symgrad.sample(net, value={"w1": 1.0, "w2": 100.0, "w3": 100.0, "b1": 0.0, "b2": -50.0, "b3": 0.0, "a0": 0.0, "y": 0.0})
    >>> float(chain_factors(net, p)[0][1])   # z2 = 100·σ(0) − 50 = 0: w3 σ'(0) = 25
    25.0
    """
    vals, logw, logg, signs, _, _ = _factor_parts(net, params)
    return vals, logw + logg, signs


# ---------------------------------------------------------------------------------------------
# 1. Derivative ranges
# ---------------------------------------------------------------------------------------------


def _set_bounds(rng: sympy.Set):
    """(lo, lo_open, hi, hi_open) of an Interval or Union of intervals and points."""
    return (float(rng.inf), bool(rng.left_open) if isinstance(rng, sympy.Interval) else False,
            float(rng.sup), bool(rng.right_open) if isinstance(rng, sympy.Interval) else False)


def _real(fn: str, name: str, value) -> float:
    """``value`` as a finite float: a real number (int, float, Fraction, NumPy or SymPy number),
    never a string or a bool; anything else is an InvalidArgument naming it."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise InvalidArgument("%s: %s=%r must be a real number, e.g. %s=1.0" % (fn, name, value, name))
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument("%s: %s=%r must be a real number, e.g. %s=1.0" % (fn, name, value, name)) from None
    if not math.isfinite(f):
        raise InvalidArgument("%s: %s=%r must be finite" % (fn, name, value))
    return f


def _reals(fn: str, name: str, value) -> np.ndarray:
    """``value`` as a 1-D float64 array of finite reals; strings and non-numeric arrays refused."""
    if isinstance(value, (str, bytes)):
        raise InvalidArgument("%s: %s=%r must be a number or an array of numbers, e.g. [0.0, 1.0]" % (fn, name, value))
    try:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError
        out = np.atleast_1d(arr.astype(np.float64))
    except (TypeError, ValueError):
        raise InvalidArgument("%s: %s=%r must be a number or an array of numbers, e.g. [0.0, 1.0]" % (fn, name, value)) from None
    if not np.all(np.isfinite(out)):
        raise InvalidArgument("%s: %s must be finite; got %r" % (fn, name, out[~np.isfinite(out)][0]))
    return out


def assert_derivative_in_range(activation, z) -> None:
    """φ'(z) lies in the activation's range of φ' and below its exact sup, for every z given.

    * finite ranges are checked exactly (``relu' ∈ {0, 1}``, ``leaky_relu' ∈ {α, 1}``);
    * interval ranges to a few ulps (``0 < σ' ≤ 1/4``, ``0 < tanh' ≤ 1``); an open lower end 0
      is checked as ``log|φ'(z)| > −inf``, so that it also holds where φ' underflows;
    * ``|φ'(z)| ≤ sup`` with the catalogue's (or the derived) sup.

    >>> assert_derivative_in_range("sigmoid", [-3.0, 0.0, 40.0])
    """
    act = _activation(activation)
    zs = _reals("assert_derivative_in_range", "z", z)
    bound = act.bound
    if not bound.known:
        raise InvalidArgument("assert_derivative_in_range: %s has no known sup of |φ'| (%s)" % (act.name, bound.note))
    g = act.grad(zs)
    logg = act.log_abs_grad(zs)
    sup = float(bound.sup)
    # A φ' kernel is within 4 ulps of the exact value, so |φ'(z)| ≤ sup·(1 + 4ε); piecewise-constant
    # φ' (a finite range: relu, leaky_relu) is exact and gets no allowance.
    slack = 0.0 if isinstance(bound.range, sympy.FiniteSet) else 4 * _EPS * sup
    bad = np.abs(g) > sup + slack
    if bad.any():
        i = int(np.argmax(bad))
        raise GradientCheckError("%s'(z) = %.17g at z = %.17g exceeds sup|%s'| = %s" % (act.name, g[i], zs[i], act.name, bound.sup))
    rng = bound.range
    if rng is None:
        return
    if isinstance(rng, sympy.FiniteSet):
        allowed = np.array([float(v) for v in rng], dtype=np.float64)
        bad = ~np.isin(g, allowed)
        if bad.any():
            i = int(np.argmax(bad))
            raise GradientCheckError("%s'(z) = %.17g at z = %.17g is not in the range %s" % (act.name, g[i], zs[i], rng))
        return
    lo, lo_open, hi, hi_open = _set_bounds(rng)
    tol = 4 * _EPS * max(abs(lo), abs(hi))  # 4 ulps of any value in the range, as above
    bad = (g < lo - tol) | (g > hi + tol)
    if bad.any():
        i = int(np.argmax(bad))
        raise GradientCheckError("%s'(z) = %.17g at z = %.17g is outside the range %s" % (act.name, g[i], zs[i], rng))
    if lo == 0.0 and lo_open:
        bad = ~(logg > -np.inf)
        if bad.any():
            i = int(np.argmax(bad))
            raise GradientCheckError("%s'(z) at z = %.17g is 0 (log|φ'| = -inf), but the range %s excludes 0" % (act.name, zs[i], rng))


@dataclass(frozen=True)
class DerivativeBoundCheck:
    """What :func:`verify_derivative_bound` proved: the sup, where it is attained, and how."""

    activation: str
    sup: sympy.Expr
    attained_at: sympy.Set
    method: str


#: Entries each exact-check cache keeps (least recently used dropped first).
CACHE_SIZE = 256


@lru_cache(maxsize=CACHE_SIZE)
def _verify_bound_cached(act: Activation) -> DerivativeBoundCheck:
    bound = act.bound
    if not bound.known:
        raise InvalidArgument("verify_derivative_bound: %s has no known sup (%s)" % (act.name, bound.note))
    z = sympy.Symbol("z", real=True)
    d = act.derivative_at(z)
    if isinstance(bound.range, sympy.FiniteSet):
        # Piecewise-constant φ' (relu, leaky_relu): the value on each side of the kink.
        vals = {d.subs(z, v).doit() for v in (-1, 0, 1)}
        if not vals <= set(bound.range) or max(abs(v) for v in vals) != bound.sup:
            raise GradientCheckError("%s: φ' takes %s at z = -1, 0, 1; catalogue range %s, sup %s" % (act.name, vals, bound.range, bound.sup))
        return DerivativeBoundCheck(act.name, bound.sup, bound.attained_at, "φ' is piecewise constant with values %s" % sorted(vals))
    if act.bound_certificate is not None:
        # sup − φ' is a perfect square (s − c)² in s = base(z) (σ(z), tanh(z)), zero only where base(z) = c.
        base, centre = act.bound_certificate
        base = base.xreplace({_z: z})
        s = sympy.Symbol("s", real=True)
        poly = sympy.factor(sympy.expand(bound.sup - d.xreplace({base: s})))
        if sympy.expand(poly - (s - centre) ** 2) != 0:
            raise GradientCheckError("%s: sup − φ' = %s is not (s − %s)²" % (act.name, poly, centre))
        where = sympy.solveset(sympy.Eq(base.rewrite(sympy.exp), centre), z, sympy.S.Reals)
        if where != bound.attained_at:
            raise GradientCheckError("%s: φ' = sup exactly at %s, catalogue says %s" % (act.name, where, bound.attained_at))
        return DerivativeBoundCheck(act.name, bound.sup, where, "sup − φ' = (%s − %s)² ≥ 0" % (base, centre))
    # General case: SymPy's own extrema of φ' (elementary form) against the catalogue.
    from symgrad._budget import BudgetExceeded, within_budget

    de = d.rewrite(sympy.exp) if d.has(_sigmoid) else d
    try:
        hi, lo = within_budget(lambda: (sympy.calculus.util.maximum(de, z, sympy.S.Reals),
                                        sympy.calculus.util.minimum(de, z, sympy.S.Reals)),
                               seconds=20, what="SymPy's maximum and minimum of %s'" % act.name)
        sup = sympy.Max(sympy.Abs(hi), sympy.Abs(lo))
        differs = within_budget(lambda: sympy.simplify(sup - bound.sup) != 0, seconds=10,
                                what="simplifying SymPy's sup of |%s'| against the catalogue's" % act.name)
    except (NotImplementedError, ValueError, TypeError):
        return _verify_at_attained(act, z, d)
    except BudgetExceeded as exc:
        return _verify_at_attained(act, z, d, why=exc.reason)
    if differs:
        raise GradientCheckError("%s: SymPy derives sup|φ'| = %s, catalogue says %s" % (act.name, sup, bound.sup))
    return DerivativeBoundCheck(act.name, sup, bound.attained_at, "SymPy maximum/minimum of φ' over the reals")


def _verify_at_attained(act, z, d, why="SymPy cannot find the extrema") -> DerivativeBoundCheck:
    """Where SymPy cannot find the extrema (ELU's Piecewise, GELU's erf, SiLU's transcendental
    critical point): confirm |φ'| = sup at the catalogue's attaining points, to 25 digits, and
    that φ'' vanishes there unless it is a kink or an end of an interval of maxima."""
    bound = act.bound
    pts = bound.attained_at
    if isinstance(pts, sympy.FiniteSet):
        points = list(pts)
    elif isinstance(pts, sympy.Interval):
        points = [pts.inf + 1 if pts.sup is sympy.oo else (pts.inf + pts.sup) / 2]
    else:
        raise GradientCheckError("%s: SymPy cannot derive sup|φ'| and the catalogue gives no attaining point (%s)" % (act.name, pts))
    for p in points:
        val = sympy.Abs(d.xreplace({z: p}).doit())
        err = sympy.N(val - bound.sup, 40)
        if abs(err) > sympy.Float("1e-25"):
            raise GradientCheckError("%s: |φ'(%s)| = %s but the catalogue's sup is %s" % (act.name, p, sympy.N(val, 30), bound.sup))
        if isinstance(pts, sympy.FiniteSet) and not d.has(sympy.Piecewise, sympy.Heaviside):
            slope = sympy.N(sympy.diff(d, z).xreplace({z: p}), 40)
            if abs(slope) > sympy.Float("1e-25"):
                raise GradientCheckError("%s: φ''(%s) = %s ≠ 0, so %s is not an extremum of φ'" % (act.name, p, slope, p))
    return DerivativeBoundCheck(act.name, bound.sup, pts, "|φ'| = sup at %s to 25 digits (%s)" % (sympy.Tuple(*points), why))


def verify_derivative_bound(activation) -> DerivativeBoundCheck:
    """Symbolically confirm the catalogue's sup of |φ'| (cached per activation).

    Sigmoid and tanh by an identity (``1/4 − σ' = (σ − 1/2)²``, ``1 − tanh' = tanh²``, so the sup
    is attained only at z = 0); piecewise-constant φ' by its values; others by SymPy's
    ``maximum``/``minimum`` under a time budget (slow: a few seconds; mark such tests ``slow``).

    >>> verify_derivative_bound("sigmoid").attained_at
    {0}
    """
    return _verify_bound_cached(_activation(activation))


# ---------------------------------------------------------------------------------------------
# 2-4. Chains: decay, explosion, the product identity
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChainGrads:
    """What the chain checks read from :func:`symgrad.backprop`: log|∂C/∂b_1|, log|∂C/∂b_L| and
    their signs (log space), the linear ∂C/∂b_j for j = 1..L, and whether every linear gradient
    (w's too) is finite (else backprop may have redone the block from log space)."""

    l1: float
    lL: float
    s1: float
    sL: float
    deltas: tuple
    finite: bool


def _log_grads(net, params) -> _ChainGrads:
    from symgrad.numeric import backprop

    res = backprop(net, params, log_space=True)
    L = net.depth
    deltas = tuple(float(res.grads["b%d" % j]) for j in range(1, L + 1))
    finite = all(math.isfinite(float(v)) for v in res.grads.values())
    return _ChainGrads(float(res.log_abs["b1"]), float(res.log_abs["b%d" % L]), float(res.sign["b1"]),
                       float(res.sign["b%d" % L]), deltas, finite)


def _log_tol(L, *terms) -> float:
    """Rounding allowance for comparing two evaluations of a sum of log-terms (the two sides of
    ``log|∂C/∂b_1| − log|∂C/∂b_L| = Σ_j (log|w_{j+1}| + log|φ'(z_j)|)``), from the error analysis:

    * both sides use the same z's (:func:`symgrad.forward` and backprop's log-space kernel run
      the same forward pass), so each term differs only by its kernel's rounding: at most
      4 ulps each way, 8ε·|t| in all, should a vectorised and a scalar code path differ;
    * summing n terms, in any order, errs by at most (n − 1)·u·Σ|t| (u = ε/2; Higham, Accuracy
      and Stability, §4.2); the two sides hold at most 2L + 1 terms between them: ≤ L·ε·Σ|t|;
    * ``l1 − lL`` rounds once more: u·(|l1| + |lL|).

    That is (L + 9)·ε·Σ|t| to first order; doubled for the second-order terms.  ``terms`` are
    arrays of the individual terms (log|w|, log|φ'|, l1, lL, …); infinite ones are skipped.
    A wrong factor moves the difference by O(1): at depth 10⁴ with |t| ~ 10 the tolerance is
    ~4e-7."""
    mass = 0.0
    for t in terms:
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        mass += float(np.sum(np.abs(t[np.isfinite(t)])))
    return 2 * (L + 9) * _EPS * mass


def _premise_gap(L) -> float:
    """The premise is checked on the linear factors fl(w·φ'(z)), the conclusion on sums of
    log|w| + log|φ'(z)|.  φ' and log|φ'| are different kernels, each within 4 ulps of the exact
    value (where φ' is well conditioned), and the product rounds once: log of a factor that
    passed ``≤ rate`` may exceed log(rate) by 9ε, for each of the L − 1 factors."""
    return 9 * (L - 1) * _EPS


def assert_vanishing(net: Chain, params, *, rate: float) -> None:
    """If every factor ``|w_{j+1} φ'(z_j)| ≤ rate < 1``, then ``|∂C/∂b_1| ≤ rate^{L−1} |∂C/∂b_L|``.

    Checked in log space (``log|∂C/∂b_1| ≤ (L−1) log r + log|∂C/∂b_L|``), so it holds at any depth,
    to the rounding allowance of :func:`_log_tol` (no more).  Raises
    :class:`~symgrad.InvalidArgument` if a factor exceeds ``rate`` (the premise fails).

    >>> import symgrad
    >>> net = symgrad.chain(3)   # sigmoid: |w| ≤ 1 gives every factor ≤ 1/4
    >>> p = symgrad.sample(net, init="uniform", seed=1)
    >>> assert_vanishing(net, p, rate=0.25)
    """
    rate = _check_rate("assert_vanishing", rate, below_one=True)
    vals, logw, logg, _, _, _ = _factor_parts(net, params)
    over = np.abs(vals) > rate
    if over.any():
        j = int(np.argmax(over)) + 1
        raise InvalidArgument("assert_vanishing: the premise fails: |w%d φ'(z%d)| = %.17g > rate = %r" % (j + 1, j, abs(vals[j - 1]), rate))
    L = net.depth
    g = _log_grads(net, params)
    logr = (L - 1) * math.log(rate)
    bound = logr + g.lL  # −inf where ∂C/∂b_L = 0: then ∂C/∂b_1 must be 0 too
    tol = _log_tol(L, logw, logg, [g.l1, g.lL, logr]) + _premise_gap(L)
    if not g.l1 <= bound + tol:
        raise GradientCheckError(
            "vanishing bound violated: |∂C/∂b1| = %.17g (log %.17g) > rate^(L-1)·|∂C/∂b%d| = %r^%d · %.17g (log %.17g, "
            "rounding allowance %.3g)" % (g.deltas[0], g.l1, L, rate, L - 1, g.deltas[-1], bound, tol))


def assert_exploding(net: Chain, params, *, rate: float) -> None:
    """If every factor ``|w_{j+1} φ'(z_j)| ≥ rate > 1``, then ``|∂C/∂b_1| ≥ rate^{L−1} |∂C/∂b_L|``.

    Nielsen's construction (w = 100, b_j = −w_j a_{j−1} so z_j = 0, sigmoid) gives exactly 25
    per layer.  Checked in log space, to the rounding allowance of :func:`_log_tol`; raises
    :class:`~symgrad.InvalidArgument` if a factor is below ``rate``.

    >>> import symgrad
    >>> net = symgrad.chain(3)
    >>> p = symgrad.sample(net, value={"w1": 1.0, "w2": 100.0, "w3": 100.0, "b1": 0.0, "b2": -50.0, "b3": 0.0, "a0": 0.0, "y": 0.0})
    >>> assert_exploding(net, p, rate=25.0)
    """
    rate = _check_rate("assert_exploding", rate, below_one=False)
    vals, logw, logg, _, _, _ = _factor_parts(net, params)
    under = np.abs(vals) < rate
    if under.any():
        j = int(np.argmax(under)) + 1
        raise InvalidArgument("assert_exploding: the premise fails: |w%d φ'(z%d)| = %.17g < rate = %r" % (j + 1, j, abs(vals[j - 1]), rate))
    L = net.depth
    g = _log_grads(net, params)
    logr = (L - 1) * math.log(rate)
    bound = logr + g.lL  # −inf where ∂C/∂b_L = 0, which any ∂C/∂b_1 satisfies
    tol = _log_tol(L, logw, logg, [g.l1, g.lL, logr]) + _premise_gap(L)
    if not g.l1 >= bound - tol:
        raise GradientCheckError(
            "exploding bound violated: |∂C/∂b1| = %.17g (log %.17g) < rate^(L-1)·|∂C/∂b%d| = %r^%d · %.17g (log %.17g, "
            "rounding allowance %.3g)" % (g.deltas[0], g.l1, L, rate, L - 1, g.deltas[-1], bound, tol))


def _check_rate(fn, rate, *, below_one):
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not math.isfinite(rate) or rate <= 0:
        raise InvalidArgument("%s: rate=%r must be a positive finite number, e.g. rate=%s" % (fn, rate, "0.25" if below_one else "2.0"))
    if below_one and not rate < 1:
        raise InvalidArgument("%s: rate=%r must be < 1 for decay; use assert_exploding for rate > 1" % (fn, rate))
    if not below_one and not rate > 1:
        raise InvalidArgument("%s: rate=%r must be > 1 for explosion; use assert_vanishing for rate < 1" % (fn, rate))
    return float(rate)


def _linear_rtol(L) -> float:
    """Relative allowance for ∂C/∂b_1 / ∂C/∂b_L against Π fl(w_{j+1} φ'(z_j)), where every
    quantity involved is a normal float (u = ε/2): backprop rounds twice per layer (δ·w, ·φ'),
    2(L − 1)u; the product here (L − 1) + (L − 2) times; the quotient once; and the two
    evaluations of each φ'(z_j) (the same kernel at the same z) may differ by 8 ulps = 16u should
    their code paths differ: (20L − 20)u = (10L − 10)ε to first order, so 10·L·ε."""
    return 10 * L * _EPS


def _sign_changes(act) -> bool:
    """φ' takes both signs (SiLU, GELU): near its root no kernel is accurate to a few ulps
    relative, so a linear-space comparison there has no tolerance that error analysis supports."""
    rng = act.bound.range if act.bound.known else None
    if rng is None:
        return True
    return bool(float(rng.inf) < 0 < float(rng.sup))


def assert_chain_identity(net: Chain, params, *, rtol: float | None = None) -> None:
    """``∂C/∂b_1 / ∂C/∂b_L = Π_{j=1}^{L−1} w_{j+1} φ'(z_j)``, checked two ways:

    * in log space, always: ``log|∂C/∂b_1| − log|∂C/∂b_L| = Σ_j (log|w_{j+1}| + log|φ'(z_j)|)`` to
      the rounding of those sums (:func:`_log_tol`), with equal signs (finite at depths of 10⁴ and
      beyond, where the product itself underflows); an exact zero on one side (a dead unit,
      ``a_L = y``, ``w = 0``) must be an exact zero on the other;
    * in linear space, where every gradient, factor and partial product is a normal float (no
      underflow, no subnormal, no overflow) and φ' keeps one sign: to ``rtol`` (default
      ``10·L·ε``, see :func:`_linear_rtol`).

    >>> import symgrad
    >>> net = symgrad.chain(50, "tanh")
    >>> assert_chain_identity(net, symgrad.sample(net, seed=3))
    """
    vals, logw, logg, signs, _, grads = _factor_parts(net, params)
    L = net.depth
    g = _log_grads(net, params)
    expect_zero = g.sL == 0 or bool(np.any(signs == 0))
    if expect_zero or g.s1 == 0:
        if not (expect_zero and g.s1 == 0):
            raise GradientCheckError(
                "chain identity: ∂C/∂b1 = %.17g (sign %+g) but ∂C/∂b%d = %.17g (sign %+g) and the factors w_(j+1) φ'(z_j) "
                "= %s (signs %s): one side is exactly 0 and the other is not" % (g.deltas[0], g.s1, L, g.deltas[-1], g.sL, vals, signs))
        return
    lhs = g.l1 - g.lL
    rhs = float(np.sum(logw + logg))
    tol = _log_tol(L, logw, logg, [g.l1, g.lL])
    if not abs(lhs - rhs) <= tol:
        raise GradientCheckError(
            "chain identity (log space) at depth %d: log|∂C/∂b1| − log|∂C/∂b%d| = %.17g but Σ log|w_(j+1) φ'(z_j)| = %.17g "
            "(difference %.3g, tolerance %.3g)" % (L, L, lhs, rhs, lhs - rhs, tol))
    sign = float(np.prod(signs))
    if g.s1 * g.sL != sign:
        raise GradientCheckError("chain identity: sign(∂C/∂b1 / ∂C/∂b%d) = %+g but the factors' product has sign %+g" % (L, g.s1 * g.sL, sign))
    if L == 1 or any(_sign_changes(a) for a in net.activations[:-1]):
        return
    rtol = _linear_rtol(L) if rtol is None else float(rtol)
    tiny, huge = float(np.finfo(np.float64).tiny), float(np.finfo(np.float64).max)
    w = np.array([float(params["w%d" % (j + 1)]) for j in range(1, L)])
    d = np.array(g.deltas)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        partial = np.cumprod(vals[::-1])  # Π from j = L−1 down, the order backprop multiplies in
        steps = np.abs(d[1:] * w)  # backprop's δ_(j+1)·w_(j+1) before ·φ'(z_j)
        prod = float(partial[-1])
        ratio = d[0] / d[-1]
    normal = lambda x: bool(np.all(np.isfinite(x)) and np.all(np.abs(x) >= tiny) and np.all(np.abs(x) <= huge))  # noqa: E731
    if not (g.finite and normal(d) and normal(vals) and normal(w) and normal(grads) and normal(partial) and normal(steps)
            and normal(ratio)):
        return  # rounding below the normal range has no relative bound: the log-space check above stands
    if not abs(ratio - prod) <= rtol * abs(prod):
        raise GradientCheckError(
            "chain identity at depth %d: ∂C/∂b1 / ∂C/∂b%d = %.17g / %.17g = %.17g but Π w_(j+1) φ'(z_j) = %.17g "
            "(relative error %.3g > rtol %.3g)" % (L, L, d[0], d[-1], ratio, prod, abs(ratio - prod) / abs(prod), rtol))


@lru_cache(maxsize=CACHE_SIZE)
def _verify_identity_cached(depth: int, act: Activation, loss: str) -> sympy.Expr:
    from symgrad.symbolic.build import chain

    net = chain(depth, act, loss)
    g1, gL = net.gradient("b1"), net.gradient("b%d" % depth)
    s, loc = net.symbols, net.local_symbols
    prod = sympy.Mul(*[s["w%d" % (j + 1)] * act.prime(loc["z%d" % j]) for j in range(1, depth)])
    # Both gradients are products of the same atoms; their quotient cancels exactly.
    if sympy.Mul(*g1.factors) != sympy.Mul(*gL.factors) * prod:
        raise GradientCheckError("chain identity (symbolic) fails at depth %d: ∂C/∂b1 = %s, ∂C/∂b%d = %s, product %s"
                                 % (depth, g1.expr, depth, gL.expr, prod))
    return prod


def verify_chain_identity(depth: int, activation="sigmoid", loss="quadratic") -> sympy.Expr:
    """Symbolically: ``∂C/∂b_1 = (Π_{j=1}^{L−1} w_{j+1} φ'(z_j)) · ∂C/∂b_L`` on the closed forms
    (cached).  Returns the product.  Linear in depth: no expression is composed or simplified.

    >>> verify_chain_identity(3)
    w2*w3*sigmoid'(z1)*sigmoid'(z2)
    """
    from symgrad.spec.losses import loss as _loss

    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise InvalidArgument("verify_chain_identity: depth=%r must be a positive int, e.g. depth=4" % (depth,))
    return _verify_identity_cached(depth, _activation(activation), _loss(loss).name)


# ---------------------------------------------------------------------------------------------
# 5. Dense networks
# ---------------------------------------------------------------------------------------------


def dense_delta_bounds(net: Network, params) -> tuple[np.ndarray, np.ndarray]:
    """``(‖δ^l‖, bound_l)`` for l = 1..L, with
    ``bound_l = ‖δ^L‖ · Π_{k=l}^{L−1} sup|φ'_k| · ‖W^{k+1}‖_2`` (spectral norms).

    This is ``δ^l = Σ'(z^l) (W^{l+1})ᵀ δ^{l+1}`` with ``‖Σ'(z^l)‖_2 ≤ sup|φ'_l|``, unrolled.
    Starting from ``δ^L`` rather than ``∇_a C`` covers every loss (for the quadratic loss
    ``‖δ^L‖ ≤ sup|φ'_L| · ‖∇_a C‖``, which :func:`assert_dense_delta_bound` checks too).
    """
    from symgrad.numeric import backprop

    if not isinstance(net, Network):
        raise InvalidArgument("dense_delta_bounds: net must be a symgrad.network(...), not %r" % (net,))
    sups = []
    for l, act in enumerate(net.activations, start=1):
        if not act.bound.known:
            raise InvalidArgument("dense_delta_bounds: layer %d's activation %s has no known sup|φ'| (%s)" % (l, act.name, act.bound.note))
        sups.append(float(act.bound.sup))
    res = backprop(net, params)
    if res.batch is not None:
        raise InvalidArgument("dense_delta_bounds: pass one network's parameters, not a batch of %d" % res.batch)
    L = net.depth
    norms = np.array([float(np.linalg.norm(d)) for d in res.deltas])
    bounds = np.empty(L)
    bounds[L - 1] = norms[L - 1]
    for l in range(L - 1, 0, -1):  # 1-based l = L-1..1, index l-1
        spec = float(np.linalg.norm(np.asarray(params["W%d" % (l + 1)], dtype=np.float64), 2))
        bounds[l - 1] = bounds[l] * sups[l - 1] * spec
    return norms, bounds


_SUBNORMAL = 2.0 ** -1074  # the spacing of float64 below the normal range: an absolute rounding error there


def _dense_tolerances(net: Network, params, bounds, norms):
    """(rtol, atol per layer) for :func:`assert_dense_delta_bound`, from the error analysis
    (u = ε/2, n = the widest layer, L layers):

    * backprop's ``(W^{l+1})ᵀ δ^{l+1}`` errs by at most γ_n |W|ᵀ|δ| (Higham §3.5), whose norm is at
      most n·u·‖|W|‖_2‖δ‖ ≤ n^{3/2}·u·‖W‖_2‖δ‖; ``⊙ φ'`` rounds once, and a φ' kernel may exceed
      the exact sup by 4 ulps (8u);
    * each 2-norm errs by (n + 1)u; the spectral norm (LAPACK's SVD, backward stable) by at most
      8n·u relative; the bound's two products per layer by 2u;

    so per layer ≲ (n^{3/2} + 9n + 12)·u, and rtol = L·(n^{3/2} + 9n + 12)·ε (twice that per layer,
    for the second-order terms).  Where values are subnormal the error is absolute: at most one
    spacing 2⁻¹⁰⁷⁴ per flop (F flops in all), amplified toward layer l by at most the bound's own
    factor Π sup|φ'_k|·‖W^{k+1}‖_2."""
    L, n = net.depth, max(net.widths)
    rtol = L * (n ** 1.5 + 9 * n + 12) * _EPS
    flops = sum(a * b + a for a, b in zip(net.widths[1:], net.widths[:-1])) + sum(net.widths)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        amp = np.where(bounds[-1] > 0, bounds / np.where(bounds[-1] > 0, bounds[-1], 1.0), 1.0)
    atol = 4 * flops * _SUBNORMAL * np.maximum(1.0, np.nan_to_num(amp, nan=1.0, posinf=np.inf))
    return rtol, atol


def assert_dense_delta_bound(net: Network, params, *, rtol: float | None = None) -> None:
    """``‖δ^l‖ ≤ ‖δ^L‖ · Π_{k=l}^{L−1} sup|φ'_k| · ‖W^{k+1}‖_2`` for every layer l, and for the
    quadratic loss ``‖δ^L‖ ≤ sup|φ'_L| · ‖a^L − y‖``.  Tight (equality) for a chain of width-1
    layers with every ``z`` where ``|φ'| = sup`` (z = 0 for sigmoid), so the allowance is only
    the rounding of the computation (``rtol`` default: :func:`_dense_tolerances`).

    >>> import symgrad
    >>> net = symgrad.network([3, 4, 2])
    >>> assert_dense_delta_bound(net, symgrad.sample(net, seed=0))
    """
    from symgrad.numeric import forward

    if rtol is not None and (isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 <= rtol < 1):
        raise InvalidArgument("assert_dense_delta_bound: rtol=%r must be a number in [0, 1), or None for the derived "
                              "rounding allowance" % (rtol,))
    norms, bounds = dense_delta_bounds(net, params)
    derived, atol = _dense_tolerances(net, params, bounds, norms)
    user_rtol = rtol is not None
    rtol = float(rtol) if user_rtol else derived
    for l in range(1, net.depth + 1):
        if not norms[l - 1] <= bounds[l - 1] * (1 + rtol) + atol[l - 1]:
            raise GradientCheckError(
                "dense bound violated at layer %d: ‖δ^%d‖ = %.17g > ‖δ^L‖·Π sup|φ'|·‖W‖_2 = %.17g (relative excess %.3g, "
                "rtol %.3g)" % (l, l, norms[l - 1], bounds[l - 1], norms[l - 1] / bounds[l - 1] - 1 if bounds[l - 1] else math.inf, rtol))
    if net.loss.dcost_is_residual:
        loc = forward(net, params)
        grad_a = float(np.linalg.norm(np.asarray(loc["a%d" % net.depth]) - np.asarray(params["y"])))
        top = float(net.activations[-1].bound.sup) * grad_a
        n = net.widths[-1]
        # δ^L = φ'(z^L) ⊙ (a^L − y): one rounding, a φ' kernel 4 ulps above sup at most, two norms.
        top_rtol = rtol if user_rtol else (2 * n + 12) * _EPS
        if not norms[-1] <= top * (1 + top_rtol) + 4 * n * _SUBNORMAL:
            raise GradientCheckError("dense bound violated at the output: ‖δ^L‖ = %.17g > sup|φ'_L|·‖∇_a C‖ = %.17g" % (norms[-1], top))


# ---------------------------------------------------------------------------------------------
# 6. Where |w σ'(w a + b)| ≥ 1 can hold
# ---------------------------------------------------------------------------------------------


def steep_interval_width(w: float) -> float:
    """Width of the set of ``a`` with ``|w σ'(wa + b)| ≥ 1`` (independent of b): 0-measure
    (``nan``-free: returns ``0.0``) for ``|w| < 4``, else ``(2/|w|)·ln(|w|(1 + √(1 − 4/|w|))/2 − 1)``.

    >>> round(steep_interval_width(100.0), 6)
    0.091697
    """
    w = abs(_real("steep_interval_width", "w", w))
    if w < 4:
        return 0.0
    return (2.0 / w) * math.log(w * (1.0 + math.sqrt(1.0 - 4.0 / w)) / 2.0 - 1.0)


def _width_rounding(u: float) -> float:
    """Relative rounding error of :func:`steep_interval_width` at u = |w| ≥ 4, from its steps
    (ε = 2u₀, u₀ the unit roundoff): q = 1 − 4/u errs by u₀/q relative (cancellation), r = √q by
    half that plus u₀, x = u(1 + r)/2 − 1 by that times (x + 1)/x plus 2u₀, ln x by rel(x)/ln x,
    and the factor 2/u by 2u₀.  Near u = 4 (q → 0, x → 1) it grows without bound: there the
    width itself is ill conditioned."""
    q = 1.0 - 4.0 / u
    if q <= 0:
        return math.inf
    r = math.sqrt(q)
    x = u * (1.0 + r) / 2.0 - 1.0
    lnx = math.log(x) if x > 1 else 0.0
    if lnx <= 0:
        return math.inf
    rel_x = (0.5 / q + 3.0) * (x + 1.0) / x * (_EPS / 2) + _EPS
    return 2 * (rel_x / lnx + 2 * _EPS)  # doubled for the second-order terms


def steep_interval(w: float, b: float) -> tuple[float, float] | None:
    """The interval of ``a`` with ``|w σ'(wa + b)| ≥ 1``, or ``None`` if |w| < 4.  It is centred at
    ``a = −b/w`` (where z = 0) and has width :func:`steep_interval_width`."""
    w, b = _real("steep_interval", "w", w), _real("steep_interval", "b", b)
    if abs(w) < 4:
        return None
    half = steep_interval_width(w) / 2
    c = -b / w
    return (c - half, c + half)


def steep_interval_derivation() -> dict:
    """The exact derivation behind :func:`steep_interval_width`, as SymPy objects (cached).

    With ``u = |w| ≥ 4`` and ``s = σ(z)``: ``σ'(z) = s(1 − s) ≥ 1/u`` ⇔ ``s² − s + 1/u ≤ 0`` ⇔
    ``s ∈ [s₋, s₊]``, ``s± = (1 ± √(1 − 4/u))/2`` (real iff u ≥ 4).  Since σ is increasing and
    ``s₊ = 1 − s₋``, z lies in ``[logit s₋, logit s₊]`` of width ``2 ln(s₊/s₋)``, and
    ``a = (z − b)/w`` scales that by 1/u.  Finally ``s₊/s₋ = (1 + r)²/(1 − r²) = u(1 + r)/2 − 1``
    with ``r = √(1 − 4/u)``.  Returns the roots, the width, and the checks (each ``True``).
    """
    return _steep_derivation()


@lru_cache(maxsize=1)  # no arguments: one value, computed once
def _steep_derivation() -> dict:
    u = sympy.Symbol("u", positive=True)
    s = sympy.Symbol("s", positive=True)
    r = sympy.sqrt(1 - 4 / u)
    roots = sympy.solve(sympy.Eq(u * s * (1 - s), 1), s)
    s_minus, s_plus = (1 - r) / 2, (1 + r) / 2
    logit = lambda p: sympy.log(p / (1 - p))  # noqa: E731
    width_z = logit(s_plus) - logit(s_minus)
    width_a = width_z / u
    closed = (2 / u) * sympy.log(u * (1 + r) / 2 - 1)
    checks = {
        "roots": {sympy.simplify(x) for x in roots} == {sympy.simplify(s_minus), sympy.simplify(s_plus)},
        "symmetric": sympy.simplify(s_plus - (1 - s_minus)) == 0,
        "width": sympy.simplify(sympy.expand_log(width_a - closed, force=True)) == 0
        or sympy.simplify((s_plus / s_minus) - (u * (1 + r) / 2 - 1)) == 0,
        "real_iff_u_ge_4": sympy.solveset(1 - 4 / u >= 0, u, sympy.Interval.open(0, sympy.oo)) == sympy.Interval(4, sympy.oo),
    }
    z = sympy.Symbol("z", real=True)
    sig = _activation("sigmoid")
    dsig = sig.derivative_at(z).xreplace({_sigmoid(z): s})  # the catalogue's σ', in s = σ(z): s(1 − s)
    checks["peak"], peak = _peak_threshold(dsig, s, u, sig.bound.sup)
    return {"u": u, "s_minus": s_minus, "s_plus": s_plus, "width": closed, "width_z": width_z, "peak": peak,
            "checks": checks}


def _peak_threshold(dphi, s, u, sup):
    """The step ``|w σ'| ≥ 1 needs |w| ≥ 4``, computed: σ' as a polynomial ``dphi`` in s = σ(z) ∈ (0, 1)
    has one critical point s*, ``dphi(s*) − dphi = (s − s*)²`` (so it is the maximum, over every
    s), that maximum equals the catalogue's ``sup``, and ``u·max ≥ 1`` holds for u > 0 exactly
    when u ≥ 4.  Returns (all of that holds, the maximum)."""
    crit = [c for c in sympy.solve(sympy.diff(dphi, s), s) if c.is_real and 0 < c < 1]
    if len(crit) != 1:
        return False, None
    peak = sympy.nsimplify(dphi.subs(s, crit[0]))
    square = sympy.expand(peak - dphi - (s - crit[0]) ** 2) == 0
    threshold = sympy.solveset(u * peak - 1 >= 0, u, sympy.Interval.open(0, sympy.oo)) == sympy.Interval(4, sympy.oo)
    return bool(square and peak == sup and threshold), peak


def assert_steep_interval(w: float, b: float, a) -> None:
    """Every ``a`` given with ``|w σ'(wa + b)| ≥ 1`` lies in :func:`steep_interval` (so the ``a``
    that qualify span at most :func:`steep_interval_width`); none qualifies if |w| < 4.

    >>> assert_steep_interval(100.0, 3.0, [-0.03, -0.02, 0.5])
    """
    from symgrad.spec.activations import activation

    sig = activation("sigmoid")
    w, b = _real("assert_steep_interval", "w", w), _real("assert_steep_interval", "b", b)
    av = _reals("assert_steep_interval", "a", a)
    with np.errstate(over="ignore", invalid="ignore"):
        steep = np.abs(w * sig.grad(w * av + b)) >= 1.0
    if not steep.any():
        return
    # |w σ'(z)| ≥ 1 as computed (σ' within 4 ulps, the product rounded once) implies the exact
    # |w|·(1 + η)·σ'(z) ≥ 1 with η = 6ε: the computed steep set lies in the exact interval for
    # |w|(1 + η), whose width is continuous in |w| (and 0 at |w| = 4: near there the set is ill
    # conditioned, and this widening is what rounding can do, no more).  z = wa + b rounds by
    # u(|wa| + |b|) twice at most, which moves a by ε(|a| + |b/w|); the ends ±half around
    # c = −b/w round by ε(|c| + half).
    u = abs(w) * (1 + 6 * _EPS)
    if u < 4:
        i = int(np.argmax(steep))
        raise GradientCheckError("|w σ'(wa + b)| = %.17g ≥ 1 at a = %.17g with |w| = %.17g < 4" % (abs(w * sig.grad(np.array(w * av[i] + b))), av[i], abs(w)))
    # The z-interval for u, mapped to a by the actual 1/|w|: width(u)·u/|w|, plus the float
    # formula's own rounding (_width_rounding).
    wide = steep_interval_width(u) * (1 + 6 * _EPS)
    wide *= 1 + _width_rounding(u)
    c, half = -b / w, wide / 2
    slack = _EPS * (float(np.max(np.abs(av[steep]))) + abs(c)) + _EPS * (abs(c) + half)
    lo, hi = c - half - slack, c + half + slack
    outside = steep & ((av < lo) | (av > hi))
    if outside.any():
        i = int(np.argmax(outside))
        w_lo, w_hi = steep_interval(w, b) if abs(w) >= 4 else (c, c)
        raise GradientCheckError("a = %.17g has |w σ'(wa + b)| ≥ 1 (w = %.17g, b = %.17g) but lies outside [%.17g, %.17g] "
                                 "(width %.17g, rounding allowance %.3g)" % (av[i], w, b, w_lo, w_hi, steep_interval_width(w), slack))


# ---------------------------------------------------------------------------------------------
# 7. A user's gradient function
# ---------------------------------------------------------------------------------------------


def assert_gradient_fn(net, params, grad_fn, *, wrt=None, rtol=None, atol=None, loss=None):
    """``grad_fn(params) -> {name: gradient}`` agrees with the closed form (and backprop and
    finite differences), as one assertion; returns the :class:`~symgrad.testing.GradientCheckReport`.
    On a mismatch raises :class:`~symgrad.GradientCheckError` naming the parameter and values.

    A PyTorch ``nn.Sequential`` as ``net`` is its own gradient function: call
    ``assert_gradient_fn(module, inputs, targets, loss="quadratic")``, and the module's autograd
    gradients are checked parameter by parameter, named by ``state_dict`` key
    (:func:`~symgrad.testing.check_gradients` on a module).

    >>> import symgrad
    >>> net = symgrad.chain(1)
    >>> def mine(p):   # ∂C/∂b1 = σ'(z)(a − y), ∂C/∂w1 = a0 ∂C/∂b1
    ...     import math
    ...     s = 1 / (1 + math.exp(-(p["w1"] * p["a0"] + p["b1"])))
    ...     g = s * (1 - s) * (s - p["y"])
    ...     return {"w1": p["a0"] * g, "b1": g}
    >>> assert_gradient_fn(net, symgrad.sample(net, seed=0), mine).ok
    True
    """
    from symgrad.testing.gradcheck import check_gradients

    if is_torch_module(net):  # the third argument is the targets
        return check_gradients(net, params, grad_fn, wrt=wrt, rtol=rtol, atol=atol, loss=loss, raise_on_failure=True)
    if not callable(grad_fn):
        raise InvalidArgument("assert_gradient_fn: grad_fn=%r must be callable as grad_fn(params) -> {name: gradient}" % (grad_fn,))
    return check_gradients(net, params, wrt=wrt, grad_fn=grad_fn, rtol=rtol, atol=atol, loss=loss, raise_on_failure=True)


# ---------------------------------------------------------------------------------------------
# 8. Residual chains: the path product cannot vanish faster than (1 − r)^{L−j}
# ---------------------------------------------------------------------------------------------


def _scalar(fn: str, params, name: str) -> float:
    try:
        v = params[name]
    except (KeyError, TypeError):
        raise InvalidArgument("%s: params has no value for %r; pass every parameter, a0 and each symbolic α by name" % (fn, name)) from None
    if isinstance(v, bool) or np.ndim(v) != 0:
        raise InvalidArgument("%s: %s=%r must be one real number (no batch)" % (fn, name, v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InvalidArgument("%s: %s=%r must be a real number" % (fn, name, v)) from None
    if not math.isfinite(f):
        raise InvalidArgument("%s: %s=%r must be finite" % (fn, name, v))
    return f


def residual_path_factors(net: Chain, params) -> np.ndarray:
    """The factors ``t_k = α_k w_k φ'_k(z_k)`` (k = 1..L) of a chain whose every layer is residual
    (``a_k = a_{k−1} + α_k φ_k(z_k)``), so that the path product of Theorem 18 is
    ``P_j = Π_{k=j+1}^{L} (1 + t_k)``.  The forward pass runs here in float64 with symgrad's own
    kernels; ``params`` holds the scalars ``w1..wL``, ``b1..bL``, ``a0`` and each symbolic α by its
    name.  :class:`~symgrad.InvalidArgument` for a plain layer, a missing or non-finite value.

    >>> import symgrad
    >>> net = symgrad.chain(2, "tanh", residual=0.5)
    >>> residual_path_factors(net, {"w1": 1.0, "w2": 0.5, "b1": 0.0, "b2": 0.0, "a0": 0.0}).tolist()  # z = 0: tanh' = 1
    [0.5, 0.25]
    """
    fn = "residual_path_factors"
    if not isinstance(net, Chain):
        raise InvalidArgument("%s: net must be a residual chain, e.g. symgrad.chain(8, 'tanh', residual=0.5), not %r" % (fn, net))
    plain = [l for l, r in enumerate(net.residual, start=1) if r is None]
    if plain:
        raise InvalidArgument("%s: layer %d of %r is plain; the path product (1 + α w φ') needs every layer residual" % (fn, plain[0], net))
    a = _scalar(fn, params, "a0")
    out = np.empty(net.depth, dtype=np.float64)
    with np.errstate(over="ignore"):
        for k, (act, alpha) in enumerate(zip(net.activations, net.residual), start=1):
            al = _scalar(fn, params, alpha.name) if isinstance(alpha, sympy.Symbol) else float(alpha)
            w = _scalar(fn, params, "w%d" % k)
            zk = np.array(w * a + _scalar(fn, params, "b%d" % k))
            v, d = act.value(zk), act.grad(zk)
            out[k - 1] = al * w * float(d)
            a = a + al * float(v)
            if not (math.isfinite(a) and math.isfinite(out[k - 1])):
                raise InvalidArgument("%s: the forward pass overflows at layer %d (a_%d = %r); use smaller weights or α" % (fn, k, k, a))
    return out


def assert_residual_path_bounds(net: Chain, params, *, rate: float) -> None:
    """Theorem 18: if every factor ``|α_k w_k φ'_k(z_k)| ≤ rate = r < 1``, then for every
    j = 0..L−1 the path product ``P_j = Π_{k=j+1}^{L} (1 + α_k w_k φ'_k(z_k))`` obeys
    ``(1 − r)^{L−j} ≤ |P_j| ≤ (1 + r)^{L−j}``: a residual chain's path cannot shrink faster than
    (1 − r)^{depth}, where a plain chain's ``Π w_k φ'(z_k)`` can shrink as r^{depth}.

    Checked in log space (``Σ_k log1p(t_k)`` against ``(L − j) log1p(∓r)``), so at any depth,
    to a rounding allowance from the error analysis: each ``t_k = α w φ'(z)`` is within 7ε|t_k|
    of its exact value (φ' within 4 ulps; two products and α's own rounding), which moves
    ``log1p(t_k)`` by at most 7ε|t_k|/(1 − r); log1p itself errs by ε|log1p(t_k)|; summing n
    terms adds (n − 1)(ε/2)Σ|log1p(t_k)| (Higham, §4.2), and the premise, checked on the rounded
    t_k, may hide the same 7ε|t_k| on each side of r.  Raises :class:`~symgrad.InvalidArgument`
    when the premise fails (a factor above ``rate``) and :class:`~symgrad.GradientCheckError`
    when a bound does not hold.  The α of a symbolic layer is ``params[alpha.name]``.

    >>> import symgrad
    >>> net = symgrad.chain(3, "tanh", residual=0.5)
    >>> assert_residual_path_bounds(net, {"w1": 0.4, "w2": -0.8, "w3": 1.0, "b1": 0.1, "b2": 0.0, "b3": -0.3, "a0": 0.5}, rate=0.5)
    """
    fn = "assert_residual_path_bounds"
    rate = _check_rate(fn, rate, below_one=True)
    t = residual_path_factors(net, params)
    over = np.abs(t) > rate
    if over.any():
        k = int(np.argmax(over)) + 1
        raise InvalidArgument("%s: the premise fails: |α_%d w%d φ'(z%d)| = %.17g > rate = %r" % (fn, k, k, k, abs(t[k - 1]), rate))
    L = net.depth
    logs = np.log1p(t)
    per = 7 * _EPS * np.abs(t) / (1 - rate) + _EPS * np.abs(logs)  # one factor's error in log1p(t_k)
    lo1, hi1 = math.log1p(-rate), math.log1p(rate)
    gap = 7 * _EPS * rate / (1 - rate)  # the premise on rounded t_k: the exact t_k may exceed r by this much, in log1p
    for j in range(L):
        n = L - j
        tail = logs[j:]
        logp = float(np.sum(tail))
        mass = float(np.sum(np.abs(tail)))
        tol = 2 * (float(np.sum(per[j:])) + n * _EPS / 2 * mass + n * gap + _EPS * n * (abs(lo1) + hi1))
        if not n * lo1 - tol <= logp <= n * hi1 + tol:
            raise GradientCheckError(
                "residual path bound violated at j = %d: log|P_%d| = %.17g is outside [%d·log(1 − r), %d·log(1 + r)] = [%.17g, %.17g] "
                "for r = %r (rounding allowance %.3g)" % (j, j, logp, n, n, n * lo1, n * hi1, rate, tol))
