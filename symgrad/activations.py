"""The activation catalogue: exact symbolic facts and stable NumPy kernels for each φ.

An :class:`Activation` bundles, for one function φ:

* ``expr``: φ(z) as a SymPy expression in the real symbol :data:`z`;
* ``derivative``: φ'(z) in closed form (sigmoid's is ``σ(z)(1 − σ(z))``, tanh's ``1 − tanh²(z)``);
* ``prime(arg)``: φ' applied to ``arg`` as an *unevaluated* SymPy function that prints as
  ``\\sigma'(z_1)`` and turns into the closed form under ``.doit()``.  Gradient chains are built
  from these, so that a depth-10000 chain costs one cheap function application per layer;
* ``bound``: the exact supremum of ``|φ'|``, where it is attained, and the range of φ';
* ``value``, ``grad`` and ``log_abs_grad``: NumPy kernels that are stable for every finite
  float64 input (no overflow, no ``RuntimeWarning``, no nan).

Convention at kinks.  ReLU, LeakyReLU and ELU are not differentiable at 0 (ELU only when
α ≠ 1).  Everywhere in symgrad, symbolic and numeric, φ'(0) is the derivative of the branch
z ≤ 0, i.e. the left derivative: ``relu'(0) = 0``, ``leaky_relu'(0) = α``, ``elu'(0) = α``.  This
is PyTorch's convention too, so autograd comparisons agree at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np
import sympy
from sympy import S, Function

from .errors import InvalidArgument

__all__ = [
    "Activation",
    "DerivativeBound",
    "activation",
    "custom_activation",
    "BUILTIN_ACTIVATIONS",
    "z",
    "sigmoid",
    "relu",
    "leaky_relu",
    "elu",
    "softplus",
]

#: The real variable every activation expression is written in.
z = sympy.Symbol("z", real=True)


# ---------------------------------------------------------------------------------------------
# SymPy functions.  Each has a closed-form ``fdiff`` (so derivatives do not swell), a ``_latex``
# (so it prints as the literature writes it) and a rewrite into elementary functions (so tests
# can check the closed form against SymPy's own differentiation of the elementary form).
# ---------------------------------------------------------------------------------------------


class sigmoid(Function):
    r"""The logistic function σ(z) = 1/(1 + e^{−z}); ``diff`` gives ``σ(z)(1 − σ(z))``."""

    nargs = 1
    is_real = True

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return S.Half
        if arg is S.Infinity:
            return S.One
        if arg is S.NegativeInfinity:
            return S.Zero

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sympy.exp(-arg))

    def _eval_is_positive(self):
        return self.args[0].is_extended_real

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.exp)._eval_evalf(prec)

    def _latex(self, printer, exp=None):
        s = r"\sigma\mathopen{}\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"\sigma^{%s}\mathopen{}\left(%s\right)" % (exp, printer._print(self.args[0]))


class relu(Function):
    r"""ReLU(z) = max(0, z); ``diff`` gives ``θ(z)`` with θ(0) = 0 (the left derivative)."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_number and arg.is_extended_real:
            return sympy.Max(S.Zero, arg)
        if arg.is_extended_nonpositive:
            return S.Zero
        if arg.is_extended_nonnegative:
            return arg

    def _eval_is_extended_real(self):
        # Real for real arguments: SymPy's simplifications (and the parser's limits) rely on it.
        return self.args[0].is_extended_real

    def fdiff(self, argindex=1):
        return sympy.Heaviside(self.args[0], 0)

    def _eval_rewrite_as_Piecewise(self, arg, **kwargs):
        return sympy.Piecewise((arg, arg > 0), (0, True))

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.Piecewise)._eval_evalf(prec)

    def _latex(self, printer, exp=None):
        s = r"\operatorname{ReLU}\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"%s^{%s}" % (s, exp)


