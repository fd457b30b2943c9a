"""The typical case at random initialisation: mean-field signal propagation.

A wide dense network with weights ``W_ij ~ N(0, σ_w²/n_in)`` and biases ``b_i ~ N(0, σ_b²)``
propagates the second moment of its pre-activations by the *length map* (Poole et al. 2016,
eq. 3; Schoenholz et al. 2017, eq. 3)::

    q^l = σ_w² E[φ(√q^{l−1} Z)²] + σ_b²,      Z ~ N(0, 1),

whose stable fixed point is ``q*``.  Backpropagated gradients grow or shrink per layer by (ibid.
eq. 5 and §5; Nielsen's "speed of learning" by layer at initialisation)::

    χ₁ = σ_w² E[φ'(√q* Z)²],      E‖δ^l‖² / E‖δ^L‖² ≈ χ₁^{L−l},

so χ₁ < 1 is the *ordered* phase (gradients vanish), χ₁ > 1 the *chaotic* one (they explode),
and χ₁ = 1 the critical line.  The depth scales are ``ξ_q = −1/ln(σ_w² dM/dq)`` at q*,
``ξ_c = −1/ln(σ_w² E[φ'(u₁)φ'(u₂)])`` at the correlation fixed point c*, and
``ξ_∇ = −1/ln χ₁`` (Schoenholz et al. 2017, eqs. 8, 9 and 15).

Every answer is a :class:`MeanFieldValue`: exact (a SymPy expression, ``error == 0``) where a
closed form exists — ReLU and leaky ReLU (``E[φ(√q Z)²] = (1 + α²) q / 2``), the identity,
``a·erf(b z)`` (``E[erf(b√q Z)²] = (2/π) asin(2b²q/(1 + 2b²q))``, Williams 1997), and any
activation through the origin at ``q* = 0`` (``χ₁ = σ_w² (φ'(0⁺)² + φ'(0⁻)²)/2``) — and
otherwise a float with an estimated absolute error from Gauss–Legendre quadrature on pieces
split at the activation's kinks (two resolutions compared; the Gaussian tail beyond |Z| = 38 is
below 1e-300 of the mass).  A single-neuron chain is not wide, so mean field does not apply to
it: :func:`growth_rate` measures its Lyapunov exponent ``λ = E log|w φ'(z)|`` by Monte Carlo.

>>> from symgrad.theory import meanfield
>>> meanfield.chi1("relu", 2, 0).exact
1
>>> meanfield.critical_sigma_w2("tanh").exact
1
>>> meanfield.phase("tanh", 0.5, 0)
'ordered'
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np
import sympy

from symgrad.spec.activations import Activation, activation as _activation, leaky_relu as _leaky_relu, relu as _relu, z as _z
from symgrad.errors import InvalidArgument

__all__ = [
    "MeanFieldValue",
    "FixedPoint",
    "DepthScales",
    "GrowthRate",
    "length_map",
    "q_star",
    "chi1",
    "depth_scales",
    "critical_sigma_w2",
    "critical_line",
    "phase",
    "predicted_gradient_ratio",
    "growth_rate",
    "CriticalGain",
    "GainRow",
    "TORCH_GAINS",
    "critical_gain",
    "gain_table",
    "gradient_depth_scale",
    "gradient_factor",
    "gaussian_moments",
    "GaussianMoments",
]

#: Largest variance accepted (beyond it q* and the quadrature lose meaning in float64).
MAX_VARIANCE = 1e6
#: Quadrature truncation |Z| ≤ _ZMAX: the standard normal mass outside is 2.9e-316.
_ZMAX = 38.0
_BREAKS = (-38.0, -24.0, -16.0, -10.0, -6.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0, 10.0, 16.0, 24.0, 38.0)
_N_NODES = 40
#: Unit roundoff of float64.
_U = 2.0 ** -53


@dataclass(frozen=True)
class MeanFieldValue:
    """A mean-field quantity and how it is known.

    * ``value``: the number (float; ``math.inf`` where a depth scale diverges);
    * ``error``: an absolute error bound, 0 when exact (for quadrature an estimate: the
      difference of two resolutions plus rounding, not a rigorous enclosure);
    * ``exact``: the closed form as a SymPy expression, or None;
    * ``method``: how it was obtained, in words.
    """

    value: float
    error: float
    exact: sympy.Expr | None = None
    method: str = ""

    @property
    def is_exact(self) -> bool:
        return self.exact is not None

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self):
        if self.exact is not None:
            return "MeanFieldValue(%s, exact)" % sympy.sstr(self.exact)
        return "MeanFieldValue(%.12g ± %.2g, %s)" % (self.value, self.error, self.method)


@dataclass(frozen=True)
class FixedPoint:
    """The fixed point q* of the length map reached from ``q0``, and the map's other fixed points.

    * ``q``: q* as a :class:`MeanFieldValue`;
    * ``stable``: whether the map's slope at q* is below 1 (an attractor);
    * ``slope``: σ_w² dM/dq at q* (M(q) = E[φ(√q Z)²]);
    * ``neutral``: True where every q is a fixed point (ReLU at σ_w² = 2, σ_b² = 0);
    * ``others``: the other fixed points found (floats), for maps with several.
    """

    q: MeanFieldValue
    stable: bool
    slope: MeanFieldValue
    neutral: bool = False
    others: tuple = ()


@dataclass(frozen=True)
class DepthScales:
    """ξ_q, ξ_c and ξ_∇ (layers), each a :class:`MeanFieldValue`; ``math.inf`` at criticality."""

    xi_q: MeanFieldValue
    xi_c: MeanFieldValue
    xi_grad: MeanFieldValue
    c_star: MeanFieldValue


@dataclass(frozen=True)
class GrowthRate:
    """The Lyapunov exponent λ = E log|w_{j+1} φ'(z_j)| of a single-neuron chain (per layer).

    * ``rate``: the Monte-Carlo estimate of λ (natural log per layer);
    * ``ci``: a 99% confidence interval (over independent chains);
    * ``log_abs_w``: E log|w|, exact for w ~ N(0, σ_w²): ln σ_w − (γ + ln 2)/2;
    * ``worst_case``: E log|w| + ln sup|φ'|, the rate of Nielsen's bound |w φ'(z)| ≤ |w|·sup|φ'|
      at the same weights (None where the sup is unknown);
    * ``samples``: chains × layers averaged.
    """

    rate: float
    ci: tuple
    log_abs_w: float
    worst_case: float | None
    samples: int
    note: str = ""


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


def _variance(name: str, value, *, positive: bool = False):
    """A variance as an exact SymPy Rational when it is given exactly (int, Fraction, Rational or a
    float, whose binary value is exact), with its float."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, sympy.Rational, sympy.Float)):
        raise InvalidArgument("%s=%r must be a real number, e.g. %s=1.0" % (name, value, name))
    f = float(value)
    if not math.isfinite(f) or f < 0 or (positive and f == 0):
        raise InvalidArgument("%s=%r must be a finite number %s 0, e.g. %s=1.0" % (name, value, "above" if positive else "at least", name))
    if f > MAX_VARIANCE:
        raise InvalidArgument("%s=%r is above %g; mean-field quantities beyond it are not meaningful in float64" % (name, value, MAX_VARIANCE))
    if isinstance(value, sympy.Rational):
        exact = value
    elif isinstance(value, numbers.Integral):
        exact = sympy.Integer(int(value))
    elif isinstance(value, Fraction):
        exact = sympy.Rational(value.numerator, value.denominator)
    else:
        exact = sympy.Rational(*Fraction(f).as_integer_ratio()) if f == f else None
        # Keep the short decimal the user wrote (0.1, not 3602879701896397/36028797018963968).
        short = sympy.Rational(repr(f))
        if float(short) == f:
            exact = short
    return exact, f