class leaky_relu(Function):
    r"""LeakyReLU_α(z) = z for z > 0, αz otherwise; φ'(0) = α by the left-derivative convention."""

    nargs = 2

    @classmethod
    def eval(cls, arg, alpha):
        if arg.is_number and arg.is_extended_real:
            return arg if arg > 0 else alpha * arg

    def fdiff(self, argindex=1):
        arg, alpha = self.args
        if argindex == 1:
            return alpha + (1 - alpha) * sympy.Heaviside(arg, 0)
        return sympy.Min(arg, 0)  # ∂/∂α

    def _eval_rewrite_as_Piecewise(self, arg, alpha, **kwargs):
        return sympy.Piecewise((arg, arg > 0), (alpha * arg, True))

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.Piecewise)._eval_evalf(prec)

    def _latex(self, printer, exp=None):
        s = r"\operatorname{LReLU}_{%s}\left(%s\right)" % (printer._print(self.args[1]), printer._print(self.args[0]))
        return s if exp is None else r"%s^{%s}" % (s, exp)


class elu(Function):
    r"""ELU_α(z) = z for z > 0, α(e^z − 1) otherwise; φ'(0) = α by the left-derivative convention."""

    nargs = 2

    @classmethod
    def eval(cls, arg, alpha):
        if arg.is_number and arg.is_extended_real:
            return arg if arg > 0 else alpha * (sympy.exp(arg) - 1)

    def fdiff(self, argindex=1):
        arg, alpha = self.args
        if argindex == 1:
            return sympy.Piecewise((1, arg > 0), (alpha * sympy.exp(arg), True))
        return sympy.Piecewise((0, arg > 0), (sympy.exp(arg) - 1, True))

    def _eval_rewrite_as_Piecewise(self, arg, alpha, **kwargs):
        return sympy.Piecewise((arg, arg > 0), (alpha * (sympy.exp(arg) - 1), True))

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.Piecewise)._eval_evalf(prec)

    def _latex(self, printer, exp=None):
        s = r"\operatorname{ELU}_{%s}\left(%s\right)" % (printer._print(self.args[1]), printer._print(self.args[0]))
        return s if exp is None else r"%s^{%s}" % (s, exp)


class softplus(Function):
    r"""softplus(z) = log(1 + e^z); ``diff`` gives ``σ(z)``."""

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sympy.log(2)

    def _eval_is_extended_real(self):
        # Real for real arguments: SymPy's simplifications (and the parser's limits) rely on it.
        return self.args[0].is_extended_real

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return sympy.log(1 + sympy.exp(arg))

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.exp)._eval_evalf(prec)

    def _latex(self, printer, exp=None):
        s = r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"%s^{%s}" % (s, exp)


class ActivationPrime(Function):
    r"""φ'(arg) for one activation, unevaluated: prints ``\sigma'(z_1)``, ``.doit()`` gives the
    closed form.  One subclass is made per :class:`Activation` (see :attr:`Activation.prime`)."""

    nargs = 1
    _activation: "Activation"

    @classmethod
    def at(cls, arg: sympy.Basic) -> "ActivationPrime":
        """``cls(arg)`` without the evaluation machinery (φ' never auto-evaluates, so the result
        is the same object structure), about 10× faster: chains make one per layer."""
        return sympy.Basic.__new__(cls, arg)

    def doit(self, deep=True, **hints):
        arg = self.args[0].doit(deep=deep, **hints) if deep else self.args[0]
        return self._activation.derivative_at(arg)

    def fdiff(self, argindex=1):
        second = sympy.diff(self._activation.derivative, z)
        return second.xreplace({z: self.args[0]})

    def _eval_evalf(self, prec):
        return self.doit()._eval_evalf(prec)

    def _latex(self, printer, exp=None):
        # \mathopen{} stops TeX spacing \left( as an inner atom: σ'(z), not σ' (z).
        s = r"%s'\mathopen{}\left(%s\right)" % (self._activation.latex_name, printer._print(self.args[0]))
        return s if exp is None else r"\left(%s\right)^{%s}" % (s, exp)

    def _sympystr(self, printer):
        return "%s'(%s)" % (self._activation.name, printer._print(self.args[0]))


# ---------------------------------------------------------------------------------------------
# Stable NumPy kernels.  The rule: never exponentiate a positive number that can be large;
# write each φ' through e = exp(−|z|) ∈ (0, 1], and each log|φ'| as a sum of logs.
# ---------------------------------------------------------------------------------------------


def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _np_dsigmoid(x):
    e = np.exp(-np.abs(x))
    # e/(1 + e)² can round one ulp above its exact maximum 1/4 just off 0; clamp to the sup.
    return np.minimum(e / ((1.0 + e) * (1.0 + e)), 0.25)


def _np_log_dsigmoid(x):
    a = np.abs(x)
    return -a - 2.0 * np.log1p(np.exp(-a))


def _np_log_sigmoid(x):
    # log σ(x) = −softplus(−x)
    return -(np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x))))


def _np_dtanh(x):
    # Clamp before doubling: 2|x| overflows past 8.9e307, and e^{-2|x|} is 0 long before that.
    e = np.exp(-2.0 * np.minimum(np.abs(x), 1e4))
    return np.minimum(4.0 * e / ((1.0 + e) * (1.0 + e)), 1.0)  # never above the exact sup 1


def _np_log_dtanh(x):
    a = np.abs(x)
    with np.errstate(over="ignore"):  # below −1.8e308 the correctly rounded log is −inf
        twice = -2.0 * a
    return math.log(4.0) + twice - 2.0 * np.log1p(np.exp(-2.0 * np.minimum(a, 1e4)))


def _log_abs_where(t):
    """log|t| with −inf (and no warning) where t == 0."""
    t = np.abs(t)
    pos = t > 0
    return np.where(pos, np.log(np.where(pos, t, 1.0)), -np.inf)


def _np_silu_grad(x):
    s = _np_sigmoid(x)
    return s * (1.0 + x * _np_sigmoid(-x))


def _np_silu_log_grad(x):
    # φ' = σ(x)(1 + x σ(−x)); the second factor is 1 − O(|x|e^{−|x|}) for x ≫ 0 and ≈ 1 + x for x ≪ 0.
    return _np_log_sigmoid(x) + _log_abs_where(1.0 + x * _np_sigmoid(-x))


_SQRT_2PI_LOG = 0.5 * math.log(2.0 * math.pi)


def _np_gelu(x):
    from scipy.special import ndtr

    return x * ndtr(x)


def _np_gelu_grad(x):
    from scipy.special import ndtr

    with np.errstate(over="ignore"):
        pdf = np.exp(-0.5 * np.square(x) - _SQRT_2PI_LOG)
    return ndtr(x) + x * pdf


def _np_gelu_log_grad(x):
    """log|Φ(x) + x ϕ(x)|, written as log ϕ(x) + log|R(x) + x| with R = Φ/ϕ (Mills ratio), so
    that it stays finite far into the left tail.  Below x ≈ −1.9e154 the true value is under
    −1.8e308 and the result is −inf (correctly rounded), never nan."""
    from scipy.special import log_ndtr, ndtr

    with np.errstate(over="ignore"):  # x² overflows past 1.3e154: log ϕ is then −inf, correctly rounded
        log_pdf = -0.5 * np.square(x) - _SQRT_2PI_LOG
    # Below −1e8, R(x) + x = x + 1/|x| + … equals x to double precision (and log Φ − log ϕ
    # would cancel catastrophically), so use log|x| there.
    far = x < -1e8
    xs = np.where(far | (x >= 0), -1.0, x)
    ratio = np.exp(log_ndtr(xs) + 0.5 * np.square(xs) + _SQRT_2PI_LOG)
    left = log_pdf + np.where(far, np.log(np.where(far, -x, 1.0)), _log_abs_where(ratio + xs))
    xp = np.maximum(x, 0.0)
    right = np.log(ndtr(xp) + xp * np.exp(-0.5 * np.square(np.minimum(xp, 40.0)) - _SQRT_2PI_LOG))
    return np.where(x >= 0, right, left)