def _act(activation) -> Activation:
    return _activation(activation)


# ---------------------------------------------------------------------------------------------
# Closed forms where they exist
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Moments:
    """E[φ(√q Z)²] and E[φ'(√q Z)²] as SymPy functions of q, when they have a closed form."""

    second: sympy.Expr  # in _Q
    prime2: sympy.Expr  # in _Q
    linear: bool        # second = m·q for a constant m
    what: str


_Q = sympy.Symbol("q", nonnegative=True)


def _exact_moments(act: Activation) -> _Moments | None:
    e = act.expr
    pi = sympy.pi
    if e == _z:
        return _Moments(_Q, sympy.Integer(1), True, "the identity: E[(√q Z)²] = q")
    if e == _relu(_z) or e == sympy.Max(0, _z):
        return _Moments(_Q / 2, sympy.Rational(1, 2), True, "ReLU: E[ReLU(√q Z)²] = q/2, E[θ(Z)²] = 1/2")
    if isinstance(e, _leaky_relu) and e.args[0] == _z and e.args[1].is_Rational:
        a = e.args[1]
        return _Moments((1 + a ** 2) * _Q / 2, (1 + a ** 2) / 2, True,
                        "leaky ReLU: E[φ(√q Z)²] = (1 + α²)q/2, E[φ'(Z)²] = (1 + α²)/2")
    # a·erf(b·z): Williams (1997), E[erf(b√q Z)²] = (2/π) asin(2b²q / (1 + 2b²q)).
    coeff, rest = e.as_coeff_Mul()
    if isinstance(rest, sympy.erf) and coeff.is_Rational:
        inner = rest.args[0]
        b, zz = inner.as_coeff_Mul()
        if zz == _z and b.is_Rational and b != 0:
            a = coeff
            second = a ** 2 * 2 / pi * sympy.asin(2 * b ** 2 * _Q / (1 + 2 * b ** 2 * _Q))
            prime2 = a ** 2 * 4 * b ** 2 / pi / sympy.sqrt(1 + 4 * b ** 2 * _Q)
            return _Moments(second, prime2, False, "a·erf(bz): E[erf(b√q Z)²] = (2/π)asin(2b²q/(1 + 2b²q)) (Williams 1997)")
    return None


@lru_cache(maxsize=64)
def _one_sided_slopes(act: Activation) -> tuple[sympy.Expr | None, sympy.Expr | None]:
    """φ'(0⁺) and φ'(0⁻) exactly, by SymPy limits under a budget, or None."""
    from symgrad._budget import within_budget
    from symgrad.errors import BudgetExceeded

    d = act.derivative
    # z = ±t with t > 0 settles Piecewise conditions such as ``z > 0`` before the limit: SymPy's
    # one-sided limit of a Piecewise at its breakpoint can take the wrong branch (it gave SELU's
    # φ'(0⁻) = λα for φ'(0⁺) = λ).
    t = sympy.Symbol("t", positive=True)
    out = []
    for sign, direction in ((1, "+"), (-1, "-")):
        try:
            v = within_budget(lambda: sympy.limit(sympy.piecewise_fold(d.subs(_z, sign * t)), t, 0, "+"),
                              seconds=5.0, what="φ'(0%s)" % direction)
        except (BudgetExceeded, NotImplementedError, ValueError, TypeError):
            v = None
        v = v if v is not None and v.is_number and v.is_finite else None
        if v is not None:
            # Cross-check against the evaluator just beside 0; a disagreement means no exact value.
            g = float(act.grad(np.array([sign * 1e-300]))[0])
            if not math.isfinite(g) or abs(float(v) - g) > 1e-12 * max(1.0, abs(g)):
                v = None
        out.append(v)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Quadrature: E[f(√q Z)] on pieces split at the kinks
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _legendre(n: int):
    x, w = np.polynomial.legendre.leggauss(n)
    return x, w


def _kinks(act: Activation) -> tuple[float, ...]:
    """Points where φ or φ' is not smooth, from the expression (Abs, sign, Heaviside, Max, Min,
    Piecewise and the piecewise built-ins), where SymPy can solve for them."""
    from symgrad.spec.activations import elu as _elu

    pts = set()
    e = act.expr
    for node in sympy.preorder_traversal(e):
        args = ()
        if isinstance(node, (sympy.Abs, sympy.sign, sympy.Heaviside, _relu, _leaky_relu, _elu)):
            args = (node.args[0],)
        elif isinstance(node, (sympy.Max, sympy.Min)):
            args = tuple(a - b for a in node.args for b in node.args if a != b)
        elif isinstance(node, sympy.Piecewise):
            args = tuple(c.lhs - c.rhs for _, c in node.args if isinstance(c, sympy.core.relational.Relational))
        for a in args:
            if a.free_symbols == {_z} and a.is_polynomial(_z) and sympy.degree(a, _z) == 1:
                root = sympy.solve(a, _z)
                pts.update(float(r) for r in root if r.is_real)
    return tuple(sorted(pts))


def _pieces(kinks_z):
    br = sorted(set(_BREAKS) | {k for k in kinks_z if -_ZMAX < k < _ZMAX})
    return np.asarray(br)


def _nodes(breaks, n):
    x, w = _legendre(n)
    a, b = breaks[:-1, None], breaks[1:, None]
    half = (b - a) / 2
    zs = (a + b) / 2 + half * x[None, :]
    ws = half * w[None, :] * np.exp(-0.5 * zs * zs) / math.sqrt(2 * math.pi)
    return zs.ravel(), ws.ravel()


def _moments_error(fn_vals, what_variance):
    raise InvalidArgument("the Gaussian moments of this activation do not exist (or are not reachable in float64) at variance %g; "
                          "mean field needs φ and φ' to grow slower than e^{z²/4}" % what_variance)


def _with_error(out):
    """(values, absolute error bounds) of an integrand's output: ``out`` itself where it is such a
    pair, else (out, None)."""
    return out if isinstance(out, tuple) else (out, None)


def _val(act):
    """x ↦ (φ(x), its error bound): a custom activation's float64 values with their running
    error bounds (:meth:`symgrad.spec.Activation.bounded`, no exact re-evaluation: the quadrature
    adds the bounds to its error instead), a built-in's with 0 (its few-ulp rounding is inside the
    quadrature's 64u·E|f|)."""
    if act.bounded is None:
        return lambda x: (act.value(x), 0.0)
    return lambda x: act.bounded(x)[0::2]


def _grad(act):
    """x ↦ (φ'(x), its error bound), as :func:`_val`."""
    if act.bounded is None:
        return lambda x: (act.grad(x), 0.0)
    return lambda x: act.bounded(x)[1::2]


def _square(f):
    """x ↦ (f(x)², its error bound (2|f| + e)·e) for f returning (values, bounds)."""
    def sq(x):
        v, e = f(x)
        return np.square(v), (2.0 * np.abs(v) + e) * e
    return sq


def _expect(f, scale: np.ndarray, kinks: tuple[float, ...]):
    """E[f(s·Z)] for each s in ``scale`` (s > 0), with an error estimate.  ``f`` maps an array of
    pre-activations to an array, or to (array, absolute error bounds of its entries).  Returns
    (values, errors).

    Gauss–Legendre on pieces of [−38, 38] split at the kinks (in Z: k/s), at n and 2n nodes; the
    error is |I_2n − I_n| plus rounding (64u·E|f|) plus the integrand's own error bounds (the
    weighted sum of them) plus the tail beyond |Z| = 38, bounded by the integrand at the edge.
    Without kinks the nodes are shared and every s is one array call.
    """
    scale = np.atleast_1d(np.asarray(scale, dtype=float))
    groups = [(None, scale)] if not kinks else [(s, np.array([s])) for s in scale]
    vals, errs = [], []
    for key, ss in groups:
        breaks = _pieces([k / key for k in kinks]) if key is not None else np.asarray(_BREAKS)
        # The tail first: two evaluations refuse an activation without Gaussian moments before
        # the full grid is spent on it.
        with np.errstate(over="ignore", invalid="ignore"):
            fv, fe = _with_error(f(np.stack([-_ZMAX * ss, _ZMAX * ss], axis=1)))
            edge = (np.abs(fv) + (0.0 if fe is None else fe)) * (math.exp(-0.5 * _ZMAX ** 2) / math.sqrt(2 * math.pi))
        if not np.all(np.isfinite(edge)):
            _moments_error(edge, float(np.max(ss)) ** 2)
        tail = 2.0 * np.max(edge, axis=1)
        res = []
        for n in (_N_NODES, 2 * _N_NODES):
            zs, ws = _nodes(breaks, n)
            with np.errstate(over="ignore", invalid="ignore"):
                fx, fe = _with_error(f(ss[:, None] * zs[None, :]))
            if not np.all(np.isfinite(fx)):
                _moments_error(fx, float(np.max(ss)) ** 2)
            res.append((fx @ ws, np.abs(fx) @ ws, 0.0 if fe is None else np.broadcast_to(fe, fx.shape) @ ws))
        (lo, _, _), (hi, mag, ferr) = res
        if np.any(tail > 1e-8 * np.maximum(mag, 1e-300)):
            _moments_error(edge, float(np.max(ss)) ** 2)
        vals.append(hi)
        errs.append(np.abs(hi - lo) + 64 * _U * mag + ferr + tail)
    return np.concatenate(vals), np.concatenate(errs)


def _second_moment(act, q):
    """M(q) = E[φ(√q Z)²] with error, vectorised over q ≥ 0."""
    q = np.atleast_1d(np.asarray(q, dtype=float))
    out, err = np.empty_like(q), np.zeros_like(q)
    zero = q <= 0
    if np.any(zero):
        v = float(act.value(np.array([0.0]))[0])
        out[zero] = v * v
    if np.any(~zero):
        out[~zero], err[~zero] = _expect(_square(_val(act)), np.sqrt(q[~zero]), _kinks(act))
    return out, err


def _prime2_moment(act, q):
    """E[φ'(√q Z)²] with error; at q = 0 the two-sided limit (φ'(0⁺)² + φ'(0⁻)²)/2."""
    q = np.atleast_1d(np.asarray(q, dtype=float))
    out, err = np.empty_like(q), np.zeros_like(q)
    zero = q <= 0
    if np.any(zero):
        tiny = np.array([1e-300, -1e-300])
        g = act.grad(tiny)
        out[zero] = 0.5 * float(g[0] ** 2 + g[1] ** 2)
    if np.any(~zero):
        out[~zero], err[~zero] = _expect(_square(_grad(act)), np.sqrt(q[~zero]), _kinks(act))
    return out, err


def _moment_slope(act, q):
    """dM/dq = E[Z φ(√q Z) φ'(√q Z)]/√q (Stein's lemma), with error; at q = 0 the limit."""
    if q <= 0:
        v, e = _prime2_moment(act, 0.0)
        return float(v[0]), float(e[0])
    s = math.sqrt(q)
    val, grad = _val(act), _grad(act)

    def f(x):
        (a, ea), (d, ed) = val(x), grad(x)
        return (x / s) * a * d, np.abs(x / s) * (np.abs(a) * ed + np.abs(d) * ea + ea * ed)

    v, e = _expect(f, np.array([s]), _kinks(act))
    return float(v[0]) / s, float(e[0]) / s


# ---------------------------------------------------------------------------------------------
# The length map and q*
# ---------------------------------------------------------------------------------------------


def length_map(activation, sigma_w2, sigma_b2, q) -> MeanFieldValue:
    """One step of the length map ``q ↦ σ_w² E[φ(√q Z)²] + σ_b²`` (Poole et al. 2016, eq. 3).

    * ``q``: the variance of the previous layer's pre-activations (≥ 0).

    >>> length_map("relu", 2, 0, 3).exact
    3
    """
    act = _act(activation)
    (w2, w2f), (b2, b2f) = _variance("sigma_w2", sigma_w2), _variance("sigma_b2", sigma_b2)
    qe, qf = _variance("q", q)
    mom = _exact_moments(act)
    if mom is not None and w2 is not None and b2 is not None and qe is not None:
        ex = sympy.nsimplify(w2 * mom.second.subs(_Q, qe) + b2)
        return MeanFieldValue(float(ex), 0.0, ex, "exact: " + mom.what)
    m, e = _second_moment(act, qf)
    return MeanFieldValue(w2f * float(m[0]) + b2f, w2f * float(e[0]) + 2 * _U * (w2f * float(m[0]) + b2f), None, "quadrature")


def q_star(activation, sigma_w2, sigma_b2, *, q0=1.0) -> FixedPoint:
    """The fixed point q* of the length map that the iteration from ``q0`` reaches.

    Handles the cases careless code gets wrong: q* = 0 (an activation through the origin with
    σ_b² = 0), several fixed points (the others are listed), no finite fixed point (raises
    :class:`~symgrad.InvalidArgument`: e.g. ReLU with σ_w² > 2), and a neutral map where every
    q is fixed (ReLU at σ_w² = 2, σ_b² = 0: q* = q0, ``neutral=True``).

    * ``q0``: the input's second moment ‖x‖²/n₀ (default 1).

    >>> q_star("relu", 1, 1).q.exact
    2
    >>> q_star("tanh", 0.5, 0).q.value
    0.0
    """
    act = _act(activation)
    (w2, w2f), (b2, b2f) = _variance("sigma_w2", sigma_w2), _variance("sigma_b2", sigma_b2)
    q0e, q0f = _variance("q0", q0)
    mom = _exact_moments(act)
    if mom is not None and mom.linear and w2 is not None and b2 is not None:
        m = sympy.nsimplify(mom.second / _Q)
        slope = sympy.nsimplify(w2 * m)
        slope_v = MeanFieldValue(float(slope), 0.0, slope, "exact")
        if slope < 1:
            qs = sympy.nsimplify(b2 / (1 - slope))
            return FixedPoint(MeanFieldValue(float(qs), 0.0, qs, "exact: q* = σ_b²/(1 − σ_w² m), " + mom.what), True, slope_v)
        if slope == 1 and b2 == 0:
            return FixedPoint(MeanFieldValue(q0f, 0.0, q0e, "exact: every q is a fixed point (the map is q ↦ q)"), False, slope_v, neutral=True)
        raise InvalidArgument(
            "no finite fixed point: with %s, σ_w² = %s and σ_b² = %s the length map grows q by a factor %s ≥ 1 every layer%s; "
            "use σ_w² < %s" % (act.name, w2, b2, slope, " plus σ_b²" if b2 != 0 else "", sympy.nsimplify(1 / m)))
    return _numeric_q_star(act, w2f, b2f, q0f, mom)