# ---------------------------------------------------------------------------------------------
# Activation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DerivativeBound:
    """What symgrad knows about ``sup_z |φ'(z)|``.

    * ``sup``: the supremum, exact (a SymPy number) when ``exact`` is true; otherwise a
      SymPy Float certified to the digits stated in ``note``; ``None`` when unknown.
    * ``attained_at``: a SymPy set of the z where ``|φ'(z)| = sup`` (``EmptySet`` when the
      supremum is only approached, e.g. softplus as z → ∞); ``None`` when unknown.
    * ``range``: the range of φ' as a SymPy set, or ``None`` when unknown.
    * ``note``: how the facts were obtained, and any caveat.
    """

    sup: sympy.Expr | None
    attained_at: sympy.Set | None
    range: sympy.Set | None
    exact: bool
    note: str = ""

    @property
    def known(self) -> bool:
        return self.sup is not None


@dataclass(frozen=True, eq=False)
class Activation:
    """One activation function φ with its symbolic facts and stable NumPy kernels.

    Make one with :func:`activation` (built-ins, by name) or :func:`custom_activation`.

    >>> from symgrad import activation
    >>> sig = activation("sigmoid")
    >>> sig.derivative
    (1 - sigmoid(z))*sigmoid(z)
    >>> sig.bound.sup, sig.bound.attained_at
    (1/4, {0})
    """

    name: str
    expr: sympy.Expr
    derivative: sympy.Expr
    latex_name: str
    value: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    grad: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    log_abs_grad: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    _bound: DerivativeBound | None = field(default=None, repr=False)
    builtin: bool = True
    params: tuple = ()

    def __call__(self, arg):
        """φ(arg) as a SymPy expression (``sigmoid(w_1*a_0 + b_1)``)."""
        return self.expr.xreplace({z: sympy.sympify(arg)}) if not isinstance(arg, sympy.Basic) else self.expr.xreplace({z: arg})

    def derivative_at(self, arg) -> sympy.Expr:
        """φ'(arg) in closed form."""
        return self.derivative.xreplace({z: arg})

    @cached_property
    def prime(self) -> type[ActivationPrime]:
        """The unevaluated SymPy function φ' (``sig.prime(z1)`` prints ``sigmoid'(z1)``)."""
        cls_name = "%s_prime" % self.name.replace("-", "_")
        return type(cls_name, (ActivationPrime,), {"_activation": self})

    @property
    def bound(self) -> DerivativeBound:
        """Supremum of |φ'|, where it is attained, and the range of φ' (see DerivativeBound)."""
        if self._bound is None:
            object.__setattr__(self, "_bound", _derive_bound(self))
        return self._bound

    def latex(self) -> str:
        """φ(z) in LaTeX."""
        return sympy.latex(self.expr)

    def __eq__(self, other):
        if not isinstance(other, Activation):
            return NotImplemented
        return self.name == other.name and self.expr == other.expr

    def __hash__(self):
        return hash((self.name, self.expr))

    def __repr__(self):
        return "Activation(%r, %s)" % (self.name, self.expr)