def _numeric_q_star(act, w2f, b2f, q0f, mom) -> FixedPoint:
    def g(q):
        m, e = _second_moment(act, q)
        return w2f * m + b2f - np.asarray(q, dtype=float), w2f * e + 4 * _U * (w2f * np.abs(m) + b2f)

    grid = np.concatenate([[0.0], np.geomspace(1e-10, 1e6, 161)])
    gv, ge = g(grid)
    roots = []
    if b2f == 0 and gv[0] == 0:
        roots.append(0.0)
    from scipy.optimize import brentq

    for i in range(len(grid) - 1):
        a, b = grid[i], grid[i + 1]
        if gv[i] == 0 and i > 0:
            roots.append(a)
        elif gv[i] * gv[i + 1] < 0:
            roots.append(brentq(lambda t: float(g(t)[0][0]), a, b, xtol=1e-15, rtol=8 * _U, maxiter=200))
    if np.all(np.abs(gv[1:]) <= ge[1:]):
        return FixedPoint(MeanFieldValue(q0f, float(ge.max()), None, "quadrature: every q is a fixed point within the error"),
                          False, MeanFieldValue(1.0, float(ge.max()), None, "quadrature"), neutral=True)
    g0 = float(g(q0f)[0][0])
    if g0 > 0:
        above = [r for r in roots if r >= q0f]
        if not above:
            raise InvalidArgument(
                "no finite fixed point: with %s, σ_w² = %g and σ_b² = %g the length map grows q without bound from q0 = %g "
                "(q^l > 1e6 within a few layers); lower σ_w²" % (act.name, w2f, b2f, q0f))
        qs = min(above)
    elif g0 < 0:
        below = [r for r in roots if r <= q0f]
        qs = max(below) if below else 0.0
    else:
        qs = q0f
    slope, serr = _moment_slope(act, qs)
    slope_v = MeanFieldValue(w2f * slope, w2f * serr, None, "quadrature (Stein's lemma)")
    # |δq*| ≤ |δg| / |1 − slope| near a simple root.
    gerr = float(g(qs)[1][0])
    denom = abs(1 - w2f * slope)
    qerr = gerr / denom if denom > 1e-12 else math.sqrt(gerr)
    others = tuple(r for r in roots if r != qs)
    exact = sympy.Integer(0) if qs == 0.0 else None
    method = "exact: φ(0) = 0 and σ_b² = 0 make q = 0 a fixed point, and the iteration from q0 reaches it" if exact is not None else "quadrature + Brent's method"
    return FixedPoint(MeanFieldValue(qs, 0.0 if exact is not None else qerr, exact, method), w2f * slope < 1, slope_v, others=others)


# ---------------------------------------------------------------------------------------------
# χ₁, depth scales, phase, critical line
# ---------------------------------------------------------------------------------------------


def chi1(activation, sigma_w2, sigma_b2, *, q0=1.0) -> MeanFieldValue:
    """χ₁ = σ_w² E[φ'(√q* Z)²], the per-layer growth factor of E‖δ^l‖² (Schoenholz et al. 2017,
    eq. 5).  Exact for ReLU, leaky ReLU, the identity, a·erf(bz) and at q* = 0.

    >>> chi1("leaky_relu", 1, 0).exact
    10001/20000
    """
    act = _act(activation)
    (w2, w2f), (b2, b2f) = _variance("sigma_w2", sigma_w2), _variance("sigma_b2", sigma_b2)
    fp = q_star(act, sigma_w2, sigma_b2, q0=q0)
    return _chi1_at(act, w2, w2f, fp)


def gradient_factor(activation, sigma_w2, q) -> MeanFieldValue:
    """χ(q) = σ_w² E[φ'(√q Z)²]: the factor by which one layer scales E‖δ‖² in a wide random
    network whose pre-activations have variance ``q`` (Schoenholz et al. 2017, eq. 5 before the
    fixed point is reached; at q = q* it is χ₁).  The backward step δ^l = Σ'(z^l) W^{l+1 T} δ^{l+1},
    with W^{l+1}_ij ~ N(0, σ_w²/n_l), gives E‖δ^l‖² = χ(q^l) E‖δ^{l+1}‖², independent of the widths.

    * ``sigma_w2``: the next layer's weight variance times its fan-in (σ_w²), ≥ 0;
    * ``q``: the pre-activation variance of this layer (≥ 0, units of z²).

    Exact where the Gaussian moments have a closed form (ReLU, leaky ReLU, the identity, erf),
    else quadrature with an error estimate.  Errors: :class:`~symgrad.InvalidArgument` for a
    negative, non-finite or too large variance.

    >>> gradient_factor("relu", 2, 3).exact
    1
    >>> round(gradient_factor("tanh", 1, 0.5).value, 6)
    0.592426
    """
    act = _act(activation)
    w2, w2f = _variance("sigma_w2", sigma_w2)
    qe, qf = _variance("q", q)
    return _chi_at_q(act, w2, w2f, MeanFieldValue(qf, 0.0, qe, "given"))


@dataclass(frozen=True)
class GaussianMoments:
    """E[φ(√q Z)], E[φ(√q Z)²] and E[φ'(√q Z)²] for Z ~ N(0, 1), each with an absolute error
    estimate (quadrature: the difference of two resolutions plus rounding and the tail)."""

    mean: float
    second: float
    prime2: float
    mean_error: float
    second_error: float
    prime2_error: float


def gaussian_moments(activation, q) -> GaussianMoments:
    """The three Gaussian moments of an activation that signal propagation needs, at variance q:
    E[φ(√q Z)] (the mean a residual stream accumulates), E[φ(√q Z)²] (the length map, Poole et
    al. 2016, eq. 3) and E[φ'(√q Z)²] (χ, Schoenholz et al. 2017, eq. 5), by Gauss–Legendre
    quadrature split at the activation's kinks; at q = 0 the values at 0 (φ' as the two-sided
    average of its one-sided limits).

    * ``q``: the pre-activation variance (≥ 0, units of z²).

    Errors: :class:`~symgrad.InvalidArgument` for a negative, non-finite or too large q, and for an
    activation without these Gaussian moments.

    >>> m = gaussian_moments("relu", 2.0)
    >>> round(m.mean, 9), round(m.second, 9), round(m.prime2, 9)  # √(q/2π), q/2, 1/2
    (0.564189584, 1.0, 0.5)
    """
    act = _act(activation)
    _, qf = _variance("q", q)
    m2, e2 = _second_moment(act, qf)
    p2, ep = _prime2_moment(act, qf)
    if qf <= 0:
        m1, e1 = float(act.value(np.array([0.0]))[0]), 0.0
    else:
        v, e = _expect(_val(act), np.array([math.sqrt(qf)]), _kinks(act))
        m1, e1 = float(v[0]), float(e[0])
    return GaussianMoments(m1, float(m2[0]), float(p2[0]), e1, float(e2[0]), float(ep[0]))


def _chi1_at(act, w2, w2f, fp: FixedPoint) -> MeanFieldValue:
    return _chi_at_q(act, w2, w2f, fp.q)


def _chi_at_q(act, w2, w2f, qv: MeanFieldValue) -> MeanFieldValue:
    mom = _exact_moments(act)
    qx = qv.exact
    if mom is not None and w2 is not None and qx is not None:
        ex = sympy.nsimplify(w2 * mom.prime2.subs(_Q, qx))
        return MeanFieldValue(float(ex), 0.0, ex, "exact: " + mom.what)
    if qx is not None and qx == 0 and w2 is not None:
        plus, minus = _one_sided_slopes(act)
        if plus is not None and minus is not None:
            ex = sympy.nsimplify(w2 * (plus ** 2 + minus ** 2) / 2)
            return MeanFieldValue(float(ex), 0.0, ex, "exact: q* = 0, χ₁ = σ_w² (φ'(0⁺)² + φ'(0⁻)²)/2")
    v, e = _prime2_moment(act, qv.value)
    # Propagate the error of q*: |dE[φ'²]/dq| · δq, estimated by a difference.
    dq = max(qv.error, 0.0)
    prop = 0.0
    if dq > 0:
        v2, _ = _prime2_moment(act, qv.value + dq)
        prop = abs(float(v2[0]) - float(v[0]))
    return MeanFieldValue(w2f * float(v[0]), w2f * (float(e[0]) + prop) + 4 * _U * w2f * float(v[0]), None, "quadrature")


def phase(activation, sigma_w2, sigma_b2, *, q0=1.0) -> str:
    """``"ordered"`` (χ₁ < 1: gradients vanish), ``"chaotic"`` (χ₁ > 1: they explode) or
    ``"critical"`` (χ₁ = 1 exactly, or within its error bound)."""
    c = chi1(activation, sigma_w2, sigma_b2, q0=q0)
    if c.exact is not None:
        return "ordered" if c.exact < 1 else "chaotic" if c.exact > 1 else "critical"
    if abs(c.value - 1) <= c.error:
        return "critical"
    return "ordered" if c.value < 1 else "chaotic"


def _xi(rate: MeanFieldValue, what: str) -> MeanFieldValue:
    """1/|ln(rate)|, with its error; ∞ at rate = 1 (the phase says whether it grows or decays)."""
    if rate.exact is not None:
        if rate.exact == 1:
            return MeanFieldValue(math.inf, 0.0, sympy.oo, "exact: %s = 1" % what)
        if rate.exact == 0:
            return MeanFieldValue(0.0, 0.0, sympy.Integer(0), "exact: %s = 0" % what)
        ex = 1 / sympy.Abs(sympy.log(abs(rate.exact)))
        return MeanFieldValue(float(ex), 0.0, ex, "exact: 1/|ln %s|" % what)
    r, e = abs(rate.value), rate.error
    if r <= e and r == 0:
        return MeanFieldValue(0.0, 0.0, None, "quadrature")
    if abs(r - 1) <= e:
        return MeanFieldValue(math.inf, math.inf, None, "quadrature: %s is 1 within its error" % what)
    v = 1.0 / abs(math.log(r))
    # d(1/|ln r|)/dr = 1/(r ln² r) in absolute value
    return MeanFieldValue(v, e / (r * math.log(r) ** 2) + 4 * _U * abs(v), None, "quadrature")


def depth_scales(activation, sigma_w2, sigma_b2, *, q0=1.0) -> DepthScales:
    """ξ_q, ξ_c and ξ_∇ in layers (Schoenholz et al. 2017, eqs. 8, 9, 15): perturbations of q*
    and of the correlation c* decay like e^{−l/ξ}, and E‖δ^l‖² changes like χ₁^{L−l} =
    e^{∓(L−l)/ξ_∇} (shrinking in the ordered phase, growing in the chaotic one; ξ = 1/|ln rate|).
    In the ordered phase c* = 1 and ξ_c = ξ_∇; in the chaotic phase c* < 1 solves the
    correlation map by quadrature.  Each diverges (``math.inf``) at criticality.

    >>> depth_scales("relu", 1, 1).xi_grad.exact
    1/log(2)
    """
    act = _act(activation)
    (w2, w2f), (b2, b2f) = _variance("sigma_w2", sigma_w2), _variance("sigma_b2", sigma_b2)
    fp = q_star(act, sigma_w2, sigma_b2, q0=q0)
    c1 = _chi1_at(act, w2, w2f, fp)
    xi_grad = _xi(c1, "χ₁")
    if fp.neutral:
        xi_q = MeanFieldValue(math.inf, 0.0, sympy.oo, "every q is a fixed point: perturbations of q never decay")
    else:
        xi_q = _xi(fp.slope, "the slope of the length map at q*")
    chaotic = (c1.exact > 1) if c1.exact is not None else (c1.value - c1.error > 1)
    if not chaotic:
        one = MeanFieldValue(1.0, 0.0, sympy.Integer(1), "c* = 1 (ordered or critical phase)")
        return DepthScales(xi_q, _xi(c1, "χ₁ (c* = 1)"), xi_grad, one)
    cs, cerr, slope, serr = _chaotic_c_star(act, w2f, b2f, fp.q.value)
    return DepthScales(xi_q, _xi(MeanFieldValue(slope, serr, None, "quadrature"), "χ_c*"), xi_grad,
                       MeanFieldValue(cs, cerr, None, "quadrature + Brent's method"))


def _pair_expect(act, f1, f2, q, c):
    """E[f1(u₁) f2(u₂)] with u₁ = √q Z₁, u₂ = √q (c Z₁ + √(1 − c²) Z₂), by nested quadrature
    (the inner integral split at f2's kinks shifted by the outer node), with an error.  f1, f2
    return (values, error bounds), as :func:`_val`."""
    s = math.sqrt(q)
    sc = math.sqrt(max(0.0, 1 - c * c))
    kinks = _kinks(act)
    zs, ws = _nodes(_pieces([k / s for k in kinks]), _N_NODES)
    inner = np.empty_like(zs)
    inner_err = np.empty_like(zs)
    if not kinks and sc > 0:
        # No kinks: every outer node shares the inner nodes, so the inner integrals are one array.
        res = []
        for n in (_N_NODES, 2 * _N_NODES):
            iz, iw = _nodes(np.asarray(_BREAKS), n)
            fx, fe = f2(s * c * zs[:, None] + (s * sc) * iz[None, :])
            if not np.all(np.isfinite(fx)):
                _moments_error(fx, q)
            res.append((fx @ iw, np.abs(fx) @ iw, np.broadcast_to(fe, fx.shape) @ iw))
        (lo, _, _), (inner, mag, ferr) = res
        inner_err = np.abs(inner - lo) + 64 * _U * mag + ferr
        zs_iter = ()
    else:
        zs_iter = zs
    for i, z1 in enumerate(zs_iter):
        if sc == 0:
            fv, fe = f2(np.array([s * c * z1]))
            inner[i], inner_err[i] = float(fv[0]), float(np.broadcast_to(fe, fv.shape)[0])
            continue
        mean = s * c * z1
        v, e = _expect(lambda x: f2(mean + x), np.array([s * sc]), tuple(k - mean for k in kinks))
        inner[i], inner_err[i] = v[0], e[0]
    outer, outer_err = f1(s * zs)
    val = float(np.dot(ws, outer * inner))
    err = (float(np.dot(ws, np.abs(outer) * inner_err + outer_err * (np.abs(inner) + inner_err)))
           + 64 * _U * float(np.dot(ws, np.abs(outer * inner))))
    return val, err


def _chaotic_c_star(act, w2f, b2f, qs):
    from scipy.optimize import brentq

    def cmap(c):
        v, e = _pair_expect(act, _val(act), _val(act), qs, c)
        return (w2f * v + b2f) / qs - c, w2f * e / qs

    grid = np.linspace(-0.99, 0.999, 24)
    vals = [cmap(c)[0] for c in grid]
    root = None
    for i in range(len(grid) - 1, 0, -1):  # the largest crossing below 1: the stable c*
        if vals[i - 1] * vals[i] < 0:
            root = brentq(lambda c: cmap(c)[0], grid[i - 1], grid[i], xtol=1e-13)
            break
    if root is None:
        raise InvalidArgument("no correlation fixed point c* < 1 found for %s at σ_w² = %g, σ_b² = %g" % (act.name, w2f, b2f))
    slope, serr = _pair_expect(act, _grad(act), _grad(act), qs, root)
    return root, cmap(root)[1], w2f * slope, w2f * serr