def _derive_bound(act: Activation) -> DerivativeBound:
    """Sup of |φ'| for a custom activation, by SymPy where it can (critical points of φ'
    and the limits at ±∞); otherwise a bound that says it is unknown."""
    d = act.derivative.rewrite(sympy.exp) if act.derivative.has(sigmoid, softplus) else act.derivative
    try:
        hi = sympy.calculus.util.maximum(d, z, S.Reals)
        lo = sympy.calculus.util.minimum(d, z, S.Reals)
    except (NotImplementedError, ValueError, TypeError) as exc:
        return DerivativeBound(None, None, None, False, "SymPy could not find the extrema of φ' (%s); pass bound= to custom_activation" % type(exc).__name__)
    if not (hi.is_number and lo.is_number) or hi.has(sympy.nan, sympy.zoo) or lo.has(sympy.nan, sympy.zoo):
        return DerivativeBound(None, None, None, False, "SymPy could not find the extrema of φ'; pass bound= to custom_activation")
    sup = sympy.Max(sympy.Abs(hi), sympy.Abs(lo))
    try:
        rng = sympy.calculus.util.function_range(d, z, S.Reals)
    except (NotImplementedError, ValueError, TypeError):
        rng = sympy.Interval(lo, hi)
    try:
        attained = sympy.solveset(sympy.Eq(sympy.Abs(d), sup), z, S.Reals) if sup.is_finite else S.EmptySet
        if isinstance(attained, sympy.ConditionSet):
            attained = None
    except (NotImplementedError, ValueError, TypeError):
        attained = None
    return DerivativeBound(sup, attained, rng, True, "derived by SymPy from the critical points and limits of φ'")


def _certified_root(f: Callable[[sympy.Expr], sympy.Expr], lo, hi, digits: int = 30) -> sympy.Float:
    """A root of ``f`` in ``[lo, hi]``, certified by a sign change of ``f`` at the ends of an
    interval of width 10^-digits around it, evaluated in exact-then-rounded arithmetic."""
    import mpmath

    with mpmath.workdps(digits + 20):
        g = lambda t: sympy.N(f(sympy.Float(t, digits + 20)), digits + 20)  # noqa: E731
        r = mpmath.findroot(lambda t: mpmath.mpf(str(g(t))), (mpmath.mpf(lo) + mpmath.mpf(hi)) / 2)
        eps = mpmath.mpf(10) ** (-digits)
        a, b = sympy.Rational(str(r - eps)), sympy.Rational(str(r + eps))
        fa, fb = f(a).evalf(digits + 20), f(b).evalf(digits + 20)
        text = mpmath.nstr(r, digits + 5)  # inside workdps: str() outside would round to 15 digits
    if not (fa * fb < 0):
        raise ArithmeticError("root of %s in [%s, %s] could not be certified" % (f, lo, hi))
    return sympy.Float(text, digits)