def critical_sigma_w2(activation, sigma_b2=0, *, q0=1.0) -> MeanFieldValue:
    """σ_w² on the critical line χ₁(σ_w², σ_b²) = 1 at this σ_b².

    Exact for ReLU (2), leaky ReLU (2/(1 + α²)), the identity (1), and any activation through the
    origin at σ_b² = 0, where q* = 0 and χ₁ = σ_w² (φ'(0⁺)² + φ'(0⁻)²)/2 (tanh: 1, erf: π/4).
    Elsewhere by Brent's method on χ₁ − 1 with quadrature, with an error propagated from χ₁'s.
    Compare ``torch.nn.init.calculate_gain``: its gains are σ_w (not σ_w²) and, for tanh (5/3)
    and sigmoid (1), are chosen for the forward variance, not for χ₁ = 1.

    >>> critical_sigma_w2("relu").exact
    2
    >>> critical_sigma_w2("leaky_relu").exact
    20000/10001
    """
    act = _act(activation)
    b2, b2f = _variance("sigma_b2", sigma_b2)
    mom = _exact_moments(act)
    if mom is not None and mom.linear:
        ex = sympy.nsimplify(1 / mom.prime2)
        note = "" if b2 == 0 else " (at σ_b² > 0 the length map has no finite fixed point there)"
        return MeanFieldValue(float(ex), 0.0, ex, "exact: χ₁ = σ_w² E[φ'²] is independent of q*" + note)
    if b2 == 0 and float(act.value(np.array([0.0]))[0]) == 0.0:
        plus, minus = _one_sided_slopes(act)
        if plus is not None and minus is not None and (plus ** 2 + minus ** 2) != 0:
            ex = sympy.nsimplify(2 / (plus ** 2 + minus ** 2))
            # q = 0 must be the attractor at that σ_w²: the map's slope there is σ_w²(φ'(0⁺)² + φ'(0⁻)²)/2 = 1,
            # marginal; confirm that no other fixed point captures the iteration from q0.
            try:
                fp = q_star(act, float(ex), 0, q0=q0)
            except InvalidArgument:
                fp = None
            if fp is not None and (fp.q.exact == 0 or fp.q.value <= 1e-6):
                return MeanFieldValue(float(ex), 0.0, ex, "exact: q* = 0 at σ_b² = 0, χ₁ = σ_w² (φ'(0⁺)² + φ'(0⁻)²)/2 = 1")
    v = _numeric_critical(act, b2f)
    if isinstance(v, InvalidArgument):
        raise v
    return v


def _numeric_critical(act, b2f) -> MeanFieldValue:
    return _numeric_critical_many(act, [b2f])[0]