def _make_builtins() -> dict[str, Callable[..., Activation]]:
    pi, exp, erf, sqrt = sympy.pi, sympy.exp, sympy.erf, sympy.sqrt
    oo = S.Infinity
    Interval, FiniteSet = sympy.Interval, sympy.FiniteSet

    def make_sigmoid():
        return Activation(
            "sigmoid", sigmoid(z), sigmoid(z) * (1 - sigmoid(z)), r"\sigma",
            _np_sigmoid, _np_dsigmoid, _np_log_dsigmoid,
            DerivativeBound(S(1) / 4, FiniteSet(0), Interval.Lopen(0, S(1) / 4), True,
                            "1/4 − σ'(z) = (σ(z) − 1/2)² ≥ 0, zero iff z = 0"),
        )

    def make_tanh():
        return Activation(
            "tanh", sympy.tanh(z), 1 - sympy.tanh(z) ** 2, r"\tanh",
            np.tanh, _np_dtanh, _np_log_dtanh,
            DerivativeBound(S.One, FiniteSet(0), Interval.Lopen(0, 1), True, "1 − tanh'(z) = tanh²(z) ≥ 0, zero iff z = 0"),
        )

    def make_relu():
        return Activation(
            "relu", relu(z), sympy.Heaviside(z, 0), r"\operatorname{ReLU}",
            lambda x: np.maximum(x, 0.0) + 0.0 * x,
            lambda x: (x > 0).astype(np.result_type(x, np.float64)),
            lambda x: np.where(x > 0, 0.0, -np.inf),
            DerivativeBound(S.One, Interval.open(0, oo), FiniteSet(0, 1), True, "φ' is 1 for z > 0 and 0 for z ≤ 0 (convention at 0)"),
        )

    def make_leaky_relu(alpha=S(1) / 100):
        a = _exact_param("leaky_relu", "alpha", alpha)
        af = float(a)
        sup = sympy.Max(S.One, abs(a))
        where = Interval.open(0, oo) if abs(a) < 1 else (Interval(-oo, 0) if abs(a) > 1 else S.Reals)
        log_a = math.log(abs(af)) if af != 0 else -math.inf
        return Activation(
            "leaky_relu", leaky_relu(z, a), a + (1 - a) * sympy.Heaviside(z, 0), r"\operatorname{LReLU}_{%s}" % sympy.latex(a),
            lambda x: np.where(x > 0, x, af * x),
            lambda x: np.where(x > 0, 1.0, af),
            lambda x: np.where(x > 0, 0.0, log_a),
            DerivativeBound(sup, where, FiniteSet(a, 1), True, "φ' is 1 for z > 0 and α for z ≤ 0 (convention at 0)"),
            params=(("alpha", a),),
        )

    def make_elu(alpha=S.One):
        a = _exact_param("elu", "alpha", alpha)
        if not a > 0:
            raise InvalidArgument("elu: alpha=%s must be > 0 (ELU's negative branch is α(e^z − 1)); use e.g. alpha=1" % alpha)
        af = float(a)
        log_a = math.log(af)
        if a < 1:
            bound = DerivativeBound(S.One, Interval.open(0, oo), sympy.Union(Interval.Lopen(0, a), FiniteSet(1)), True,
                                    "φ' = 1 for z > 0 and αe^z ∈ (0, α] for z ≤ 0")
        elif a == 1:
            bound = DerivativeBound(S.One, Interval(0, oo), Interval.Lopen(0, 1), True, "φ' = 1 for z ≥ 0 and e^z for z < 0")
        else:
            bound = DerivativeBound(a, FiniteSet(0), sympy.Union(Interval.Lopen(0, a)), True,
                                    "φ' = αe^z ∈ (0, α] for z ≤ 0 (α at z = 0 by the convention) and 1 for z > 0")
        return Activation(
            "elu", elu(z, a), sympy.Piecewise((1, z > 0), (a * exp(z), True)), r"\operatorname{ELU}_{%s}" % sympy.latex(a),
            lambda x: np.where(x > 0, x, af * np.expm1(np.minimum(x, 0.0))),
            lambda x: np.where(x > 0, 1.0, af * np.exp(np.minimum(x, 0.0))),
            lambda x: np.where(x > 0, 0.0, log_a + np.minimum(x, 0.0)),
            bound,
            params=(("alpha", a),),
        )

    def make_softplus():
        return Activation(
            "softplus", softplus(z), sigmoid(z), r"\operatorname{softplus}",
            lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),
            _np_sigmoid, _np_log_sigmoid,
            DerivativeBound(S.One, S.EmptySet, Interval.open(0, 1), True, "φ' = σ(z) < 1, approaching 1 as z → ∞"),
        )

    def make_silu():
        # φ'' = σ'(z)(2 − z·tanh(z/2)); the extremes of φ' are at the roots ±z* of z·tanh(z/2) = 2.
        g = lambda t: t * sympy.tanh(t / 2) - 2  # noqa: E731
        zstar = _certified_root(g, 2, 3)
        d = sigmoid(z) * (1 + z * (1 - sigmoid(z)))
        top = d.xreplace({z: zstar}).rewrite(exp).evalf(30)
        bottom = d.xreplace({z: -zstar}).rewrite(exp).evalf(30)
        return Activation(
            "silu", z * sigmoid(z), d, r"\operatorname{SiLU}",
            lambda x: x * _np_sigmoid(x), _np_silu_grad, _np_silu_log_grad,
            DerivativeBound(top, FiniteSet(zstar), Interval(bottom, top), False,
                            "attained at z* ≈ %s, the certified root of z·tanh(z/2) = 2 (30 digits); φ' = 1 − φ'(−z) so min φ' = 1 − sup" % sympy.Float(zstar, 8)),
        )

    def make_gelu():
        d = (1 + erf(z / sqrt(2))) / 2 + z * exp(-z ** 2 / 2) / sqrt(2 * pi)
        top = (1 + erf(1)) / 2 + exp(-1) / sqrt(pi)
        bottom = (1 - erf(1)) / 2 - exp(-1) / sqrt(pi)
        return Activation(
            "gelu", z * (1 + erf(z / sqrt(2))) / 2, d, r"\operatorname{GELU}",
            _np_gelu, _np_gelu_grad, _np_gelu_log_grad,
            DerivativeBound(top, FiniteSet(sqrt(2)), Interval(bottom, top), True, "φ'' = ϕ(z)(2 − z²) vanishes at z = ±√2"),
        )

    def make_softsign():
        return Activation(
            "softsign", z / (1 + sympy.Abs(z)), 1 / (1 + sympy.Abs(z)) ** 2, r"\operatorname{softsign}",
            lambda x: x / (1.0 + np.abs(x)),
            lambda x: np.square(1.0 / (1.0 + np.abs(x))),
            lambda x: -2.0 * np.log1p(np.abs(x)),
            DerivativeBound(S.One, FiniteSet(0), Interval.Lopen(0, 1), True, "φ' = 1/(1 + |z|)² decreases in |z|"),
        )

    def make_identity():
        return Activation(
            "identity", z, S.One, r"\operatorname{id}",
            lambda x: x + 0.0, lambda x: np.ones_like(x, dtype=np.result_type(x, np.float64)), lambda x: np.zeros_like(x, dtype=np.result_type(x, np.float64)),
            DerivativeBound(S.One, S.Reals, FiniteSet(1), True, "φ' = 1"),
        )

    return {
        "sigmoid": make_sigmoid, "tanh": make_tanh, "relu": make_relu, "leaky_relu": make_leaky_relu,
        "elu": make_elu, "softplus": make_softplus, "silu": make_silu, "swish": make_silu,
        "gelu": make_gelu, "softsign": make_softsign, "identity": make_identity, "linear": make_identity,
    }


def _exact_param(act: str, pname: str, value) -> sympy.Rational:
    if isinstance(value, bool) or not isinstance(value, (int, float, sympy.Rational, str)):
        raise InvalidArgument("%s: %s=%r must be a real number, e.g. %s=0.01" % (act, pname, value, pname))
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument("%s: %s=%r must be finite" % (act, pname, value))
    try:
        return sympy.Rational(str(value)) if not isinstance(value, sympy.Rational) else value
    except (TypeError, ValueError):
        raise InvalidArgument("%s: %s=%r is not a number; pass e.g. %s=0.01" % (act, pname, value, pname)) from None


_FACTORIES = _make_builtins()
_CACHE: dict = {}

#: Names of the built-in activations (``swish`` is an alias of ``silu``, ``linear`` of ``identity``).
BUILTIN_ACTIVATIONS: tuple[str, ...] = tuple(_FACTORIES)


def activation(spec, **params) -> Activation:
    """Return an :class:`Activation` from a built-in name, an ``Activation``, a SymPy
    expression in ``z``, a callable building one, or a safely parsed expression string.

    >>> activation("leaky_relu", alpha=0.1).derivative
    9*Heaviside(z, 0)/10 + 1/10
    >>> activation("x*sigmoid(x)").name
    'x*sigmoid(x)'
    """
    if isinstance(spec, Activation):
        if params:
            raise InvalidArgument("activation: parameters %s cannot be applied to an existing Activation %r" % (sorted(params), spec.name))
        return spec
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in _FACTORIES:
            cache_key = (key, tuple(sorted((k, str(v)) for k, v in params.items())))
            if cache_key not in _CACHE:
                try:
                    _CACHE[cache_key] = _FACTORIES[key](**params)
                except TypeError:
                    raise InvalidArgument("activation %r takes no parameters %s; e.g. activation('leaky_relu', alpha=0.01)" % (spec, sorted(params))) from None
            return _CACHE[cache_key]
        if spec.strip().isidentifier():
            raise InvalidArgument(
                "unknown activation %r; known: %s (or pass an expression string in z such as 'z*sigmoid(z)')"
                % (spec, ", ".join(BUILTIN_ACTIVATIONS))
            )
    if params:
        raise InvalidArgument("activation: parameters %s are only for built-in activations" % sorted(params))
    return custom_activation(spec)