def _numeric_critical_many(act, b2s) -> list:
    """On the critical line σ_w² = 1/P(q) with P(q) = E[φ'(√q Z)²], so q* solves the single
    equation h(q) = M(q)/P(q) + σ_b² − q = 0 (M(q) = E[φ(√q Z)²]); the smallest σ_w² among the
    roots that are attracting fixed points of the length map is the critical point.  The grid of
    M/P is shared by every σ_b²; a value is an InvalidArgument where no critical point exists."""
    from scipy.optimize import brentq

    def parts(q):
        m, me = _second_moment(act, q)
        p, pe = _prime2_moment(act, q)
        return m, me, p, pe

    def ratio(q):
        m, _, p, _ = parts(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return m / p

    grid = np.geomspace(1e-10, 1e6, 321)
    rg = ratio(grid)
    out = []
    for b2f in b2s:
        hv = rg + b2f - grid
        best = None
        for i in range(len(grid) - 1):
            if not (np.isfinite(hv[i]) and np.isfinite(hv[i + 1]) and hv[i] * hv[i + 1] < 0):
                continue
            q = brentq(lambda t: float(ratio(t)[0]) + b2f - t, grid[i], grid[i + 1], xtol=1e-15, rtol=16 * _U, maxiter=200)
            m, me, p, pe = (float(x[0]) for x in parts(q))
            w2 = 1.0 / p
            slope, _ = _moment_slope(act, q)
            if w2 * slope < 1 and (best is None or w2 < best[0]):
                best = (w2, q, p, pe, me)
        if best is None:
            out.append(InvalidArgument(
                "no critical σ_w² for %s at σ_b² = %g: χ₁ = 1 at no attracting fixed point of the length map" % (act.name, b2f)))
            continue
        w2, q, p, pe, me = best
        # σ_w² = 1/P(q*): |δσ_w²| ≤ δP/P², plus the part through δq* (estimated by a difference).
        dq = me / p + 1e-15 * q
        p2 = float(_prime2_moment(act, q + dq)[0][0])
        err = pe / p ** 2 + abs(1 / p2 - w2) + 8 * _U * w2
        out.append(MeanFieldValue(w2, err, None, "quadrature: σ_w² = 1/E[φ'(√q* Z)²] at the root of M(q)/P(q) + σ_b² = q"))
    return out


def critical_line(activation, sigma_b2_values) -> list:
    """:func:`critical_sigma_w2` at many σ_b² at once (the phase diagram's boundary), sharing one
    quadrature grid.  Where no critical point exists the entry is None.

    >>> [v.value for v in critical_line("relu", [0.0, 0.5])]
    [2.0, 2.0]
    """
    act = _act(activation)
    if isinstance(sigma_b2_values, (str, bytes)) or not hasattr(sigma_b2_values, "__iter__"):
        raise InvalidArgument("critical_line: sigma_b2_values=%r must be a list of variances, e.g. [0.0, 0.05, 0.3]" % (sigma_b2_values,))
    vals = [_variance("sigma_b2", b) for b in sigma_b2_values]
    mom = _exact_moments(act)
    out = [None] * len(vals)
    rest = []
    for i, (b2, b2f) in enumerate(vals):
        if mom is not None and mom.linear or b2 == 0:
            try:
                out[i] = critical_sigma_w2(act, b2 if b2 is not None else b2f)
            except InvalidArgument:
                out[i] = None
        else:
            rest.append(i)
    if rest:
        for i, v in zip(rest, _numeric_critical_many(act, [vals[i][1] for i in rest])):
            out[i] = None if isinstance(v, InvalidArgument) else v
    return out


def predicted_gradient_ratio(activation, sigma_w2, sigma_b2, depth: int, *, q0=1.0) -> MeanFieldValue:
    """E‖δ¹‖² / E‖δ^L‖² ≈ χ₁^{L−1}: how much smaller (or larger) the first layer's gradient is
    than the last one's at initialisation, for equal widths (Schoenholz et al. 2017, eq. 14).
    ``value`` is the ratio (``inf`` or 0 where float64 cannot hold it); ``exact`` carries
    χ₁^{L−1} symbolically where χ₁ is exact.

    >>> predicted_gradient_ratio("relu", 1, 0, 11).exact
    1/1024
    """
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise InvalidArgument("depth=%r must be a positive int, e.g. depth=50" % (depth,))
    c = chi1(activation, sigma_w2, sigma_b2, q0=q0)
    n = int(depth) - 1
    if c.exact is not None:
        ex = c.exact ** n
        try:
            v = float(ex)
        except OverflowError:
            v = math.inf
        return MeanFieldValue(v, 0.0, ex, "exact: χ₁^(L−1)")
    logv = n * math.log(c.value) if c.value > 0 else -math.inf
    v = math.exp(logv) if logv < 709 else math.inf
    rel = n * c.error / c.value if c.value > 0 else math.inf
    return MeanFieldValue(v, v * (math.expm1(rel) if rel < 700 else math.inf), None, "quadrature: χ₁^(L−1)")


# ---------------------------------------------------------------------------------------------
# Chains: the Lyapunov exponent
# ---------------------------------------------------------------------------------------------


def growth_rate(activation, init="normal", *, samples: int = 4000, layers: int = 200, burn_in: int = 50, seed=0) -> GrowthRate:
    """The typical per-layer growth rate λ = E log|w_{j+1} φ'(z_j)| of a single-neuron chain
    (natural log; the gradient shrinks like e^{λ(L−j)} almost surely), by Monte Carlo over
    ``samples`` independent chains run ``burn_in`` layers to stationarity and then ``layers``
    more, with a 99% confidence interval over chains.

    * ``init``: ``"normal"`` (w, b ~ N(0, 1), Nielsen's chapter 5) or ``(sigma_w2, sigma_b2)``.

    Beside it: the exact E log|w| = ln σ_w − (γ + ln 2)/2 and the rate of the worst-case bound
    |w φ'(z)| ≤ |w| sup|φ'| (Nielsen: "typically |w σ'(z)| < 1/4").

    >>> r = growth_rate("sigmoid", samples=500, layers=50, seed=1)
    >>> r.ci[0] <= r.rate <= r.ci[1] and r.rate < r.worst_case
    True
    """
    act = _act(activation)
    if isinstance(init, str):
        if init != "normal":
            raise InvalidArgument("init=%r: use 'normal' or a pair (sigma_w2, sigma_b2)" % (init,))
        w2f, b2f = 1.0, 1.0
    elif isinstance(init, (tuple, list)) and len(init) == 2:
        (_, w2f), (_, b2f) = _variance("sigma_w2", init[0], positive=True), _variance("sigma_b2", init[1])
    else:
        raise InvalidArgument("init=%r: use 'normal' or a pair (sigma_w2, sigma_b2)" % (init,))
    for name, v, lo in (("samples", samples, 10), ("layers", layers, 1), ("burn_in", burn_in, 0)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
            raise InvalidArgument("%s=%r must be an int ≥ %d" % (name, v, lo))
    if samples * (layers + burn_in) > 50_000_000:
        raise InvalidArgument("samples × (layers + burn_in) = %d exceeds 5e7; use fewer samples or layers" % (samples * (layers + burn_in)))
    rng = np.random.default_rng(seed)
    sw, sb = math.sqrt(w2f), math.sqrt(b2f)
    a = rng.standard_normal(samples)
    acc = np.zeros(samples)
    for j in range(burn_in + layers):
        zj = sw * rng.standard_normal(samples) * a + sb * rng.standard_normal(samples)
        if j >= burn_in:
            acc += act.log_abs_grad(zj)
        a = act.value(zj)
    log_w = 0.5 * math.log(w2f) - (float(np.euler_gamma) + math.log(2.0)) / 2
    per_chain = acc / layers + log_w  # E log|w_{j+1}| is exact; w_{j+1} is independent of z_j
    sup = act.bound.sup if act.bound.known else None
    worst = log_w + math.log(float(sup)) if sup is not None and float(sup) > 0 else None
    if np.any(np.isneginf(per_chain)):
        frac = float(np.mean(np.isneginf(per_chain)))
        return GrowthRate(-math.inf, (-math.inf, -math.inf), log_w, worst, samples * layers,
                          "φ' = 0 on a set the chain visits (%.0f%% of chains): the gradient dies, λ = −∞" % (100 * frac))
    mean = float(np.mean(per_chain))
    sd = float(np.std(per_chain, ddof=1))
    # 99% normal interval over independent chains, widened by the rounding of the sums
    # (``layers`` additions per chain, then a mean over chains).
    half = 2.576 * sd / math.sqrt(samples) + 4 * _U * (layers + samples) * float(np.max(np.abs(per_chain)))
    return GrowthRate(mean, (mean - half, mean + half), log_w, worst, samples * layers)



# ---------------------------------------------------------------------------------------------
# Critical gain, beside torch.nn.init.calculate_gain
# ---------------------------------------------------------------------------------------------

#: The gains that ``torch.nn.init.calculate_gain`` returns, copied from PyTorch's source
#: (``torch/nn/init.py``; constants, not derived: PyTorch issue 24991, "how were the gains
#: derived", asks where they come from).  Keys are symgrad's activation names; leaky ReLU at
#: PyTorch's default slope 0.01, which is also symgrad's.
TORCH_GAINS = {
    "identity": sympy.Integer(1),
    "relu": sympy.sqrt(2),
    "leaky_relu": sympy.sqrt(sympy.Rational(2) / (1 + sympy.Rational(1, 100) ** 2)),
    "tanh": sympy.Rational(5, 3),
    "sigmoid": sympy.Integer(1),
    "selu": sympy.Rational(3, 4),
}

#: Largest σ_b² that :func:`critical_gain` searches for a critical point.
_MAX_GAIN_B2 = 100.0


@dataclass(frozen=True)
class CriticalGain:
    """The critical initialisation of one activation (:func:`critical_gain`).

    * ``gain``: σ_w (the standard deviation multiplier of ``N(0, σ_w²/n_in)``, what PyTorch calls
      the gain), a :class:`MeanFieldValue`;
    * ``sigma_w2``: σ_w² = gain², and ``sigma_b2``: the bias variance it goes with (0 where
      criticality is reachable without biases, else the smallest σ_b² that allows it);
    * ``explanation``: one or two sentences saying why.

    >>> critical_gain("relu").gain.exact
    sqrt(2)
    """

    activation: str
    gain: MeanFieldValue
    sigma_w2: MeanFieldValue
    sigma_b2: MeanFieldValue
    explanation: str


@dataclass(frozen=True)
class GainRow:
    """One row of :func:`gain_table`: PyTorch's gain for an activation beside the critical one.

    * ``torch_gain``: ``calculate_gain``'s constant (SymPy), or None where PyTorch has none;
    * ``critical``: the :class:`CriticalGain`;
    * ``chi1_at_torch``: χ₁ at σ_w² = torch_gain² and the critical row's σ_b² (None without a
      PyTorch gain), and ``phase_at_torch`` its phase;
    * ``note``: why the two differ, in words.

    >>> row = gain_table(["tanh"])[0]
    >>> row.torch_gain, row.critical.gain.exact, row.phase_at_torch
    (5/3, 1, 'chaotic')
    """

    activation: str
    torch_gain: sympy.Expr | None
    critical: CriticalGain
    chi1_at_torch: MeanFieldValue | None
    phase_at_torch: str | None
    note: str


def _sqrt_value(v: MeanFieldValue, what: str) -> MeanFieldValue:
    """√v with its error: |δ√v| ≤ δv / (2√v) (first order), plus rounding."""
    if v.exact is not None:
        ex = sympy.sqrt(v.exact)
        return MeanFieldValue(float(ex), 0.0, ex, "exact: √(%s)" % what)
    r = math.sqrt(v.value)
    return MeanFieldValue(r, (v.error / (2 * r) if r > 0 else math.sqrt(v.error)) + 2 * _U * r, None, "quadrature: √(%s)" % what)


def _critical_or_none(act, b2f):
    v = _numeric_critical(act, b2f)
    return None if isinstance(v, InvalidArgument) else v


def critical_gain(activation) -> CriticalGain:
    r"""The critical gain of an activation: σ_w at σ_b = 0 where χ₁ = 1 at an attracting fixed
    point q* of the length map, or, where σ_b = 0 allows no such point, the smallest σ_b² that does
    (found by bisection on σ_b² ∈ (0, 100], assuming, as for GELU and SiLU, that a critical point
    exists for every σ_b² above the smallest one), with σ_w on the critical line there.

    Exact values: the identity 1, ReLU √2, leaky ReLU √(2/(1 + α²)), and every activation through
    the origin with slopes φ'(0±) at σ_b = 0, where q* = 0 and χ₁ = σ_w² (φ'(0⁺)² + φ'(0⁻)²)/2
    (tanh 1, SELU √(2/(λ² + λ²α²)) ≈ 0.6905).  Sigmoid has φ(0) = 1/2, so q* > 0 even without
    biases, and its critical σ_w ≈ 10.15 at σ_b = 0 comes from quadrature.  GELU and SiLU (φ'(0) =
    1/2, q* = 0 at σ_b = 0) would need σ_w² = 4, where the length map no longer has q* = 0 as an
    attractor, so they need a positive σ_b².

    Compare PyTorch's ``calculate_gain`` (:data:`TORCH_GAINS`, :func:`gain_table`): those gains
    keep the forward variance of a fan-in initialisation roughly constant; they are not chosen
    for χ₁ = 1 (Schoenholz et al. 2017).

    Raises :class:`~symgrad.InvalidArgument` where no critical point exists for σ_b² ≤ 100
    (softplus: its φ' > 1/2 region never balances its growing mean) or the Gaussian moments do
    not exist.

    >>> critical_gain("tanh").gain.exact
    1
    >>> round(critical_gain("sigmoid").gain.value, 3)
    10.149
    """
    act = _act(activation)
    try:
        w2 = critical_sigma_w2(act, 0)
    except InvalidArgument:
        w2 = None
    if w2 is not None:
        zero = MeanFieldValue(0.0, 0.0, sympy.Integer(0), "σ_b² = 0")
        if w2.exact is not None:
            why = ("χ₁ = 1 at σ_b = 0 in closed form (%s), so the critical gain is σ_w = √(%s)"
                   % (w2.method.replace("exact: ", ""), sympy.sstr(w2.exact) if len(sympy.sstr(w2.exact)) < 30 else "%.6g" % w2.value))
        else:
            why = ("χ₁ = 1 at σ_b = 0 at an attracting fixed point q* > 0 of the length map (φ(0) ≠ 0 or no closed form), "
                   "σ_w² = %.10g ± %.1g by quadrature" % (w2.value, w2.error))
        return CriticalGain(act.name, _sqrt_value(w2, "critical σ_w²"), w2, zero, why)
    # No critical point at σ_b = 0: bisect for the smallest σ_b² with one.
    grid = np.geomspace(1e-6, _MAX_GAIN_B2, 41)
    lo, hi, found = 0.0, None, None
    for b in grid:
        v = _critical_or_none(act, float(b))
        if v is not None:
            hi, found = float(b), v
            break
        lo = float(b)
    if hi is None:
        raise InvalidArgument("no critical initialisation for %s: χ₁ = 1 at no attracting fixed point for σ_b² in [0, %g]; "
                              "choose σ_w², σ_b² by the phase (meanfield.phase) instead" % (act.name, _MAX_GAIN_B2))
    while hi - lo > 1e-5 * hi:
        mid = 0.5 * (lo + hi)
        v = _critical_or_none(act, mid)
        if v is None:
            lo = mid
        else:
            hi, found = mid, v
    b2 = MeanFieldValue(hi, hi - lo, None, "bisection: no critical point at σ_b² = %.6g, one at %.6g" % (lo, hi))
    why = ("at σ_b = 0 χ₁ = 1 at no attracting fixed point of the length map; the smallest σ_b² that allows criticality "
           "is %.6g (bisection to ± %.1g), with σ_w² = %.8g there" % (hi, hi - lo, found.value))
    return CriticalGain(act.name, _sqrt_value(found, "critical σ_w²"), found, b2, why)


_GAIN_NOTES = {
    "identity": "the same: a linear network preserves the variance, and χ₁ = σ_w² = 1 is critical",
    "relu": "the same: He et al. (2015) chose √2 to keep the forward variance, and for ReLU that is also χ₁ = σ_w²/2 = 1",
    "leaky_relu": "the same: He et al.'s √(2/(1 + α²)) is also χ₁ = σ_w²(1 + α²)/2 = 1",
    "tanh": ("different: 5/3 is a heuristic that keeps tanh's activations away from saturation with a fan-in init; "
             "the critical gain is 1 (at σ_b = 0 the fixed point is q* = 0 and χ₁ = σ_w² φ'(0)² = σ_w²), "
             "so 5/3 (σ_w² = 25/9) puts tanh in the chaotic phase, where gradients grow per layer by χ₁"),
    "sigmoid": ("different: PyTorch's 1 only says 'no change'; sigmoid(0) = 1/2 makes q* > 0, χ₁ is about 0.056 at σ_w = 1 "
                "(deeply ordered: gradients vanish), and χ₁ = 1 needs σ_w ≈ 10.15"),
    "selu": ("different: 3/4 is PyTorch's compromise for rectangular layers (its docs say to use 'linear', gain 1, for "
             "self-normalising networks); the critical gain at σ_b = 0 is √(2/(λ² + λ²α²)) ≈ 0.69, so 3/4 sits slightly "
             "in the chaotic phase"),
}


def gain_table(activations=("identity", "relu", "leaky_relu", "tanh", "sigmoid", "selu")) -> list:
    """PyTorch's ``torch.nn.init.calculate_gain`` beside the critical gain, one :class:`GainRow` per
    activation, with χ₁ and the phase at PyTorch's gain.

    Why they differ: ``calculate_gain``'s constants (``torch/nn/init.py``; see PyTorch issue
    24991, which asks how they were derived) scale a fan-in initialisation so that the forward
    variance of a *linear* pre-activation stays about constant — exact for the identity and ReLU
    (He et al. 2015), a heuristic for tanh (5/3, keeping activations away from saturation) and
    SELU (3/4, paired with its own self-normalising scheme).  The critical gain instead sets
    χ₁ = σ_w² E[φ'(√q* Z)²] = 1 at the fixed point q*, so that backpropagated gradients neither
    vanish nor explode with depth (Schoenholz et al. 2017).  The two agree for the identity, ReLU
    and leaky ReLU, and differ for tanh (5/3 vs 1: chaotic, χ₁ ≈ 1.21), sigmoid (1 vs ≈ 10.15:
    ordered, χ₁ ≈ 0.056) and SELU (3/4 vs ≈ 0.69).

    symgrad does not import torch: the constants are in :data:`TORCH_GAINS`.

    >>> [(r.activation, r.phase_at_torch) for r in gain_table(["relu", "sigmoid"])]
    [('relu', 'critical'), ('sigmoid', 'ordered')]
    """
    if isinstance(activations, (str, Activation)):
        activations = [activations]
    rows = []
    for a in activations:
        act = _act(a)
        cg = critical_gain(act)
        tg = TORCH_GAINS.get(act.name) if act.builtin else None
        c1 = ph = None
        if tg is not None:
            w2 = sympy.nsimplify(tg ** 2)
            b2 = cg.sigma_b2.exact if cg.sigma_b2.exact is not None else cg.sigma_b2.value
            c1 = chi1(act, sympy.Rational(w2) if w2.is_Rational else float(w2), b2)
            ph = phase(act, sympy.Rational(w2) if w2.is_Rational else float(w2), b2)
        note = _GAIN_NOTES.get(act.name, "PyTorch has no gain for %s" % act.name if tg is None else "")
        rows.append(GainRow(act.name, tg, cg, c1, ph, note))
    return rows


def gradient_depth_scale(activation, sigma_w2, sigma_b2, *, q0=1.0) -> MeanFieldValue:
    """ξ_∇ = 1/|ln χ₁| alone (layers; ``math.inf`` at criticality), without the correlation fixed
    point that :func:`depth_scales` also solves (Schoenholz et al. 2017, eq. 9): the same value as
    ``depth_scales(...).xi_grad``, fast enough for the command line in the chaotic phase.

    >>> gradient_depth_scale("relu", 1, 1).exact
    1/log(2)
    """
    return _xi(chi1(activation, sigma_w2, sigma_b2, q0=q0), "χ₁")