def custom_activation(spec, *, name: str | None = None, latex_name: str | None = None, bound: DerivativeBound | None = None) -> Activation:
    """An activation from a SymPy expression in :data:`z` (or any one real symbol), a callable
    ``f(z) -> sympy.Expr``, or an expression string parsed through an AST whitelist (never
    ``eval``/``sympify``).  Its derivative is SymPy's; its NumPy kernels are lambdified and
    carry no stability guarantee beyond what the expression itself has.

    >>> act = custom_activation("z/(1 + abs(z))", name="softsign2")
    >>> act.derivative
    -z*sign(z)/(Abs(z) + 1)**2 + 1/(Abs(z) + 1)
    """
    from ._parse import parse_expression

    label = name
    if isinstance(spec, str):
        expr = parse_expression(spec, z, functions={"sigmoid": sigmoid, "softplus": softplus, "relu": relu})
        label = label or spec.strip()
    elif isinstance(spec, sympy.Expr):
        free = spec.free_symbols
        if len(free) > 1:
            raise InvalidArgument("custom activation %s has %d free symbols %s; it must depend on one variable only" % (spec, len(free), sorted(map(str, free))))
        expr = spec.xreplace({next(iter(free)): z}) if free and z not in free else spec
        label = label or str(expr)
    elif callable(spec):
        try:
            expr = sympy.sympify(spec(z), strict=True)
        except Exception as exc:  # the user's callable failed: report it, do not hide it
            raise InvalidArgument("custom activation callable %r failed on a SymPy symbol: %s: %s" % (spec, type(exc).__name__, exc)) from exc
        if not isinstance(expr, sympy.Expr):
            raise InvalidArgument("custom activation callable %r returned %r, not a SymPy expression" % (spec, expr))
        return custom_activation(expr, name=name or getattr(spec, "__name__", None), latex_name=latex_name, bound=bound)
    else:
        raise InvalidArgument(
            "activation must be a built-in name (%s), an expression string, a SymPy expression or a callable; got %r of type %s"
            % (", ".join(BUILTIN_ACTIVATIONS), spec, type(spec).__name__)
        )
    if expr.free_symbols - {z}:
        raise InvalidArgument("custom activation %s must depend on z only" % expr)
    derivative = sympy.diff(expr, z)
    modules = [{"sigmoid": _np_sigmoid, "softplus": lambda x: np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))),
                "relu": lambda x: np.maximum(x, 0.0), "Heaviside": lambda x, h0=0.0: np.where(x > 0, 1.0, np.where(x < 0, 0.0, h0))}, "numpy"]
    fval = sympy.lambdify(z, expr, modules=modules)
    fgrad = sympy.lambdify(z, derivative, modules=modules)

    def value(x):
        return np.broadcast_to(fval(x), np.shape(x)).astype(np.result_type(x, np.float64))

    def grad(x):
        return np.broadcast_to(fgrad(x), np.shape(x)).astype(np.result_type(x, np.float64))

    def log_abs_grad(x):
        return _log_abs_where(grad(x))

    return Activation(
        label, expr, derivative, latex_name or (r"\varphi" if name is None else r"\operatorname{%s}" % name),
        value, grad, log_abs_grad, bound, builtin=False,
    )
