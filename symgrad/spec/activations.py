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

import functools
import math
import numbers
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Callable

import numpy as np
import sympy
from sympy import S, Function
from sympy.core.symbol import Str
from sympy.core.evalf import prec_to_dps

from symgrad.errors import InvalidArgument, SymgradError

__all__ = [
    "Activation",
    "DerivativeBound",
    "activation",
    "custom_activation",
    "BUILTIN_ACTIVATIONS",
    "OUTPUT_ACTIVATIONS",
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

    def _eval_is_extended_real(self):
        # Real for real arguments only (σ(iπ) is a pole), as relu and softplus.
        return self.args[0].is_extended_real

    def _eval_is_finite(self):
        if self.args[0].is_extended_real:  # σ(±∞) is 1 or 0
            return True

    def _eval_is_positive(self):
        return self.args[0].is_extended_real

    def _eval_evalf(self, prec):
        # Not self.rewrite(exp): that rewrites the argument too (sin into complex exponentials),
        # and σ(sin(1/2)) came out with an imaginary part of 1e-28.
        # evalf (adaptive), not _eval_evalf: at prec = 2 bits, which SymPy's sign tests ask
        # for, the raw hook gave softplus(π) = 0.
        return (1 / (1 + sympy.exp(-self.args[0]))).evalf(prec_to_dps(prec))

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

    def _eval_is_finite(self):
        if self.args[0].is_extended_real:
            return self.args[0].is_finite

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

    def _eval_is_finite(self):
        if self.args[0].is_extended_real:
            return self.args[0].is_finite

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return sympy.log(1 + sympy.exp(arg))

    def _eval_evalf(self, prec):
        return sympy.log(1 + sympy.exp(self.args[0])).evalf(prec_to_dps(prec))  # (as sigmoid's)

    def _latex(self, printer, exp=None):
        s = r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"%s^{%s}" % (s, exp)


class ActivationPrime(Function):
    r"""φ'(arg) for one activation, unevaluated: prints ``\sigma'(z_1)``, ``.doit()`` gives the
    closed form.

    One module-level class for every activation: ``ActivationPrime(arg, token)``, where ``token``
    (:attr:`Activation.token`) is a SymPy atom naming the activation: ``Str('sigmoid')`` for a
    built-in, ``Str('leaky_relu(alpha=1/10)')`` with parameters, and for a custom activation a
    ``Tuple(Str(name), Str(latex_name), Lambda(z, φ))`` that rebuilds it.  So a gradient pickles,
    its srepr names only importable classes, and the same custom activation built twice gives
    gradients that compare equal.  ``args[0]`` is the argument; :attr:`activation` resolves the
    token (see :func:`from_token`).
    """

    nargs = 2

    @classmethod
    def at(cls, arg: sympy.Basic, token: sympy.Basic) -> "ActivationPrime":
        """``cls(arg, token)`` without the evaluation machinery (φ' never auto-evaluates, so the
        result is the same object structure), about 10× faster: chains make one per layer."""
        return sympy.Basic.__new__(cls, arg, token)

    @property
    def activation(self) -> "Activation":
        return from_token(self.args[1])

    _activation = activation  # the name numeric.closed_form and proof.engine read

    def _eval_is_commutative(self):
        return self.args[0].is_commutative

    def doit(self, deep=True, **hints):
        arg = self.args[0].doit(deep=deep, **hints) if deep else self.args[0]
        return self.activation.derivative_at(arg)

    def fdiff(self, argindex=1):
        if argindex != 1:
            raise sympy.core.function.ArgumentIndexError(self, argindex)
        second = sympy.diff(self.activation.derivative, z)
        return second.xreplace({z: self.args[0]})

    def sort_key(self, order=None):
        # The key a per-activation class named "<name>_prime" had, so that printed products keep
        # their order (the committed proofs and README print σ' where they always did).
        name = "%s_prime" % (re.sub(r"\W", "_", self.activation.name, flags=re.ASCII)[:40] or "phi")
        return (4, 10000, name), (1, (sympy.default_sort_key(self.args[0], order),)), S.One.sort_key(order), S.One

    def _eval_derivative(self, s):
        # The chain rule through the argument only: the token is a name, not a variable.
        return self.fdiff(1) * self.args[0].diff(s)

    def _eval_evalf(self, prec):
        return self.doit()._eval_evalf(prec)

    def _latex(self, printer, exp=None):
        # \mathopen{} stops TeX spacing \left( as an inner atom: σ'(z), not σ' (z).
        s = r"%s'\mathopen{}\left(%s\right)" % (self.activation.latex_name, printer._print(self.args[0]))
        return s if exp is None else r"\left(%s\right)^{%s}" % (s, exp)

    def _sympystr(self, printer):
        return "%s'(%s)" % (self.activation.name, printer._print(self.args[0]))


class _Prime:
    """``act.prime``: φ' as a function of a SymPy argument, unevaluated (see ActivationPrime)."""

    __slots__ = ("token",)

    def __init__(self, token):
        self.token = token

    def __call__(self, arg) -> ActivationPrime:
        return ActivationPrime(_as_argument("%s'" % from_token(self.token).name, arg), self.token)

    def at(self, arg) -> ActivationPrime:
        return ActivationPrime.at(arg, self.token)

    def __repr__(self):
        return "%s'" % from_token(self.token).name


# ---------------------------------------------------------------------------------------------
# Stable NumPy kernels.  The rule: never exponentiate a positive number that can be large;
# write each φ' through e = exp(−|z|) ∈ (0, 1], and each log|φ'| as a sum of logs.
# ---------------------------------------------------------------------------------------------


# σ and σ' stay hand-written: scipy.special.expit flushes σ(z) to 0 below z ≈ −709, where the
# true value is subnormal (up to 9e14 ulps of the subnormal spacing on [−745, −709]); on results
# ≥ the smallest normal it is within 1.42 ulp, this form within 1.68 (benchmarks/special_accuracy.py).
def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _np_dsigmoid(x):
    e = np.exp(-np.abs(x))
    # e/(1 + e)² can round one ulp above its exact maximum 1/4 just off 0; clamp to the sup.
    # (expit(x)·expit(−x) has the same subnormal flush as expit: see above.)
    return np.minimum(e / ((1.0 + e) * (1.0 + e)), 0.25)


def _special():
    """scipy.special, imported on first use (it costs a quarter second at import)."""
    import scipy.special

    return scipy.special


def _np_log_dsigmoid(x):
    # log σ(a) + log σ(−a) with σ(−a) = e^{−a}σ(a), a = |x|: 0.81 ulp (benchmarks/special_accuracy.py)
    a = np.abs(x)
    return -a + 2.0 * _special().log_expit(a)


def _np_log_sigmoid(x):
    return _special().log_expit(x)  # 0.91 ulp over [−1e300, 1e300] (the old −softplus(−x) form: 0.96)


def _np_softplus(x):
    return np.logaddexp(0.0, x)  # 0.91 ulp (the old max(x, 0) + log1p(e^{−|x|}) form: 0.96)


def _np_log_softplus(x):
    """log softplus(x); softplus underflows below x ≈ −745, where log softplus(x) = x + log(1 − e^x/2 + …)."""
    tiny = x < -30.0
    return np.where(tiny, x - 0.5 * np.exp(np.minimum(x, 0.0)), np.log(_np_softplus(np.where(tiny, 1.0, x))))


def _np_dtanh(x):
    # Clamp before doubling: 2|x| overflows past 8.9e307, and e^{-2|x|} is 0 long before that.
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim:
        e = np.abs(x)  # the same operations in place: one fresh array, not four
        np.minimum(e, 1e4, out=e)
        e *= -2.0
        np.exp(e, out=e)
    else:
        e = np.exp(-2.0 * np.minimum(np.abs(x), 1e4))
    if not isinstance(e, np.ndarray):
        return np.minimum(4.0 * e / ((1.0 + e) * (1.0 + e)), 1.0)  # never above the exact sup 1
    # The same operations in the same order, in place: two arrays instead of six temporaries
    # (each fresh array costs page faults; the wide-network check calls this per layer).
    p = 1.0 + e
    p *= p
    e *= 4.0
    e /= p
    return np.minimum(e, 1.0, out=e)


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


def _softmax_parts(x):
    """Stable softmax pieces along the last axis: d = z − max z (≤ 0; −inf where the gap passes the
    float range, whose e^d is 0 anyway), e = e^d, the first argmax ``top`` (e = 1 there) and
    ``others`` = Σ_{j ≠ top} e_j, so that S = Σ e = 1 + others is formed without cancellation and
    1 − a_top = others/S keeps its digits where a_top rounds to 1."""
    x = np.asarray(x)
    x = x.astype(np.result_type(x, np.float32), copy=False)
    x1 = np.atleast_1d(x)
    m = np.max(x1, axis=-1, keepdims=True)
    with np.errstate(over="ignore"):
        d = x1 - m  # 1e308 − (−1e308) overflows to −inf: e^{−inf} = 0 is right
    e = np.exp(d)
    top = np.arange(x1.shape[-1]) == np.argmax(x1, axis=-1)[..., None]
    others = np.sum(np.where(top, 0.0, e), axis=-1, keepdims=True).astype(e.dtype, copy=False)
    return x, d, e, top, others


def _np_softmax(x):
    """softmax along the last axis, e^{z_i − max z}/Σ_k e^{z_k − max z}: no overflow for any
    finite z (±1e308 included), every entry in [0, 1], the largest ≥ 1/n."""
    x, d, e, top, others = _softmax_parts(x)
    return np.reshape(e / (1.0 + others), x.shape)


def _np_log_softmax(x):
    """log softmax along the last axis, (z_i − max z) − log1p(Σ_{j≠top} e^{z_j − max z}): finite
    wherever z_i − max z is (log a_i = −800 where a_i underflows), and −others, not 0, at the top."""
    x, d, e, top, others = _softmax_parts(x)
    return np.reshape(d - np.log1p(others), x.shape)


def _log_sum_exp_others(d, top):
    """log Σ_{j ≠ top} e^{d_j} (−inf when there is no other unit or all underflow to −inf),
    finite where the sum itself underflows."""
    masked = np.where(top, -np.inf, d)
    m = np.max(masked, axis=-1, keepdims=True)
    fin = np.isfinite(m)
    mm = np.where(fin, m, 0.0)
    s = np.sum(np.exp(masked - mm), axis=-1, keepdims=True)
    return np.where(fin, mm + np.log(np.where(fin, s, 1.0)), -np.inf)


def _np_softmax_grad(x):
    """The Jacobian's diagonal ∂a_i/∂z_i = a_i(1 − a_i), with 1 − a_top = others/S."""
    x, d, e, top, others = _softmax_parts(x)
    s = 1.0 + others
    a = e / s
    return np.reshape(a * np.where(top, others / s, 1.0 - a), x.shape)


def _np_softmax_log_grad(x):
    """log(a_i(1 − a_i)), finite where the product underflows."""
    x, d, e, top, others = _softmax_parts(x)
    la = d - np.log1p(others)
    with np.errstate(divide="ignore"):
        l_comp = np.where(top, _log_sum_exp_others(d, top) - np.log1p(others), np.log1p(-np.exp(la)))
    return np.reshape(la + l_comp, x.shape)


def _np_softmax_minus_target(x, y):
    """softmax(z) − y from the logits, as (value, log|·|, sign), along the last axis.

    At the top unit (the only one that can exceed ½) with y ≥ ½ it is (1 − y) − others/S, 1 − y
    being exact there: the one-hot case a_y − 1 = −Σ_{j≠y} a_j keeps its digits where a_y rounds
    to 1 (the softmax analogue of σ(40) − 1 = −4.2e-18, not 0).  Elsewhere a − y.  Where y = 0
    log|·| is log a (finite where a underflows), and where the top's y = 1 it is
    log(others) − log S; the sign is exact in both."""
    x, d, e, top, others = _softmax_parts(x)
    y = np.broadcast_to(np.asarray(y, dtype=np.float64), np.shape(np.atleast_1d(x)))
    s = 1.0 + others
    a = e / s
    comp = others / s
    val = np.where(top & (y >= 0.5), (1.0 - y) - comp, a - y)
    lv = _log_abs_where(val)
    la = d - np.log1p(others)
    with np.errstate(divide="ignore"):
        lone = _log_sum_exp_others(d, top) - np.log1p(others)
    one = top & (y == 1.0)
    zero = y == 0.0
    lv = np.where(zero, la, np.where(one, np.broadcast_to(lone, lv.shape), lv))
    sg = np.where(zero, 1.0, np.where(one, -1.0, np.sign(val)))
    if val.shape[-1] == 1:  # a one-unit softmax is the constant 1: a − 1 = 0 exactly
        sg = np.where(one, 0.0, sg)
    shape = np.shape(x) if np.ndim(x) else (1,)
    return tuple(np.reshape(t, np.broadcast_shapes(shape, np.shape(y))) for t in (val, lv, sg))


def _np_silu_grad(x):
    s = _np_sigmoid(x)
    return s * (1.0 + x * _np_sigmoid(-x))


def _np_silu_log_grad(x):
    # φ' = σ(x)(1 + x σ(−x)); the second factor is 1 − O(|x|e^{−|x|}) for x ≫ 0 and ≈ 1 + x for x ≪ 0.
    return _np_log_sigmoid(x) + _log_abs_where(1.0 + x * _np_sigmoid(-x))


_SQRT_2PI_LOG = 0.5 * math.log(2.0 * math.pi)


def _np_gelu(x):
    ndtr = _special().ndtr
    return x * ndtr(x)


#: Below this, Φ(x) is under the smallest normal double (scipy's ndtr returns 0 from −37.65 on,
#: where Φ ≈ 5e−311 still counts beside xϕ(x) ≈ −7e−308): φ' comes from its log there.
_GELU_TAIL = -37.5


def _np_gelu_grad(x):
    """Φ(x) + xϕ(x); below ``_GELU_TAIL`` −exp(log|φ'|) (:func:`_np_gelu_log_grad`: log ϕ + log|R + x|,
    R = Φ/ϕ), which keeps Φ's part where ndtr has underflowed (φ' < 0 there)."""
    ndtr = _special().ndtr
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        pdf = np.exp(-0.5 * np.square(x) - _SQRT_2PI_LOG)
    out = ndtr(x) + x * pdf
    tail = x < _GELU_TAIL
    if np.any(tail):
        out = np.where(tail, -np.exp(_np_gelu_log_grad(np.where(tail, x, _GELU_TAIL))), out)
    return out


def _np_gelu_log_grad(x):
    """log|Φ(x) + x ϕ(x)|, written as log ϕ(x) + log|R(x) + x| with R = Φ/ϕ (Mills ratio), so
    that it stays finite far into the left tail.  Below x ≈ −1.9e154 the true value is under
    −1.8e308 and the result is −inf (correctly rounded), never nan."""
    log_ndtr, ndtr = _special().log_ndtr, _special().ndtr
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
# NumPy kernels of custom activations: φ and φ' evaluated from φ's expression tree, with the
# convention at kinks built in.
#
# Every node g of the tree is evaluated to three arrays: its value g(x), its left limit
# g(x⁻) = lim_{t↑x} g(t) (these differ only for the jumps of heaviside and sign), and the left
# limit of its derivative g'(x⁻) (the derivative of the branch just below; the Dirac deltas of
# jumps count as 0).  A kink is decided from the left: heaviside(g) at g(x⁻) = 0 is 1 iff g falls
# towards x, i.e. g'(x⁻) < 0; max picks, among arguments equal at x, the one with the smaller
# slope (the larger just below x).  When g(x⁻) = 0 and g'(x⁻) = 0 the first order cannot decide:
# an argument known to vanish identically just below x (relu(z) for z < 0) has sign 0; any other
# is probed just below x in mpmath (see _left_sign_higher), and SymPy's one-sided limit (under a
# budget) decides where the probes disagree.
#
# The float64 pass runs with floating-point warnings off and carries a running error bound for
# the value and for the derivative (see _KinkKernel._eval).  Any element that comes out nan or
# ±inf, or whose bound is beyond ERROR_SLACK of its conditioning (a cancellation: e^z/(1 + e^z)'s
# derivative at z = 30 is 9.4e-14 as a difference of two terms near 1), is recomputed in mpmath
# (whose exponent range does not overflow) at the digits the bound asks for, until the same
# bound, now at mpmath's precision, certifies the rounding to float64; so exp(z)/(1 + exp(z)) at
# z = 1000 gives 1 and slope 0 (e^−1000 rounded), not inf/inf, and ±inf remains only where the
# true value is beyond float64.
# ---------------------------------------------------------------------------------------------

#: SymPy seconds allowed for one undecidable kink (a one-sided limit); see _left_sign_sympy.
KINK_LIMIT_SECONDS = 2.0
#: Depth of expression tree the custom kernels evaluate (the parser allows 100 levels).
MAX_KERNEL_DEPTH = 300
#: The float64 evaluation of a custom activation is trusted where its running error bound
#: (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.3: every operation adds
#: u·|its computed result|, and input errors propagate through the derivatives) stays within
#: this many units of the conditioning budget u·(|f(z)| + |z·f'(z)|), for f = φ and for f = φ'
#: (φ'' for the latter): the result is then the exact value at an input within ERROR_SLACK·u·|z|,
#: give or take ERROR_SLACK·u·|f|.  Elsewhere (a difference of nearly equal terms, such as
#: e^z/(1 + e^z) − e^{2z}/(1 + e^z)² at large z) the point is computed exactly instead.  The
#: compiled forms (symgrad.numeric._codegen) apply the same rule to a custom form.
ERROR_SLACK = 1024.0
_MP_DIGITS = 50
_MP_MAX_DIGITS = 3200


class _NumpyOps:
    """Array arithmetic for the fast pass."""

    where = staticmethod(np.where)
    exp, log, sin, cos, tanh, sinh, cosh, arctan = np.exp, np.log, np.sin, np.cos, np.tanh, np.sinh, np.cosh, np.arctan
    arcsinh, sign, fabs, maximum = np.arcsinh, np.sign, np.abs, np.maximum
    logical_and, logical_or = staticmethod(np.logical_and), staticmethod(np.logical_or)

    @staticmethod
    def erf(t):
        from scipy.special import erf

        return erf(t)

    @staticmethod
    def erfc(t):
        from scipy.special import erfc

        return erfc(t)

    @staticmethod
    def hypot1(t):
        return np.hypot(1.0, t)

    sigmoid = staticmethod(lambda t: _np_sigmoid(t))
    dsigmoid = staticmethod(lambda t: _np_dsigmoid(t))
    dtanh = staticmethod(lambda t: _np_dtanh(t))  # 4e^{−2|t|}/(1 + e^{−2|t|})²: 1 − tanh² cancels for |t| > 19
    softplus = staticmethod(lambda t: _np_softplus(t))

    @staticmethod
    def power(b, e):
        return np.power(b, e)

    @staticmethod
    def const(c):
        return float(c)

    @staticmethod
    def div(a, b):
        """a / b for an error bound (÷0 gives inf or nan, both read as untrusted)."""
        return a / b

    @staticmethod
    def unit():
        """The unit roundoff of float64, 2^-53."""
        return 2.0**-53

    @staticmethod
    def eta():
        """Underflow's absolute error, half the smallest subnormal 2^-1075, in units of u: an
        operation's result is (exact)(1 + δ) + η, |δ| ≤ u, |η| ≤ 2^-1075 (Higham §2.1)."""
        return 2.0**-1022

    @staticmethod
    def const_error(node, c):
        """The rounding of a constant to float64 in units of u: 0 where it is exact, else |c|."""
        return 0.0 if _exact_binary(node, 53) else abs(c)

    @staticmethod
    def any(mask):
        return bool(np.any(mask))


class _MpmathOps:
    """Scalar mpmath arithmetic for the elements the fast pass could not represent, in a private
    mpmath context (``ctx``, one per thread: :func:`_mp_ops`): mpmath's global ``mp`` is shared by
    every thread, so ``workdps`` in two threads at once (``backprop`` evaluates blocks on two) gave
    each the other's precision, and wrong values."""

    def __init__(self, ctx, wide: bool = False):
        self.ctx = ctx
        if wide:  # log space: e^(−1e10) is a number there, not 0 (sin and cos keep their cutoff)
            self._HUGE_EXP = math.inf
        self.log, self.tanh, self.arctan, self.arcsinh, self.erf, self.erfc = ctx.log, ctx.tanh, ctx.atan, ctx.asinh, ctx.erf, ctx.erfc

    @staticmethod
    def where(c, a, b):
        return a if c else b

    fabs = staticmethod(abs)

    # Beyond these arguments the results are far outside float64 (e^(1e8)) or need the argument
    # to more digits than any budget allows (sin(e^(1e6)) needs it to 434294 digits): answer
    # ±inf, 0 or nan at once instead of letting mpmath work for minutes.  (nan makes the caller
    # try SymPy under a budget, and then report that the point cannot be evaluated.)
    _HUGE = 10**8
    _HUGE_EXP = 10**8  # the same for exp, sinh, cosh and powers, except in log space

    def exp(self, t):
        if abs(t) > self._HUGE_EXP:
            return self.ctx.inf if t > 0 else self.ctx.mpf(0)
        return self.ctx.exp(t)

    def sinh(self, t):
        return (self.ctx.inf if t > 0 else -self.ctx.inf) if abs(t) > self._HUGE_EXP else self.ctx.sinh(t)

    def cosh(self, t):
        return self.ctx.inf if abs(t) > self._HUGE_EXP else self.ctx.cosh(t)

    def sin(self, t):
        return self.ctx.nan if abs(t) > self._HUGE else self.ctx.sin(t)

    def cos(self, t):
        return self.ctx.nan if abs(t) > self._HUGE else self.ctx.cos(t)

    @staticmethod
    def sign(t):
        return (t > 0) - (t < 0)

    @staticmethod
    def maximum(a, b):
        return a if a >= b else b

    logical_and = staticmethod(lambda a, b: a and b)
    logical_or = staticmethod(lambda a, b: a or b)

    def hypot1(self, t):
        return self.ctx.hypot(1, t)

    def sigmoid(self, t):
        return 1 / (1 + self.exp(-t))

    def dtanh(self, t):
        return self.ctx.sech(t) ** 2

    def dsigmoid(self, t):
        e = self.exp(-abs(t))
        return e / (1 + e) ** 2

    def softplus(self, t):
        ctx = self.ctx
        return ctx.log1p(self.exp(t)) if t < 0 else t + ctx.log1p(self.exp(-t))

    def power(self, b, e):
        ctx = self.ctx
        if b != 0 and ctx.isfinite(b) and ctx.isfinite(e):
            size = e * ctx.log(abs(b))
            if abs(size) > self._HUGE_EXP:  # |b**e| = e^size: see exp
                if size < 0:
                    return ctx.mpf(0)
                return ctx.inf if b > 0 or e != int(e) or int(e) % 2 == 0 else -ctx.inf
        return b**e

    def const(self, c):
        return self.ctx.mpf(str(sympy.N(c, self.ctx.dps + 10)))

    def div(self, a, b):
        return a / b if b != 0 else self.ctx.inf

    def unit(self):
        """The unit roundoff at the context's working precision, 2^-prec."""
        return self.ctx.ldexp(1, -self.ctx.prec)

    @staticmethod
    def eta():
        """mpmath's exponent does not underflow."""
        return 0

    def const_error(self, node, c):
        return self.ctx.mpf(0) if _exact_binary(node, self.ctx.prec) else abs(c)

    @staticmethod
    def any(mask):
        return bool(mask)


_MP_LOCAL = threading.local()


def _mp_ops(digits: int, wide: bool = False) -> _MpmathOps:
    """The calling thread's private mpmath context, set to ``digits`` decimal digits (``wide``:
    without the cutoff of exp, sinh, cosh and powers, for logarithms)."""
    key = "wide" if wide else "ops"
    ops = getattr(_MP_LOCAL, key, None)
    if ops is None:
        import mpmath

        ops = _MpmathOps(mpmath.MPContext(), wide)
        setattr(_MP_LOCAL, key, ops)
    ops.ctx.dps = digits
    return ops


# f(g) -> (name of f on the ops, f'(t), f''(t) as functions of (ops, t)), for the smooth functions
# (f'' for the running error bound of the derivative, see _KinkKernel._eval).
_SMOOTH = {
    sympy.exp: ("exp", lambda o, t: o.exp(t), lambda o, t: o.exp(t)),
    sympy.log: ("log", lambda o, t: 1 / t, lambda o, t: -1 / (t * t)),
    sympy.sin: ("sin", lambda o, t: o.cos(t), lambda o, t: -o.sin(t)),
    sympy.cos: ("cos", lambda o, t: -o.sin(t), lambda o, t: -o.cos(t)),
    sympy.tanh: ("tanh", lambda o, t: o.dtanh(t), lambda o, t: -2 * o.tanh(t) * o.dtanh(t)),
    sympy.sinh: ("sinh", lambda o, t: o.cosh(t), lambda o, t: o.sinh(t)),
    sympy.cosh: ("cosh", lambda o, t: o.sinh(t), lambda o, t: o.cosh(t)),
    sympy.atan: ("arctan", lambda o, t: 1 / (1 + t * t), lambda o, t: -2 * t / ((1 + t * t) * (1 + t * t))),
    sympy.asinh: ("arcsinh", lambda o, t: 1 / o.hypot1(t), lambda o, t: -t / o.hypot1(t) ** 3),
    sympy.erf: ("erf", lambda o, t: (2 / math.sqrt(math.pi)) * o.exp(-(t * t)),
                lambda o, t: (-4 / math.sqrt(math.pi)) * t * o.exp(-(t * t))),
    sympy.erfc: ("erfc", lambda o, t: (-2 / math.sqrt(math.pi)) * o.exp(-(t * t)),
                 lambda o, t: (4 / math.sqrt(math.pi)) * t * o.exp(-(t * t))),
}
#: ulps of accuracy assumed of a library function (NumPy's and SciPy's elementary functions, and
#: mpmath's at its working precision, are within 1-2): the running error bound's c_f.
_FUNC_ULPS = 4.0
#: the relative step of the difference quotient that estimates |z·φ''(z)| (see _KinkKernel._fast).
_FD_STEP = 2.0**-20
# Smooth functions with f(0) = 0: a part that vanishes identically stays so through them.
_KEEP_ZERO = {sympy.sin, sympy.tanh, sympy.sinh, sympy.atan, sympy.asinh, sympy.erf}


def _kernel_support(expr: sympy.Expr) -> str | None:
    """Why the custom kernels cannot evaluate ``expr`` (None when they can)."""
    stack = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_KERNEL_DEPTH:
            return "its expression is nested more than %d levels deep" % MAX_KERNEL_DEPTH
        if node == z or node.is_Number or node.is_NumberSymbol or not node.free_symbols:
            continue
        ok = (
            node.is_Add or node.is_Mul or node.is_Pow
            or node.func in _SMOOTH
            or node.func in (sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max, sympy.Min, sigmoid, softplus, relu)
        )
        if not ok:
            return "it contains %s, which symgrad's NumPy kernels do not evaluate" % type(node).__name__
        stack.extend((a, depth + 1) for a in node.args)
    return None


def _start_digits(E, v, F, D):
    """The decimal digits at which to start mpmath where the float64 pass is not trusted: the
    digits its bounds say the cancellation cost (log10 of the bound over the value, or over half the
    smallest subnormal where the value is 0), plus 17 for float64 and 5 to spare; _MP_DIGITS where
    the bounds say nothing (inf or nan), and at most _MP_MAX_DIGITS."""
    with np.errstate(all="ignore"):  # in logarithms: E·u / 2^-1075 overflows
        floor, lu = np.log10(2.0**-1075), np.log10(2.0**-53)
        lost = np.maximum(np.log10(E) + lu - np.maximum(np.log10(np.abs(v)), floor),
                          np.log10(F) + lu - np.maximum(np.log10(np.abs(D)), floor))
        need = np.where(np.isfinite(lost), np.ceil(np.maximum(lost, 0.0)) + 22, _MP_DIGITS)
    return np.clip(need, _MP_DIGITS, _MP_MAX_DIGITS)


def _stable_rewrites(expr: sympy.Expr) -> sympy.Expr:
    """The expression the NumPy kernel evaluates: ``expr`` with exact identities applied where the
    written form cancels in float64 over a whole range (so every point there would need mpmath):
    1 + erf(u) → erfc(−u) and 1 − erf(u) → erfc(u) (GELU written with erf, whose left tail is
    e^{−z²/2} next to 1), log(1 + e^u) → softplus(u), e^u/(1 + e^u) → σ(u) and 1/(1 + e^u) → σ(−u).
    The same function, so φ, φ' and the kinks are unchanged; the running error bound still checks
    every point.  The activation's ``expr`` (what is shown, derived and proved) is not touched."""
    def add(node):
        terms = list(node.args)
        for i, t in enumerate(terms):
            c, rest = t.as_coeff_Mul()
            if rest.func is sympy.erf and c in (1, -1):
                one = next((j for j, s in enumerate(terms) if j != i and s == 1), None)
                if one is not None:
                    arg = -rest.args[0] if c == 1 else rest.args[0]
                    kept = [s for j, s in enumerate(terms) if j not in (i, one)]
                    return sympy.Add(sympy.erfc(arg, evaluate=False), *kept)  # SymPy would write erfc(−x) as 2 − erfc(x)
        return node

    def pow_(node):
        base, ex = node.args
        if ex == -1 and base.is_Add and len(base.args) == 2 and S.One in base.args:
            e = next(a for a in base.args if a != 1)
            if e.func is sympy.exp:
                return sigmoid(-e.args[0])
        return node

    def mul(node):
        args = list(node.args)
        for i, a in enumerate(args):
            if a.func is sympy.exp:
                target = sigmoid(-a.args[0])  # 1/(1 + e^u), rewritten above
                if target in args:
                    j = args.index(target)
                    kept = [b for k, b in enumerate(args) if k not in (i, j)]
                    return sympy.Mul(sigmoid(a.args[0]), *kept)
        return node

    def log_(node):
        u = node.args[0]
        if u.is_Add and len(u.args) == 2 and S.One in u.args:
            e = next(a for a in u.args if a != 1)
            if e.func is sympy.exp:
                return softplus(e.args[0])
        return node

    out = expr
    for kind, fn in ((sympy.Add, add), (sympy.Pow, pow_), (sympy.Mul, mul), (sympy.log, log_)):
        out = out.replace(lambda n, kind=kind: isinstance(n, kind), fn)
    return out


@functools.lru_cache(maxsize=1024)
def _exact_binary(c: sympy.Expr, bits: int) -> bool:
    """Whether the constant ``c`` is a binary number of at most ``bits`` significant bits (then
    float64 or mpmath holds it exactly): an integer, a dyadic rational, or a Float of that precision."""
    if c.is_Float:
        c = sympy.Rational(c)
    if not c.is_Rational:
        return False
    q = int(c.q)
    if q & (q - 1):
        return False
    p = abs(int(c.p))
    return p == 0 or (p >> ((p & -p).bit_length() - 1)).bit_length() <= bits


class _KinkKernel:
    """φ and the left-limit φ' of one custom expression (see the comment above)."""

    def __init__(self, expr: sympy.Expr):
        self.expr = _stable_rewrites(expr)

    # -- one pass ------------------------------------------------------------------------
    def _left_sign(self, o, node, x, L, D, K):
        """The sign of ``node`` just below x: from L, then from -D, then 0 where the node is
        known to vanish there (K), else by SymPy."""
        s = o.where(L > 0, 1.0, o.where(L < 0, -1.0, -o.sign(D)))
        if o is _NumpyOps:  # x is 1-d here
            undecided = (L == 0) & (D == 0) & np.logical_not(K)
            if undecided.any():
                s = np.array(np.broadcast_to(s, undecided.shape), dtype=np.float64)
                xs = np.broadcast_to(x, undecided.shape)
                for i in np.flatnonzero(undecided):
                    s[i] = self._left_sign_higher(node, float(xs[i]))
        elif L == 0 and D == 0 and not K:
            s = self._left_sign_higher(node, float(x))
        return s

    def _left_sign_higher(self, node, x0: float) -> float:
        """The sign of ``node`` just below x0 where its value and slope there are both 0.

        First by probing: ``node`` at x0 − δ for δ = 10^-30 and 10^-60 (relative to max(1, |x0|)),
        in mpmath with enough digits that x0 − δ is exact; a node of order k at x0 is about
        c·δ^k there, and one that cancels to 0 identically below x0 (z − min(z, 1 − z) below 1/2)
        is exactly 0 at both.  When the two probes disagree, SymPy's one-sided limit decides.
        """
        scale = max(1.0, abs(x0))
        signs = set()
        try:
            for k in (30, 60):
                o = _mp_ops(2 * k + 40)
                t = o.ctx.mpf(x0) - scale * o.ctx.mpf(10) ** (-k)
                v = self._eval(o, node, t, {})[0]
                if isinstance(v, o.ctx.mpc):
                    raise ValueError("complex")
                signs.add((v > 0) - (v < 0))
        except (ArithmeticError, ValueError, TypeError, SymgradError):
            signs = set()
        if len(signs) == 1:
            return float(signs.pop())
        return _left_sign_sympy(node, x0)

    def _eval(self, o, node, x, memo):
        """(value, left value, left derivative, K, E, F) of ``node`` at x: K says the node vanishes
        identically just below x; E and F are running error bounds (Higham §3.3), in units of the
        working unit roundoff u = ``o.unit()``, of the value (and of the left value, which differs
        from it only at a jump, where both are exact constants) and of the derivative: every
        operation adds |its computed result| (c_f·|f| for a library function f, which is accurate
        to c_f = ``_FUNC_ULPS`` units) and underflow's η (``o.eta()``), and its operands' bounds
        propagate through its partial derivatives, with the second-order terms (a product of two
        errors; ½|f''|ε² for a function) so that (b + ε)² at b = 0 is not bounded by 0.  Third
        and higher orders are left out: they matter only where the bound is already a large part
        of the value, which the callers do not trust.  A decision (a kink, a selection, a sign)
        whose argument is within its own bound of the threshold, and a division or a logarithm of
        a quantity within its bound of 0, make the bound infinite."""
        hit = memo.get(node)
        if hit is not None:
            return hit
        zero = 0 * x
        fabs, inf, u, eta = o.fabs, math.inf, o.unit(), o.eta()
        if node == z:
            out = (x, x, zero + 1, False, zero, zero)
        elif not node.free_symbols:
            c = o.const(node)
            out = (zero + c, zero + c, zero, c == 0, zero + o.const_error(node, c), zero)
        elif node.is_Add:
            parts = [self._eval(o, a, x, memo) for a in node.args]
            v, L, D, K, E, F = parts[0]
            for pv, pL, pD, pK, pE, pF in parts[1:]:
                v, L, D = v + pv, L + pL, D + pD
                E, F = E + pE + fabs(v), F + pF + fabs(D)
            out = (v, L, D, _all(o, [p[3] for p in parts]), E, F)
        elif node.is_Mul:
            parts = [self._eval(o, a, x, memo) for a in node.args]
            v, L, D, K, E, F = parts[0]
            for pv, pL, pD, pK, pE, pF in parts[1:]:
                d1, d2 = D * pL, L * pD
                F = (fabs(pL) * F + fabs(D) * pE + fabs(L) * pF + fabs(pD) * E + fabs(d1) + fabs(d2) + fabs(d1 + d2) + 2 * eta
                     + (F * pE + E * pF) * u)  # the second-order terms, products of two errors
                E = fabs(pv) * E + fabs(v) * pE + fabs(v * pv) + eta + E * pE * u
                v, D, L = v * pv, d1 + d2, L * pL
                K = o.logical_or(K, pK)
            out = (v, L, D, K, E, F)
        elif node.is_Pow:
            base, ex = node.args
            bv, bL, bD, bK, bE, bF = self._eval(o, base, x, memo)
            near0 = fabs(bL) <= bE * u  # b within its own error of 0: 1/b, b^c (c < 1) unbounded
            if not ex.free_symbols:
                c = o.const(ex)
                if c == 2:
                    v, D = bv * bv, 2 * bL * bD
                    E = 2 * fabs(bL) * bE + fabs(v) + eta + bE * bE * u  # (b + ε)² − b² = 2bε + ε²
                    F = 2 * (fabs(bD) * bE + fabs(bL) * bF) + 2 * fabs(D) + 2 * eta + 2 * bE * bF * u
                    out = (v, bL * bL, D, bK, E, F)
                elif c == -1:
                    q = bD / bL
                    v, D = 1 / bv, -q / bL  # (b'/b)/b: b·b may overflow where the slope does not
                    E = o.where(near0, inf, o.div(o.div(bE, bL), bL) + fabs(v) + eta)
                    F = o.where(near0, inf, o.div(o.div(bF, bL), bL) + 2 * fabs(D) * o.div(bE, fabs(bL))
                                + 2 * fabs(D) + o.div(eta, fabs(bL)) + eta)
                    out = (v, 1 / bL, D, False, E, F)
                else:
                    v, L = o.power(bv, c), o.power(bL, c)
                    whole = c == int(c) and c > 0  # b^c smooth at 0 (a positive integer power)
                    if o is not _NumpyOps and near0 and not whole:  # b^(c−1) may be 1/0 there
                        E = F = inf
                        D = c * o.power(bL, c - 1) * bD  # as before: raises where mpmath cannot (1/0)
                    else:
                        p1 = o.power(bL, c - 1)  # b^(c−1): the slope factor
                        D = c * p1 * bD
                        p2 = o.power(bL, c - 2) if c >= 3 or not whole else zero  # c(c − 1)b^(c−2) vanishes for c = 1
                        E = fabs(c * p1) * bE + _FUNC_ULPS * fabs(v) + eta + 0.5 * fabs(c * (c - 1) * p2) * bE * bE * u
                        F = (fabs(c * (c - 1) * p2 * bD) * bE + fabs(c * p1) * bF + (_FUNC_ULPS + 2) * fabs(D)
                             + eta * (fabs(c * bD) + 1) + fabs(c * (c - 1) * p2) * bE * bF * u)  # b^(c−1) may underflow
                        if not whole:
                            E, F = o.where(near0, inf, E), o.where(near0, inf, F)
                    out = (v, L, D, o.logical_and(bK, c > 0) if o is _NumpyOps else (bK and c > 0), E, F)
            else:
                ev, eL, eD, _, eE, eF = self._eval(o, ex, x, memo)
                v, L = o.power(bv, ev), o.power(bL, eL)
                lg = o.log(bL)
                rb = o.div(bE, fabs(bL))  # the relative error bound of b
                if not base.free_symbols:  # c^e: D = c^e · e'·log c, log c a constant
                    D = L * eD * lg
                    G = eD * lg
                    eG = fabs(lg) * eF + fabs(eD) * (rb + 1) + 2 * fabs(G)
                    E = fabs(v) * (fabs(lg) * eE + rb) + _FUNC_ULPS * fabs(v) + eta
                else:
                    G = eD * lg + eL * bD / bL
                    D = L * G
                    eG = (fabs(lg) * eF + fabs(eD) * (rb + 1) + o.div(fabs(bD), fabs(bL)) * eE
                          + o.div(fabs(eL), fabs(bL)) * bF + o.div(fabs(eL * bD) * rb, fabs(bL)) + 4 * fabs(G))
                    E = fabs(v) * (fabs(lg) * eE + fabs(eL) * rb) + _FUNC_ULPS * fabs(v) + eta
                F = fabs(G) * E + fabs(L) * eG + fabs(D) + eta * (fabs(G) + 1)
                out = (v, L, D, False, o.where(near0, inf, E), o.where(near0, inf, F))
        elif node.func in _SMOOTH:
            name, df, d2f = _SMOOTH[node.func]
            av, aL, aD, aK, aE, aF = self._eval(o, node.args[0], x, memo)
            f = getattr(o, name)
            v, fp = f(av), df(o, aL)
            D = fp * aD
            f2 = fabs(d2f(o, aL))
            E = fabs(fp) * aE + _FUNC_ULPS * fabs(v) + eta + 0.5 * f2 * aE * aE * u  # with f'' at a: second order
            # f' as computed: _FUNC_ULPS, and for erf' = (2/√π)e^{−t²} also the rounding of t², which
            # exp turns into a relative t²·u (48u at t = 7: a helper's red team)
            fu = _FUNC_ULPS + (aL * aL if node.func in (sympy.erf, sympy.erfc) else 0)
            F = f2 * fabs(aD) * aE + fabs(fp) * aF + (fu + 1) * fabs(D) + eta * (fabs(aD) + 1) + f2 * aE * aF * u  # f' may underflow
            if node.func is sympy.log:  # log of a quantity within its error of 0
                near0 = fabs(aL) <= aE * u
                E, F = o.where(near0, inf, E), o.where(near0, inf, F)
            out = (v, f(aL), D, aK if node.func in _KEEP_ZERO else False, E, F)
        elif node.func in (sigmoid, softplus):
            av, aL, aD, _, aE, aF = self._eval(o, node.args[0], x, memo)
            s1 = o.dsigmoid(aL)  # σ' (sigmoid's slope, softplus's curvature)
            if node.func is sigmoid:
                v, fp, f2 = o.sigmoid(av), s1, s1 * (1 - 2 * o.sigmoid(aL))
                L = o.sigmoid(aL)
            else:
                v, fp, f2 = o.softplus(av), o.sigmoid(aL), s1
                L = o.softplus(aL)
            D = fp * aD
            E = fabs(fp) * aE + _FUNC_ULPS * fabs(v) + eta + 0.5 * fabs(f2) * aE * aE * u
            F = fabs(f2 * aD) * aE + fabs(fp) * aF + (_FUNC_ULPS + 1) * fabs(D) + eta * (fabs(aD) + 1) + fabs(f2) * aE * aF * u
            out = (v, L, D, False, E, F)
        elif node.func is sympy.Abs:
            arg = node.args[0]
            av, aL, aD, aK, aE, aF = self._eval(o, arg, x, memo)
            # |g|' = sign(g(x⁻))·g'(x⁻); an undecided sign multiplies g'(x⁻) = 0, so 0 serves.
            s = o.where(aL > 0, 1.0, o.where(aL < 0, -1.0, -o.sign(aD)))
            unsure = (fabs(aL) < aE * u) & (aD != 0) if o is _NumpyOps else (abs(aL) < aE * u and aD != 0)
            out = (o.fabs(av), o.fabs(aL), s * aD, aK, aE, o.where(unsure, inf, aF))
        elif node.func in (sympy.sign, sympy.Heaviside, relu):
            arg = node.args[0]
            av, aL, aD, aK, aE, aF = self._eval(o, arg, x, memo)
            # the side of 0 is uncertain where the argument is within its error bound of 0
            vside = fabs(av) < aE * u
            lside = (fabs(aL) < aE * u) | ((aL == 0) & (fabs(aD) < aF * u)) if o is _NumpyOps else (
                abs(aL) < aE * u or (aL == 0 and abs(aD) < aF * u))
            if node.func is relu:
                s = o.where(aL > 0, 1.0, o.where(aL < 0, -1.0, -o.sign(aD)))
                on = s > 0
                out = (o.maximum(av, 0.0 * av), o.maximum(aL, 0.0 * aL), o.where(on, aD, 0.0 * aD),
                       o.logical_or(aK, ~on) if o is _NumpyOps else (aK or not on),
                       o.where((av < 0) & ~vside, zero, aE) if o is _NumpyOps else (zero if av < 0 and not vside else aE),
                       o.where(lside, inf, o.where(on, aF, zero)))
            else:
                s = self._left_sign(o, arg, x, aL, aD, aK)
                unsure = o.logical_or(vside, lside) if o is _NumpyOps else (vside or lside)
                if node.func is sympy.sign:
                    out = (o.sign(av) + zero, s + zero, zero, aK, o.where(unsure, inf, zero), zero)
                else:
                    h0 = node.args[1] if len(node.args) > 1 else S.Half
                    h = o.const(h0)
                    value = o.where(av > 0, 1.0, o.where(av < 0, 0.0, h)) + zero
                    left = o.where(s > 0, 1.0, o.where(s < 0, 0.0, h)) + zero
                    out = (value, left, zero, o.logical_or(s < 0, aK) & (h == 0) if o is _NumpyOps else ((s < 0 or aK) and h == 0),
                           o.where(unsure, inf, zero), zero)
        elif node.func in (sympy.Max, sympy.Min):
            parts = [self._eval(o, a, x, memo) for a in node.args]
            v, L, D, K, E, F = parts[0]
            top = node.func is sympy.Max
            for pv, pL, pD, pK, pE, pF in parts[1:]:
                # just below x, g(x - ε) ≈ L - εD: max prefers the larger L, then the smaller D
                if top:
                    take = (pL > L) | ((pL == L) & (pD < D)) if o is _NumpyOps else (pL > L or (pL == L and pD < D))
                    pick = pv > v
                else:
                    take = (pL < L) | ((pL == L) & (pD > D)) if o is _NumpyOps else (pL < L or (pL == L and pD > D))
                    pick = pv < v
                # the value: the picked one's bound, or either's where the pick is uncertain (max and
                # min are 1-Lipschitz in each argument)
                E = o.where(fabs(pv - v) < (pE + E) * u, o.maximum(E, pE), o.where(pick, pE, E))
                v = o.where(pick, pv, v)
                # the slope: uncertain where the two are within their bounds and their slopes differ
                tie = fabs(pL - L) < (pE + E) * u
                slope_tie = (pL == L) & (fabs(pD - D) < (pF + F) * u) if o is _NumpyOps else (pL == L and abs(pD - D) < (pF + F) * u)
                unsure = ((tie | slope_tie) & (pD != D)) if o is _NumpyOps else ((tie or slope_tie) and pD != D)
                F = o.where(unsure, inf, o.where(take, pF, F))
                L, D, K = o.where(take, pL, L), o.where(take, pD, D), o.where(take, pK, K)
            out = (v, L, D, K, E, F)
        else:  # _kernel_support refuses these at construction
            raise InvalidArgument("custom activation: cannot evaluate %s numerically" % type(node).__name__)
        memo[node] = out
        return out

    # -- the kernels ---------------------------------------------------------------------
    def _fast(self, x):
        """(φ, φ', trusted, digits, |error of φ|, |error of φ'|) in float64 at the points x (1-d):
        trusted where the running error bounds stay within ERROR_SLACK of the conditioning budget
        (see ERROR_SLACK); digits, where not, the decimal digits that the bounds say mpmath needs
        (see _start_digits); the bounds themselves, absolute."""
        with np.errstate(all="ignore"):
            v, _, D, _, E, F = self._eval(_NumpyOps, self.expr, x, {})
            v = np.array(np.broadcast_to(v, x.shape), dtype=np.float64)
            D = np.array(np.broadcast_to(D, x.shape), dtype=np.float64)
            E, F = np.broadcast_to(E, x.shape), np.broadcast_to(F, x.shape)
            # absolute, before the floor below, rounded up (2^-1075·E may round to 0 below the subnormals)
            ev, ed = (np.where(t > 0, np.nextafter(t * _NumpyOps.unit(), np.inf), t * _NumpyOps.unit()) for t in (E, F))
            # underflow's allowance, as the input's: ERROR_SLACK·η·max(1, |z|) (η = 2^-1075 absolute,
            # in units of u), so that z·σ'(z) with σ'(z) flushed to 0 at z = −38000 is not sent to mpmath
            floor = ERROR_SLACK * _NumpyOps.eta() * np.maximum(1.0, np.abs(x))
            E, F = E - floor, F - floor
            ok = (E <= ERROR_SLACK * (np.abs(v) + np.abs(x * D))) & (F <= ERROR_SLACK * np.abs(D))
            # where φ' alone is not within the slack of its own size: |z·φ''(z)| by a difference
            # quotient with step h·z; its rounding noise, ~2F·u/h = 2^-32·F, cannot pass the test
            # below for ERROR_SLACK < 2^32, so only a true slope |z·φ''| ≫ F·u can
            near = np.flatnonzero(~ok & (E <= ERROR_SLACK * (np.abs(v) + np.abs(x * D))) & np.isfinite(F))
            if near.size:
                xs = x[near]
                Dh = np.broadcast_to(self._eval(_NumpyOps, self.expr, xs + xs * _FD_STEP, {})[2], xs.shape)
                slope = np.abs(Dh - D[near]) / _FD_STEP
                ok[near] = F[near] <= ERROR_SLACK * (np.abs(D[near]) + slope)
            digits = _start_digits(E, v, F, D)
        return v, D, ok, digits, ev, ed

    def _at_digits(self, xi: float, digits: int):
        """(φ, φ') at xi rounded to float64 from mpmath at ``digits``, when the running error bounds
        certify both roundings (the bound's interval rounds to one double; ±inf where mpmath's
        result is beyond any double); else the digits that the bounds say would (an int), or None
        where mpmath cannot evaluate (an error, nan, a complex value)."""
        try:
            o = _mp_ops(digits)
            ctx = o.ctx  # the thread's own context: its numbers, functions and precision
            v, _, D, _, E, F = self._eval(o, self.expr, ctx.mpf(xi), {})
            u = o.unit()
            out, more = [], 0
            for t, err in ((v, E), (D, F)):
                if isinstance(t, ctx.mpc):
                    if abs(t.imag) > abs(t) * ctx.mpf(10) ** (-digits // 2):
                        return None
                    t = t.real
                if ctx.isnan(t):
                    return None
                if ctx.isinf(t):
                    out.append(float(t))
                    continue
                w = 4 * err * u  # a safety factor of 4 on the first-order bound
                if not ctx.isfinite(w):
                    more = max(more, 2 * digits)
                elif float(t - w) != float(t + w):
                    # w shrinks tenfold per digit: enough digits for w below 1e-20 of the value
                    # (or of half the smallest subnormal), and at least ten more
                    scale = max(abs(t), ctx.ldexp(1, -1075))
                    more = max(more, digits + 10, digits + int(ctx.ceil(ctx.log10(w / scale))) + 20)
                out.append(float(t))
        except (ArithmeticError, ValueError, TypeError):
            return None
        return more if more else (out[0], out[1])

    def _exact(self, xi: float, digits: int = _MP_DIGITS) -> tuple[float, float]:
        """(φ, φ') at one point, rounded to float64 and certified by the running error bound:
        mpmath at the precision the bounds ask for until the bound's interval rounds to one double
        (the cancellation in e^z/(1 + e^z)'s derivative at z = 1000 needs ~450 digits; a derivative
        that cancels to exactly 0 is certified once the bound is below half the smallest
        subnormal, ~330 digits), SymPy where mpmath cannot follow.  ``digits``: where to start
        (from the float64 pass's bounds, so that one precision usually suffices)."""
        while digits <= _MP_MAX_DIGITS:
            now = self._at_digits(xi, digits)
            if now is None:
                break
            if isinstance(now, tuple):
                return now
            digits = now if now <= _MP_MAX_DIGITS or digits >= _MP_MAX_DIGITS else _MP_MAX_DIGITS
        return _sympy_point(self.expr, xi)

    def bounded(self, x):
        """(φ, φ', |error of φ|, |error of φ'|) at x in float64 with their first-order running
        error bounds, without the exact re-evaluation of untrusted points (for callers that carry
        the bounds, such as the mean-field quadrature); points whose float64 value is not finite
        are enclosed by mpmath at _MP_DIGITS digits with the same bounds (exactly where it cannot)."""
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(-1)
        v, d, _, digits, ev, ed = self._fast(flat)
        ev, ed = np.array(ev, dtype=np.float64), np.array(ed, dtype=np.float64)
        bad = np.isfinite(flat) & ~(np.isfinite(v) & np.isfinite(d) & np.isfinite(ev) & np.isfinite(ed))
        for i in np.flatnonzero(bad):
            v[i], d[i], ev[i], ed[i] = self._enclosure(float(flat[i]), int(digits[i]))
        return tuple(t.reshape(x.shape) for t in (v, d, ev, ed))

    def _enclosure(self, xi: float, digits: int) -> tuple[float, float, float, float]:
        """(φ, φ', |error of φ|, |error of φ'|) at one point from one mpmath evaluation at
        _MP_DIGITS digits and its running error bounds (the rounding to float64 included), or the
        exact values with half an ulp where mpmath cannot evaluate or its bounds are not finite."""
        try:
            o = _mp_ops(_MP_DIGITS)
            ctx = o.ctx  # the thread's own context
            vals = self._eval(o, self.expr, ctx.mpf(xi), {})
            u = o.unit()
            out = []
            for t, err in ((vals[0], vals[4]), (vals[2], vals[5])):
                if isinstance(t, ctx.mpc) or not ctx.isfinite(t) or not ctx.isfinite(err):
                    raise ValueError("not enclosed")
                f = float(t)
                bound = abs(t - f) + 4 * err * u
                if not math.isfinite(f):
                    raise ValueError("beyond float64")
                b = float(bound)
                out += [f, b if b >= bound else float(np.nextafter(b, np.inf))]  # rounded up
            return out[0], out[2], out[1], out[3]
        except (ArithmeticError, ValueError, TypeError):
            v, d = self._exact(xi, digits)
            return v, d, abs(v) * 2.0**-53, abs(d) * 2.0**-53

    def both(self, x):
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(-1)
        v, d, ok, digits, _, _ = self._fast(flat)
        # Only finite inputs are promised finite-or-overflowed outputs; inf/nan inputs pass through.
        bad = np.isfinite(flat) & ~(np.isfinite(v) & np.isfinite(d) & ok)
        for i in np.flatnonzero(bad):
            v[i], d[i] = self._exact(float(flat[i]), int(digits[i]))
        return v.reshape(x.shape), d.reshape(x.shape)

    def log_abs(self, x, which: int):
        """log|φ(x)| (which = 0) or log|φ'(x)| (which = 1), also where the value underflows float64
        (below 2^−1022, or 0): there from mpmath, whose exponent does not underflow, at the digits
        that its running error bound needs for a relative error below 2^−55; −inf only where the
        value is certified 0 (exactly, with a zero bound) or mpmath cannot resolve it.  So the
        log-space chains see log|φ'(−800)| = −793.3 for z·σ(z), not −inf."""
        return self._underflowed(x, which, 0)

    def sign(self, x, which: int, vals=None):
        """sign(φ(x)) or sign(φ'(x)) (``which`` as in :meth:`log_abs`), exact where the value
        underflows: φ'(−800) of z·σ(z) is −1e-345, which float64 holds as 0."""
        return self._underflowed(x, which, 1, vals)

    def _underflowed(self, x, which: int, part: int, vals=None):
        x = np.asarray(x, dtype=np.float64)
        if vals is None:
            vals = self.both(x)[which]
        vals = np.broadcast_to(np.asarray(vals, dtype=np.float64), x.shape)
        out = np.array(_log_abs_where(vals) if part == 0 else np.sign(vals), dtype=np.float64)
        # underflowed (below the smallest normal), or overflowed (±inf at a finite z: log|z⁵| at 1e300)
        low = np.isfinite(x) & ((np.abs(vals) < np.finfo(np.float64).tiny) | np.isinf(vals))
        flat, res = x.reshape(-1), out.reshape(-1)
        for i in np.flatnonzero(low.reshape(-1)):
            res[i] = self._log_exact(float(flat[i]), which)[part]
        return res.reshape(x.shape)

    def _log_exact(self, xi: float, which: int) -> tuple[float, float]:
        """(log|f(xi)|, sign f(xi)) for f = φ or φ' from mpmath (see :meth:`log_abs`)."""
        digits = _MP_DIGITS
        t = None
        while digits <= _MP_MAX_DIGITS:
            o = _mp_ops(digits, wide=True)
            try:
                vals = self._eval(o, self.expr, o.ctx.mpf(xi), {})
            except (ArithmeticError, ValueError, TypeError):
                t = None
                break
            t, err = (vals[0], vals[4]) if which == 0 else (vals[2], vals[5])
            if isinstance(t, o.ctx.mpc) or not o.ctx.isfinite(t) or not o.ctx.isfinite(err):
                t = None
                break
            w = 4 * err * o.unit()
            if w == 0 or (t != 0 and w <= abs(t) * o.ctx.ldexp(1, -55)):
                break
            need = digits + 20 + (int(o.ctx.ceil(o.ctx.log10(w / abs(t)))) if t != 0 else digits)
            digits = max(need, digits + 10)
        if t is None or t == 0:
            return -math.inf, 0.0
        return float(o.ctx.log(abs(t))), (1.0 if t > 0 else -1.0)

    def value(self, x):
        return self.both(x)[0]

    def grad(self, x):
        return self.both(x)[1]


def _checked_kernel(fn, act_name: str, kernel: str):
    """``fn`` behind a check that its argument is a real number or array (bool, int or float)."""
    if getattr(fn, "_symgrad_checked", False):
        return fn

    def checked(x):
        if isinstance(x, np.ndarray):
            kind = x.dtype.kind
        elif isinstance(x, (str, bytes)) or x is None:
            kind = "O"
        else:
            try:
                kind = np.asarray(x).dtype.kind
            except (TypeError, ValueError):
                kind = "O"
        if kind not in "biuf":
            raise InvalidArgument("%s.%s(x): x=%r must be a real number or an array of them (float64 or float32)"
                                  % (act_name, kernel, x if not isinstance(x, np.ndarray) else x.dtype))
        return fn(x)

    checked._symgrad_checked = True
    checked.__doc__ = fn.__doc__
    return checked


def _all(o, flags):
    out = flags[0]
    for f in flags[1:]:
        out = o.logical_and(out, f)
    return out


def _left_sign_sympy(node: sympy.Expr, x0: float) -> float:
    """sign(node(t)) for t just below x0, by SymPy's one-sided limit, within a budget."""
    from symgrad._budget import BudgetExceeded, within_budget
    from symgrad.errors import SymgradError

    point = sympy.Rational(x0)
    try:
        s = within_budget(lambda: sympy.limit(sympy.sign(node), z, point, "-"),
                          seconds=KINK_LIMIT_SECONDS, what="the sign of %s just below z = %r" % (node, x0))
    except BudgetExceeded as exc:
        raise SymgradError("cannot decide the kink of %s at z = %r: %s" % (node, x0, exc.reason)) from None
    except Exception as exc:  # noqa: BLE001 - SymPy's limit has internal errors (TypeError in gruntz)
        raise SymgradError("cannot decide the kink of %s at z = %r: SymPy's limit failed (%s)" % (node, x0, type(exc).__name__)) from None
    if s not in (-1, 0, 1):
        raise SymgradError("cannot decide the kink of %s at z = %r: SymPy gave %s" % (node, x0, s))
    return float(s)


def _left_limit(derivative: sympy.Expr, point: sympy.Expr) -> sympy.Expr:
    """lim_{t↑point} φ'(t) by SymPy, within a budget."""
    from symgrad._budget import BudgetExceeded, within_budget

    what = "the left limit of φ' = %s at z = %s" % (derivative, point)
    # in functions SymPy's limit knows
    plain = derivative.replace(relu, lambda g: sympy.Max(g, 0)).rewrite(sympy.exp) if derivative.has(relu, sigmoid, softplus) else derivative
    try:
        out = within_budget(lambda: sympy.limit(plain, z, point, "-"), seconds=KINK_LIMIT_SECONDS, what=what)
    except BudgetExceeded as exc:
        raise SymgradError("φ' at the kink z = %s is unknown: %s" % (point, exc.reason)) from None
    except Exception as exc:  # noqa: BLE001 - SymPy's limit has internal errors (TypeError in gruntz)
        raise SymgradError("φ' at the kink z = %s is unknown: SymPy could not find %s (%s)" % (point, what, type(exc).__name__)) from None
    if not (out.is_number and out.is_finite and out.is_real):
        raise SymgradError("φ' at the kink z = %s is unknown: SymPy gave %s for %s" % (point, out, what))
    return out


def _sympy_point(expr: sympy.Expr, x0: float) -> tuple[float, float]:
    """(φ(x0), φ'(x0⁻)) by SymPy: the exact value and the left limit of the a.e. derivative."""
    from symgrad._budget import BudgetExceeded, within_budget
    from symgrad.errors import SymgradError

    point = sympy.Rational(x0)
    d = _ae_derivative(expr)

    def compute():
        value = expr.xreplace({z: point}).evalf(_MP_DIGITS)
        slope = sympy.limit(d, z, point, "-").evalf(_MP_DIGITS)
        return value, slope

    try:
        value, slope = within_budget(compute, seconds=KINK_LIMIT_SECONDS, what="φ and φ' of %s at z = %r" % (expr, x0))
    except BudgetExceeded as exc:
        raise SymgradError("cannot evaluate %s at z = %r: %s" % (expr, x0, exc.reason)) from None
    except Exception as exc:  # noqa: BLE001 - SymPy's limit has internal errors
        raise SymgradError("cannot evaluate %s at z = %r: SymPy failed (%s)" % (expr, x0, type(exc).__name__)) from None
    out = []
    for t in (value, slope):
        if t in (sympy.oo, -sympy.oo):
            out.append(float(t))
        elif t.is_real and t.is_number:
            out.append(float(t))
        else:
            raise SymgradError("cannot evaluate %s at z = %r: SymPy gave %s" % (expr, x0, t))
    return out[0], out[1]


def _ae_derivative(expr: sympy.Expr) -> sympy.Expr:
    """dφ/dz with the Dirac deltas of jumps dropped: the derivative of each branch."""
    d = sympy.diff(expr, z)
    return d.replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: S.Zero) if d.has(sympy.DiracDelta) else d


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

    Raises InvalidArgument for a ``sup`` that is not a number or a field that is not a set.

    >>> import sympy
    >>> b = DerivativeBound(sympy.Rational(1, 4), sympy.FiniteSet(0), sympy.Interval.Lopen(0, sympy.Rational(1, 4)), True)
    >>> b.known, b.sup
    (True, 1/4)
    """

    sup: sympy.Expr | None
    attained_at: sympy.Set | None
    range: sympy.Set | None
    exact: bool
    note: str = ""

    def __post_init__(self):
        # Checked here because the LaTeX and CLI code read these fields: a string sup would
        # reach SymPy's parser there.  Real numbers become SymPy numbers.
        fix = "Fix: e.g. DerivativeBound(sympy.Rational(1, 4), sympy.FiniteSet(0), sympy.Interval(0, sympy.Rational(1, 4)), True)"
        sup = self.sup
        if sup is not None and not (isinstance(sup, sympy.Expr) and not sup.free_symbols):
            try:
                if isinstance(sup, sympy.Basic):
                    raise InvalidArgument("a SymPy object with symbols")
                sup = _as_argument("DerivativeBound", sup)
            except InvalidArgument:
                raise InvalidArgument("DerivativeBound: sup=%s must be None or a number (a SymPy number or a real one). %s"
                                      % (_show_value(self.sup), fix)) from None
            object.__setattr__(self, "sup", sup)
        for field_name in ("attained_at", "range"):
            value = getattr(self, field_name)
            if value is not None and not isinstance(value, sympy.Set):
                raise InvalidArgument("DerivativeBound: %s=%s must be None or a SymPy set. %s" % (field_name, _show_value(value), fix))
        if not isinstance(self.exact, bool):
            raise InvalidArgument("DerivativeBound: exact=%s must be True or False. %s" % (_show_value(self.exact), fix))
        if not isinstance(self.note, str):
            raise InvalidArgument("DerivativeBound: note=%s must be a string. %s" % (_show_value(self.note), fix))

    @property
    def known(self) -> bool:
        """True when the sup is known (exact, or certified to the digits in ``note``).

        >>> activation("sigmoid").bound.known
        True
        """
        return self.sup is not None


#: The functions whose presence in φ or φ' means φ' or φ'' jumps somewhere (see Activation.has_kink).
_KINK_FUNCTIONS = (sympy.Heaviside, sympy.Piecewise, sympy.Abs, sympy.sign, sympy.Max, sympy.Min, sympy.DiracDelta)


@dataclass(frozen=True, eq=False)
class Activation:
    """One activation function φ with its symbolic facts and stable NumPy kernels: everything
    symgrad knows about φ is here, and no other module asks for φ by name.

    * ``name``, ``expr`` (φ(z)), ``derivative`` (φ'(z) in closed form), ``latex_name``;
    * ``prime``: φ' as an unevaluated SymPy function (one module-level :class:`ActivationPrime`
      keyed by :attr:`token`);
    * NumPy kernels, stable for every finite float64: ``value`` (φ), ``grad`` (φ'),
      ``log_abs_grad`` (log|φ'|), ``log_abs_value`` (log|φ|), ``value_sign`` (sign φ) and
      ``grad_sign(z, g)`` (sign φ' given g = grad(z), exact where g underflowed to 0);
    * ``bound`` (sup|φ'|, where attained, range of φ'), ``bound_certificate`` ((s, c) with
      sup − φ' = (s − c)² in s, for σ and tanh), ``kinks`` (where φ' or φ'' jumps; φ' there is
      the left derivative), ``latex_formula`` / ``latex_derivative`` (the literature's φ, φ'),
      ``logistic`` (φ = σ, so δ^L = σ(z_L) − y is formed from the logit);
    * ``stable`` (φ, φ' written for float64, what the compiled kernels are generated from) and
      ``log_bounds`` ((V, U): log|φ| ≤ V, log|φ'| ≤ U for every z, which certify exact zeros where
      φ' underflows in a residual layer).

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
    kinks: tuple = ()
    latex_formula: str | None = field(default=None, repr=False)
    latex_derivative: str | None = field(default=None, repr=False)
    log_abs_value: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    value_sign: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    grad_sign: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    logistic: bool = False
    bound_certificate: tuple | None = field(default=None, repr=False)
    #: (φ, φ') as SymPy expressions in z written for float64 evaluation (no overflow, no
    #: cancellation, the kink convention built in): what :mod:`symgrad.numeric._codegen` compiles
    #: into the numba chain kernel.  None for a custom activation, whose ``expr`` and
    #: ``derivative`` are compiled as they are (where the printer supports them).
    stable: tuple | None = field(default=None, repr=False)
    #: (V, U) as SymPy expressions in z with log|φ(z)| ≤ V(z) and log|φ'(z)| ≤ U(z) for every
    #: real z, tight where φ or φ' underflows (U = −|z| for σ' ≤ e^{−|z|}), printed into the
    #: compiled residual chain kernel: where φ'(z_l) of a residual layer underflows, they certify
    #: that δ_l = α φ'(z_l) g_l rounds to 0 and that a_l = a_{l−1} + α φ(z_l) rounds to a_{l−1}, so
    #: the sample needs no rescaled redo (numeric/residual.py).  None: nothing is certified (the
    #: sample is redone, as for every custom activation).  Each bound is checked against mpmath
    #: (tests/test_activations.py).
    log_bounds: tuple | None = field(default=None, repr=False)
    #: A vector (output-only) activation: a_i depends on the whole layer z, so it is not an
    #: elementwise φ and is allowed only as a dense network's output layer (softmax,
    #: a_i = e^{z_i}/Σ_k e^{z_k}, Nielsen ch. 3 eq. 78).  Its ``expr`` is the unnormalised weight
    #: e^z (a_i = expr(z_i)/Σ_k expr(z_k)); ``vector`` maps a layer's SymPy z's to its a's,
    #: ``value``/``log_abs_value`` act along the last axis (a probability vector), ``grad`` is the
    #: Jacobian's diagonal a_i(1 − a_i) (the Jacobian is diag(a) − a aᵀ) and ``minus_target(z, y)``
    #: forms a − y from the logits as (value, log|·|, sign).
    output_only: bool = False
    vector: Callable | None = field(default=None, repr=False)
    minus_target: Callable | None = field(default=None, repr=False)
    #: For a custom activation, x ↦ (φ(x), φ'(x), |error of φ|, |error of φ'|): the float64
    #: values with their first-order running error bounds (see :data:`ERROR_SLACK`), without the
    #: exact re-evaluation that ``value``/``grad`` make where the bounds are too wide: for callers
    #: that carry the bounds (the mean-field quadrature adds them to its error).  None for a
    #: built-in, whose ``stable`` forms are accurate to a few ulps.
    bounded: Callable | None = field(default=None, repr=False)

    def __post_init__(self):
        # The kernels take real arrays; a string, None or a complex number is refused by name
        # instead of surfacing as a raw NumPy error (or, for complex input, a silent real part).
        for kernel in ("value", "grad", "log_abs_grad"):
            object.__setattr__(self, kernel, _checked_kernel(getattr(self, kernel), self.name, kernel))
        # The log-space kernels default to the linear ones (right wherever φ does not underflow).
        if self.log_abs_value is None:
            object.__setattr__(self, "log_abs_value", lambda x: _log_abs_where(self.value(x)))
        if self.value_sign is None:
            object.__setattr__(self, "value_sign", lambda x: np.sign(self.value(x)))
        if self.grad_sign is None:
            object.__setattr__(self, "grad_sign", lambda x, g: np.sign(g))
        _LIVE[self.token] = self

    @cached_property
    def token(self) -> sympy.Basic:
        """The SymPy atom naming φ inside expressions (:class:`ActivationPrime`'s second argument):
        ``Str('sigmoid')``, ``Str('leaky_relu(alpha=1/10)')``; for any other activation
        ``Tuple(Str(name), Str(latex_name), Lambda(z, φ))``, from which :func:`from_token` rebuilds it.

        >>> activation("leaky_relu", alpha=0.1).token
        leaky_relu(alpha=1/10)
        """
        if self.builtin and self.name in _FACTORIES:
            return Str(self.name + ("(%s)" % ",".join("%s=%s" % kv for kv in self.params) if self.params else ""))
        return sympy.Tuple(Str(self.name), Str(self.latex_name), sympy.Lambda(z, self.expr))

    @property
    def has_kink(self) -> bool:
        """φ' or φ'' jumps somewhere: a built-in's listed :attr:`kinks`, or a custom expression
        with abs, max, min, sign, heaviside or a piecewise part.  Finite differences across a
        kink are one-sided (:func:`symgrad.check_gradients` decides them from the left).

        >>> activation("relu").has_kink, activation("sigmoid").has_kink, activation("max(0.01*z, z)").has_kink
        (True, False, True)
        """
        return bool(self.kinks) or any(e.has(*_KINK_FUNCTIONS) for e in (self.expr, self.derivative))

    def __call__(self, arg):
        """φ(arg) as a SymPy expression (``sigmoid(w_1*a_0 + b_1)``).

        ``arg`` is a SymPy expression or a real number (int, float, Fraction); anything else,
        strings included, is refused: a string is never parsed or evaluated here.  An
        :attr:`output_only` activation (softmax) is not a function of one number: it refuses, and
        names :attr:`vector`.
        """
        if self.output_only:
            raise InvalidArgument("%s is not elementwise: %s(z)_i = e^{z_i}/Σ_k e^{z_k} depends on the whole layer. "
                                  "Fix: use act.vector([z1, ..., zn]) for the layer's outputs" % (self.name, self.name))
        return self.expr.xreplace({z: _as_argument(self.name, arg)})

    def derivative_at(self, arg) -> sympy.Expr:
        """φ'(arg) in closed form.

        At a number where a custom φ has a kink (a heaviside or sign in φ' whose argument
        vanishes there), the value is the convention's, the left limit of φ', found by SymPy
        within :data:`KINK_LIMIT_SECONDS` (else :class:`SymgradError`): SymPy's own Heaviside(0)
        = 1/2 would give max(0.01*z, z) the slope 0.505 at 0.  The built-ins write the
        convention into their derivatives already.  Raises InvalidArgument for a string or a
        non-real argument (nothing is parsed here).

        >>> activation("sigmoid").derivative_at(0), activation("max(0.01*z, z)").derivative_at(0)
        (1/4, 1/100)
        """
        arg = _as_argument(self.name + "'", arg)  # never a string
        out = self.derivative.xreplace({z: arg})
        if self.builtin or not (isinstance(arg, sympy.Expr) and arg.is_number):
            return out
        kinks = [n for n in self.derivative.atoms(sympy.Heaviside, sympy.sign) if n.args[0].xreplace({z: arg}).is_zero is not False]
        return _left_limit(self.derivative, arg) if kinks else out

    @cached_property
    def prime(self) -> _Prime:
        """The unevaluated SymPy function φ' (``sig.prime(z1)`` prints ``sigmoid'(z1)``); ``.at(arg)``
        skips the argument check (for symgrad's own symbols).  ``.doit()`` gives the closed form.

        >>> import sympy
        >>> p = activation("sigmoid").prime(sympy.Symbol("z1"))
        >>> p, p.doit()
        (sigmoid'(z1), (1 - sigmoid(z1))*sigmoid(z1))
        """
        return _Prime(self.token)

    @property
    def bound(self) -> DerivativeBound:
        """Supremum of |φ'|, where it is attained, and the range of φ' (see DerivativeBound):
        exact for the built-ins (sigmoid's 1/4 at 0, Nielsen ch. 5), derived by SymPy under a
        budget for a custom activation (``bound.known`` is False, with the reason, when it cannot).

        >>> b = activation("sigmoid").bound
        >>> b.sup, b.attained_at, b.range
        (1/4, {0}, Interval.Lopen(0, 1/4))
        """
        if self._bound is None:
            object.__setattr__(self, "_bound", _derive_bound(self))
        return self._bound

    def latex(self) -> str:
        """φ(z) in LaTeX (SymPy's printer; the derivations use :attr:`latex_formula`).

        >>> activation("tanh").latex() == r"\\tanh{\\left(z \\right)}"
        True
        """
        return sympy.latex(self.expr)

    def __eq__(self, other):
        if not isinstance(other, Activation):
            return NotImplemented
        return self.name == other.name and self.expr == other.expr

    def __hash__(self):
        return hash((self.name, self.expr))

    def __repr__(self):
        return "Activation(%r, %s)" % (self.name, self.expr)


#: Live activations by token, so that a φ' in an expression finds its Activation without keeping
#: it alive (weak); a token whose activation has gone is rebuilt from the token itself.
_LIVE: "weakref.WeakValueDictionary[sympy.Basic, Activation]" = weakref.WeakValueDictionary()
_BUILTIN_TOKEN = re.compile(r"([a-z_]+)(?:\((.*)\))?")


def from_token(token) -> Activation:
    """The :class:`Activation` an :attr:`Activation.token` names: the live one, else rebuilt
    (a built-in through :func:`activation`, a custom one through :func:`custom_activation`, which
    re-checks it; the expression is a SymPy object, never parsed from text).

    >>> from_token(activation("tanh").token).name
    'tanh'
    """
    hit = _LIVE.get(token)
    if hit is not None:
        return hit
    if isinstance(token, Str):
        m = _BUILTIN_TOKEN.fullmatch(token.name)
        if m and m.group(1) in _FACTORIES:
            params = dict(kv.split("=", 1) for kv in m.group(2).split(",")) if m.group(2) else {}
            return activation(m.group(1), **params)  # each value is checked by _exact_param
    elif (isinstance(token, sympy.Tuple) and len(token) == 3 and isinstance(token[0], Str) and isinstance(token[1], Str)
          and isinstance(token[2], sympy.Lambda)):
        lam = token[2]
        expr = lam.expr.xreplace({lam.variables[0]: z})
        return custom_activation(expr, name=token[0].name, latex_name=token[1].name)
    raise InvalidArgument("%s does not name an activation. Fix: use Activation.token, e.g. activation('sigmoid').token" % _show_value(token))


#: Seconds SymPy may spend on the extrema of a custom φ' (``maximum``, ``minimum``) and, in a
#: second budget, on its range and where the sup is attained; ``act.bound`` answers within
#: about their sum, "unknown" (with the reason) when the first runs out.
BOUND_SECONDS = 6.0
BOUND_DETAIL_SECONDS = 3.0


def _derive_bound(act: Activation) -> DerivativeBound:
    """Sup of |φ'| for a custom activation, by SymPy where it can (critical points of φ'
    and the limits at ±∞), each SymPy call under an enforced budget; otherwise a bound whose
    note says it is unknown and why."""
    from symgrad._budget import BudgetExceeded, within_budget

    unknown = "unknown: %s; pass bound= to custom_activation"

    def extrema():
        d = act.derivative.rewrite(sympy.exp) if act.derivative.has(sigmoid, softplus) else act.derivative
        return d, sympy.calculus.util.maximum(d, z, S.Reals), sympy.calculus.util.minimum(d, z, S.Reals)

    try:
        d, hi, lo = within_budget(extrema, seconds=BOUND_SECONDS, what="SymPy's maximum and minimum of φ'")
    except BudgetExceeded as exc:
        return DerivativeBound(None, None, None, False, unknown % exc.reason)
    except (NotImplementedError, ValueError, TypeError, AttributeError) as exc:
        return DerivativeBound(None, None, None, False, unknown % ("SymPy could not find the extrema of φ' (%s)" % type(exc).__name__))
    if not (hi.is_number and lo.is_number) or hi.has(sympy.nan, sympy.zoo) or lo.has(sympy.nan, sympy.zoo):
        return DerivativeBound(None, None, None, False, unknown % "SymPy could not find the extrema of φ'")
    sup = sympy.Max(sympy.Abs(hi), sympy.Abs(lo))

    def detail():
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
        return rng, attained

    note = "derived by SymPy from the critical points and limits of φ'"
    try:
        rng, attained = within_budget(detail, seconds=BOUND_DETAIL_SECONDS, what="SymPy's range of φ' and where |φ'| = sup")
    except BudgetExceeded as exc:
        rng, attained = sympy.Interval(lo, hi), None
        note += "; where the sup is attained is unknown (%s)" % exc.reason
    return DerivativeBound(sup, attained, rng, True, note)


def _certified_root(f: Callable[[sympy.Expr], sympy.Expr], lo, hi, digits: int = 30) -> sympy.Float:
    """A root of ``f`` in ``[lo, hi]``, certified by a sign change of ``f`` at the ends of an
    interval of width 10^-digits around it, evaluated in exact-then-rounded arithmetic."""
    import mpmath

    ctx = mpmath.MPContext()  # a private context: mpmath's global precision is the user's (and other threads')
    ctx.dps = digits + 20
    g = lambda t: sympy.N(f(sympy.Float(str(t), digits + 20)), digits + 20)  # noqa: E731
    r = ctx.findroot(lambda t: ctx.mpf(str(g(t))), (ctx.mpf(lo) + ctx.mpf(hi)) / 2)
    eps = ctx.mpf(10) ** (-digits)
    a, b = sympy.Rational(str(r - eps)), sympy.Rational(str(r + eps))
    fa, fb = f(a).evalf(digits + 20), f(b).evalf(digits + 20)
    text = ctx.nstr(r, digits + 5)
    if not (fa * fb < 0):
        raise ArithmeticError("root of %s in [%s, %s] could not be certified" % (f, lo, hi))
    return sympy.Float(text, digits)


@dataclass(frozen=True)
class Builtin:
    """One built-in activation: its name, aliases, keyword parameters and the function that
    makes its :class:`Activation` (with every fact about it) from validated exact parameters."""

    name: str
    make: Callable[..., Activation]
    aliases: tuple[str, ...] = ()
    params: tuple[str, ...] = ()


def _sign_filled(fill: float):
    """grad_sign for a φ' whose sign is ``fill`` wherever it underflows to 0."""
    return lambda x, g: np.where(g == 0, fill, np.sign(g))


def _log_abs_times(log_factor):
    """log|z·f(z)| = log|z| + log f(z) (φ through the origin: silu, gelu, softsign, identity)."""
    return lambda x: _log_abs_where(x) + log_factor(x)


def _make_builtins() -> list[Builtin]:
    """The built-in activations, one entry each: adding one means adding one entry here."""
    pi, exp, erf, sqrt = sympy.pi, sympy.exp, sympy.erf, sympy.sqrt
    oo = S.Infinity
    Interval, FiniteSet = sympy.Interval, sympy.FiniteSet
    nonneg = _sign_filled(1.0)  # φ' ≥ 0 everywhere: an underflowed φ' is a positive number
    from sympy.codegen.cfunctions import expm1, log1p

    # Stable float64 forms (Activation.stable), through e = exp(−|z|) ∈ (0, 1] as the NumPy kernels.
    Pw, Abs = sympy.Piecewise, sympy.Abs

    # Unevaluated: SymPy's Max/Min would otherwise try to order their arguments symbolically
    # (0.24 s for σ's clamp alone), and the printer only needs the tree.
    def Max(*args):
        return sympy.Max(*args, evaluate=False)

    def Min(*args):
        return sympy.Min(*args, evaluate=False)
    e1 = exp(-Abs(z))
    sig_pos, sig_neg = 1 / (1 + e1), e1 / (1 + e1)  # σ(|z|), σ(−|z|)
    sig = Pw((sig_pos, z >= 0), (sig_neg, True))

    def make_sigmoid():
        return Activation(
            "sigmoid", sigmoid(z), sigmoid(z) * (1 - sigmoid(z)), r"\sigma",
            _np_sigmoid, _np_dsigmoid, _np_log_dsigmoid,
            DerivativeBound(S(1) / 4, FiniteSet(0), Interval.Lopen(0, S(1) / 4), True,
                            "1/4 − σ'(z) = (σ(z) − 1/2)² ≥ 0, zero iff z = 0"),
            latex_formula=r"\frac{1}{1 + e^{-z}}", latex_derivative=r"\sigma(z)\,\bigl(1 - \sigma(z)\bigr)",
            log_abs_value=_np_log_sigmoid, value_sign=np.ones_like, grad_sign=nonneg,
            logistic=True, bound_certificate=(sigmoid(z), S.Half),
            stable=(sig, Min(e1 / (1 + e1) ** 2, S(1) / 4)),
            log_bounds=(Min(z, 0), -Abs(z)),  # σ ≤ min(1, e^z); σ' = e^{−|z|}/(1 + e^{−|z|})² ≤ e^{−|z|}
        )

    def make_tanh():
        return Activation(
            "tanh", sympy.tanh(z), 1 - sympy.tanh(z) ** 2, r"\tanh",
            np.tanh, _np_dtanh, _np_log_dtanh,
            DerivativeBound(S.One, FiniteSet(0), Interval.Lopen(0, 1), True, "1 − tanh'(z) = tanh²(z) ≥ 0, zero iff z = 0"),
            latex_formula=r"\frac{e^{z} - e^{-z}}{e^{z} + e^{-z}}", latex_derivative=r"1 - \tanh^{2} z",
            value_sign=np.sign, grad_sign=nonneg,  # tanh of a subnormal is that subnormal: log|tanh| by default
            bound_certificate=(sympy.tanh(z), S.Zero),
            stable=(sympy.tanh(z), Min(4 * exp(-2 * Min(Abs(z), 10**4)) / (1 + exp(-2 * Min(Abs(z), 10**4))) ** 2, 1)),
            log_bounds=(S.Zero, sympy.log(4) - 2 * Abs(z)),  # |tanh| ≤ 1; tanh' = 4e^{−2|z|}/(1 + e^{−2|z|})²
        )

    def make_relu():
        return Activation(
            "relu", relu(z), sympy.Heaviside(z, 0), r"\operatorname{ReLU}",
            lambda x: np.maximum(x, 0.0) + 0.0 * x,
            lambda x: (x > 0).astype(np.result_type(x, np.float64)),
            lambda x: np.where(x > 0, 0.0, -np.inf),
            DerivativeBound(S.One, Interval.open(0, oo), FiniteSet(0, 1), True, "φ' is 1 for z > 0 and 0 for z ≤ 0 (convention at 0)"),
            kinks=(S.Zero,),
            latex_formula=r"\max(0, z)", latex_derivative=r"\begin{cases} 1, & z > 0,\\ 0, & z \le 0 \end{cases}",
            log_abs_value=lambda x: np.where(x > 0, _log_abs_where(x), -np.inf),
            value_sign=lambda x: (x > 0).astype(x.dtype), grad_sign=lambda x, g: np.where(x > 0, 1.0, 0.0),
            stable=(Max(z, 0), sympy.Heaviside(z, 0)),
        )

    def make_leaky_relu(alpha=S(1) / 100):
        a = _exact_param("leaky_relu", "alpha", alpha)
        af = float(a)
        sup = sympy.Max(S.One, abs(a))
        where = Interval.open(0, oo) if abs(a) < 1 else (Interval(-oo, 0) if abs(a) > 1 else S.Reals)
        log_a = math.log(abs(af)) if af != 0 else -math.inf
        al = sympy.latex(a)
        return Activation(
            "leaky_relu", leaky_relu(z, a), a + (1 - a) * sympy.Heaviside(z, 0), r"\operatorname{LReLU}_{%s}" % al,
            lambda x: np.where(x > 0, x, af * x),
            lambda x: np.where(x > 0, 1.0, af),
            lambda x: np.where(x > 0, 0.0, log_a),
            DerivativeBound(sup, where, FiniteSet(a, 1), True, "φ' is 1 for z > 0 and α for z ≤ 0 (convention at 0)"),
            params=(("alpha", a),), kinks=(S.Zero,) if a != 1 else (),
            latex_formula=r"\begin{cases} z, & z > 0,\\ %s\,z, & z \le 0 \end{cases}" % al,
            latex_derivative=r"\begin{cases} 1, & z > 0,\\ %s, & z \le 0 \end{cases}" % al,
            log_abs_value=lambda x: np.where(x > 0, 0.0, log_a) + _log_abs_where(x),
            value_sign=lambda x: np.where(x > 0, 1.0, np.sign(af) * np.sign(x)).astype(x.dtype), grad_sign=nonneg,
            stable=(Pw((z, z > 0), (a * z, True)), Pw((1, z > 0), (a, True))),
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
        al = sympy.latex(a)
        return Activation(
            "elu", elu(z, a), sympy.Piecewise((1, z > 0), (a * exp(z), True)), r"\operatorname{ELU}_{%s}" % al,
            lambda x: np.where(x > 0, x, af * np.expm1(np.minimum(x, 0.0))),
            lambda x: np.where(x > 0, 1.0, af * np.exp(np.minimum(x, 0.0))),
            lambda x: np.where(x > 0, 0.0, log_a + np.minimum(x, 0.0)),
            bound,
            params=(("alpha", a),), kinks=(S.Zero,),  # φ' jumps at 0 unless α = 1; φ'' jumps even then
            latex_formula=r"\begin{cases} z, & z > 0,\\ %s\,(e^{z} - 1), & z \le 0 \end{cases}" % al,
            latex_derivative=r"\begin{cases} 1, & z > 0,\\ %s\,e^{z}, & z \le 0 \end{cases}" % al,
            log_abs_value=lambda x: np.where(x > 0, _log_abs_where(x), log_a + _log_abs_where(np.expm1(np.minimum(x, 0.0)))),
            value_sign=np.sign, grad_sign=nonneg,
            stable=(Pw((z, z > 0), (a * expm1(Min(z, 0)), True)), Pw((1, z > 0), (a * exp(Min(z, 0)), True))),
            # |φ| ≤ max(α, 1)|z| and log|z| ≤ |z|; φ' = 1 or αe^z
            log_bounds=(sympy.log(sympy.Max(a, 1)) + Abs(z), sympy.log(sympy.Max(a, 1)) + Min(z, 0)),
        )

    def make_selu():
        # Klambauer et al. 2017, eq. (2), with their constants to 32 digits, exact as decimals.
        lam, a = sympy.Rational("1.0507009873554804934193349852946"), sympy.Rational("1.6732632423543772848170429916717")
        lf, af = float(lam), float(a)
        log_l, log_la = math.log(lf), math.log(lf * af)
        return Activation(
            "selu", lam * elu(z, a), sympy.Piecewise((lam, z > 0), (lam * a * exp(z), True)), r"\operatorname{SELU}",
            lambda x: lf * np.where(x > 0, x, af * np.expm1(np.minimum(x, 0.0))),
            lambda x: np.where(x > 0, lf, lf * af * np.exp(np.minimum(x, 0.0))),
            lambda x: np.where(x > 0, log_l, log_la + np.minimum(x, 0.0)),
            # λ < λα, so the sup is λα, attained at 0 by the left-derivative convention (φ'(0) = λαe^0).
            DerivativeBound(lam * a, FiniteSet(0), Interval.Lopen(0, lam * a), True,
                            "φ' = λαe^z ∈ (0, λα] for z ≤ 0 (λα at z = 0 by the convention) and λ < λα for z > 0"),
            kinks=(S.Zero,),
            latex_formula=r"\lambda \begin{cases} z, & z > 0,\\ \alpha\,(e^{z} - 1), & z \le 0 \end{cases}"
                          r"\quad (\lambda \approx 1.0507,\ \alpha \approx 1.6733)",
            latex_derivative=r"\begin{cases} \lambda, & z > 0,\\ \lambda \alpha\,e^{z}, & z \le 0 \end{cases}",
            log_abs_value=lambda x: np.where(x > 0, log_l + _log_abs_where(x), log_la + _log_abs_where(np.expm1(np.minimum(x, 0.0)))),
            value_sign=np.sign, grad_sign=nonneg,
            stable=(Pw((lam * z, z > 0), (lam * a * expm1(Min(z, 0)), True)), Pw((lam, z > 0), (lam * a * exp(Min(z, 0)), True))),
            log_bounds=(sympy.log(lam * a) + Abs(z), sympy.log(lam * a) + Min(z, 0)),  # as ELU's, with λα > λ
        )

    def make_softplus():
        return Activation(
            "softplus", softplus(z), sigmoid(z), r"\operatorname{softplus}",
            _np_softplus, _np_sigmoid, _np_log_sigmoid,
            DerivativeBound(S.One, S.EmptySet, Interval.open(0, 1), True, "φ' = σ(z) < 1, approaching 1 as z → ∞"),
            latex_formula=r"\ln\bigl(1 + e^{z}\bigr)", latex_derivative=r"\sigma(z) = \frac{1}{1 + e^{-z}}",
            log_abs_value=_np_log_softplus, value_sign=np.ones_like, grad_sign=nonneg,
            stable=(Max(z, 0) + log1p(e1), sig),
            log_bounds=(z, Min(z, 0)),  # log(1 + e^z) ≤ e^z for z < 0 and log(z + log 2) ≤ z for z ≥ 0; σ ≤ min(1, e^z)
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
            latex_formula=r"z\,\sigma(z)", latex_derivative=r"\sigma(z)\,\bigl(1 + z\,(1 - \sigma(z))\bigr)",
            # φ' underflows only far into the left tail, where it is negative
            log_abs_value=_log_abs_times(_np_log_sigmoid), value_sign=np.sign, grad_sign=_sign_filled(-1.0),
            stable=(z * sig, sig * (1 + z * Pw((sig_neg, z >= 0), (sig_pos, True)))),  # σ(z)(1 + z σ(−z)), as _np_silu_grad
            # |zσ(z)| ≤ |z| e^{min(z, 0)}; |φ'| ≤ e^{min(z, 0)}(1 + |z|) and ≤ 1.0999; log(1 + x) ≤ √x
            log_bounds=(Min(z, 0) + sqrt(Abs(z)), sympy.log(S(11) / 10) + Min(z, 0) + sqrt(Abs(z))),
        )

    def make_gelu():
        d = (1 + erf(z / sqrt(2))) / 2 + z * exp(-z ** 2 / 2) / sqrt(2 * pi)
        top = (1 + erf(1)) / 2 + exp(-1) / sqrt(pi)
        bottom = (1 - erf(1)) / 2 - exp(-1) / sqrt(pi)
        return Activation(
            "gelu", z * (1 + erf(z / sqrt(2))) / 2, d, r"\operatorname{GELU}",
            _np_gelu, _np_gelu_grad, _np_gelu_log_grad,
            DerivativeBound(top, FiniteSet(sqrt(2)), Interval(bottom, top), True, "φ'' = ϕ(z)(2 − z²) vanishes at z = ±√2"),
            latex_formula=r"\frac{z}{2}\Bigl(1 + \operatorname{erf}\frac{z}{\sqrt{2}}\Bigr)",
            latex_derivative=r"\frac{1}{2}\Bigl(1 + \operatorname{erf}\frac{z}{\sqrt{2}}\Bigr) + \frac{z\,e^{-z^{2}/2}}{\sqrt{2\pi}}",
            log_abs_value=_log_abs_times(lambda x: _special().log_ndtr(x)), value_sign=np.sign, grad_sign=_sign_filled(-1.0),
            # Φ(z) = erfc(−z/√2)/2 (no cancellation for z < 0), as scipy's ndtr in _np_gelu
            stable=(z * sympy.erfc(-z / sqrt(2), evaluate=False) / 2,
                    sympy.erfc(-z / sqrt(2), evaluate=False) / 2 + z * exp(-z ** 2 / 2) / sqrt(2 * pi)),
            # z < 0: Φ(z) ≤ ϕ(z)/|z| (Mills), so |φ| ≤ ϕ(z) and, for z ≤ −1, |φ'| ≤ |z|ϕ(z) (two terms of
            # opposite signs); |φ'| ≤ 1.13 everywhere; log x ≤ √x
            log_bounds=(sqrt(Abs(z)) - Min(z, 0) ** 2 / 2, sympy.log(S(113) / 100) + sqrt(Abs(z)) - Min(z, 0) ** 2 / 2),
        )

    def make_softsign():
        return Activation(
            "softsign", z / (1 + sympy.Abs(z)), 1 / (1 + sympy.Abs(z)) ** 2, r"\operatorname{softsign}",
            lambda x: x / (1.0 + np.abs(x)),
            lambda x: np.square(1.0 / (1.0 + np.abs(x))),
            lambda x: -2.0 * np.log1p(np.abs(x)),
            DerivativeBound(S.One, FiniteSet(0), Interval.Lopen(0, 1), True, "φ' = 1/(1 + |z|)² decreases in |z|"),
            kinks=(S.Zero,),  # φ'' jumps at 0
            latex_formula=r"\frac{z}{1 + |z|}", latex_derivative=r"\frac{1}{(1 + |z|)^{2}}",
            log_abs_value=_log_abs_times(lambda x: -np.log1p(np.abs(x))), value_sign=np.sign, grad_sign=nonneg,
            stable=(z / (1 + Abs(z)), 1 / (1 + Abs(z)) ** 2),
        )

    def make_identity():
        return Activation(
            "identity", z, S.One, r"\operatorname{id}",
            lambda x: x + 0.0, lambda x: np.ones_like(x, dtype=np.result_type(x, np.float64)), lambda x: np.zeros_like(x, dtype=np.result_type(x, np.float64)),
            DerivativeBound(S.One, S.Reals, FiniteSet(1), True, "φ' = 1"),
            latex_formula="z", latex_derivative="1",
            log_abs_value=_log_abs_where, value_sign=np.sign, grad_sign=nonneg,
            stable=(z, S.One),
        )

    return [
        Builtin("sigmoid", make_sigmoid),
        Builtin("tanh", make_tanh),
        Builtin("relu", make_relu),
        Builtin("leaky_relu", make_leaky_relu, params=("alpha",)),
        Builtin("elu", make_elu, params=("alpha",)),
        Builtin("softplus", make_softplus),
        Builtin("silu", make_silu, aliases=("swish",)),
        Builtin("gelu", make_gelu),
        Builtin("softsign", make_softsign),
        Builtin("identity", make_identity, aliases=("linear",)),
        Builtin("selu", make_selu),
    ]


#: Largest |parameter| (alpha) a built-in accepts, and the most digits in its exact numerator
#: or denominator (every float fits: 5e-324 is 5/10**324).
MAX_PARAM = 10**6
MAX_PARAM_DIGITS = 330
# A decimal or a fraction of integers, with a short exponent: nothing else is read from a string.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?(?:/\d+)?")


def _show_value(value) -> str:
    """repr() of a user's value for a message, short even for a 10**10**6 integer."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return "(a %d-bit integer)" % value.bit_length()
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - its repr may fail: name the type
        text = "<%s>" % type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _exact_param(act: str, pname: str, value) -> sympy.Rational:
    """A built-in's parameter as an exact rational (0.01 is 1/100), validated like an
    activation string: only real numbers of moderate size, never code."""
    fix = "Fix: pass a real number with |%s| <= %g, e.g. %s=0.01." % (pname, MAX_PARAM, pname)
    what = "%s: %s=%s" % (act, pname, _show_value(value))
    if isinstance(value, bool):
        raise InvalidArgument("%s is a bool, not a number. %s" % (what, fix))
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 60 or not _NUMBER_TEXT.fullmatch(text):
            raise InvalidArgument("%s is not a number (strings may only spell a decimal or a fraction; nothing is evaluated). %s" % (what, fix))
        if "/" in text and int(text.rsplit("/", 1)[1]) == 0:
            raise InvalidArgument("%s divides by zero. %s" % (what, fix))
        value = sympy.Rational(text)
    elif isinstance(value, numbers.Integral) and not isinstance(value, sympy.Basic):
        value = sympy.Integer(int(value))  # (never printed: _show_value names a huge one by its size)
    elif isinstance(value, Fraction):
        value = sympy.Rational(value.numerator, value.denominator)
    elif isinstance(value, (sympy.Rational, sympy.Float)):
        if not value.is_finite:
            raise InvalidArgument("%s is not finite. %s" % (what, fix))
        value = sympy.Rational(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, sympy.Basic):
        f = float(value)
        if not math.isfinite(f):
            raise InvalidArgument("%s is not finite. %s" % (what, fix))
        value = sympy.Rational(repr(f))  # exact from the shortest decimal: 0.01 -> 1/100
    else:
        raise InvalidArgument("%s is a %s, not a real number. %s" % (what, type(value).__name__, fix))
    if max(abs(int(value.p)), int(value.q)) >= 10**MAX_PARAM_DIGITS or abs(value) > MAX_PARAM:
        raise InvalidArgument("%s is too large. %s" % (what, fix))
    return value


def _as_argument(name: str, arg) -> sympy.Expr:
    """The argument of φ(arg): a SymPy expression or a real number, never a string."""
    if isinstance(arg, sympy.Basic):
        if not isinstance(arg, sympy.Expr):
            raise InvalidArgument("%s(...): %s is a %s, not a SymPy expression. Fix: pass an expression such as sympy.Symbol('z1')."
                                  % (name, _show_value(arg), type(arg).__name__))
        return arg
    if isinstance(arg, numbers.Integral) and not isinstance(arg, bool):
        return sympy.Integer(int(arg))
    if isinstance(arg, Fraction):
        return sympy.Rational(arg.numerator, arg.denominator)
    if isinstance(arg, numbers.Real) and not isinstance(arg, bool) and math.isfinite(float(arg)):
        return sympy.Float(float(arg))
    raise InvalidArgument(
        "%s(...): argument %s of type %s is not a SymPy expression or a finite real number (strings are never parsed here). "
        "Fix: pass e.g. sympy.Symbol('z1'), 0.5 or Fraction(1, 2)." % (name, _show_value(arg), type(arg).__name__)
    )


def _make_output_builtins() -> list[Builtin]:
    """The built-in output-only (vector) activations: :attr:`Activation.output_only`, allowed only
    as a dense network's last layer, kept out of :data:`BUILTIN_ACTIVATIONS` (the elementwise φ)."""

    def make_softmax():
        # softmax(z)_i = e^{z_i}/Σ_k e^{z_k} (Nielsen ch. 3 eq. 78); ∂a_i/∂z_j = a_i(δ_ij − a_j).
        def vector(zs):
            zs = list(zs)
            if not zs:
                raise InvalidArgument("softmax.vector: needs at least one z, e.g. act.vector([z1, z2])")
            weights = [sympy.exp(_as_argument("softmax", q)) for q in zs]
            total = sympy.Add(*weights)
            return [w / total for w in weights]

        return Activation(
            "softmax", sympy.exp(z), sympy.exp(z), r"\operatorname{softmax}",
            _np_softmax, _np_softmax_grad, _np_softmax_log_grad,
            DerivativeBound(S(1) / 4, None, sympy.Interval.Lopen(0, S(1) / 4), True,
                            "the Jacobian diag(a) − a aᵀ has diagonal a_i(1 − a_i) ∈ (0, 1/4] (1/4 at a_i = 1/2)"),
            latex_formula=r"\frac{e^{z_{i}}}{\sum_{k} e^{z_{k}}}",
            latex_derivative=r"\operatorname{diag}(a) - a\,a^{\mathsf{T}}",
            log_abs_value=_np_log_softmax, value_sign=lambda x: np.ones_like(np.asarray(x, dtype=np.float64)),
            grad_sign=_sign_filled(1.0),
            output_only=True, vector=vector, minus_target=_np_softmax_minus_target,
        )

    return [Builtin("softmax", make_softmax)]


_BUILTINS = _make_builtins()
_OUTPUT_BUILTINS = _make_output_builtins()
_ENTRIES = {n: e for e in _BUILTINS + _OUTPUT_BUILTINS for n in (e.name,) + e.aliases}
_FACTORIES = {n: e.make for n, e in _ENTRIES.items()}
#: Most built-in activations :func:`activation` keeps (least recently used dropped first).
CACHE_SIZE = 256
_CACHE: "OrderedDict[tuple, Activation]" = OrderedDict()

#: Names of the built-in elementwise activations (``swish`` is an alias of ``silu``, ``linear``
#: of ``identity``); the output-only ones are :data:`OUTPUT_ACTIVATIONS`.
BUILTIN_ACTIVATIONS: tuple[str, ...] = tuple(n for e in _BUILTINS for n in (e.name,) + e.aliases)
#: Names of the built-in output-only (vector) activations: ``softmax``, for a dense network's last
#: layer with ``loss="log_likelihood"``.
OUTPUT_ACTIVATIONS: tuple[str, ...] = tuple(n for e in _OUTPUT_BUILTINS for n in (e.name,) + e.aliases)


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
            allowed = _ENTRIES[key].params
            unknown = sorted(set(params) - set(allowed))
            if unknown:
                takes = "takes only %s" % ", ".join(allowed) if allowed else "takes no parameters"
                raise InvalidArgument("activation %r %s, got %s; e.g. activation('leaky_relu', alpha=0.01)" % (spec, takes, unknown))
            # Validated (and made exact) before anything else sees them, the cache key included.
            exact = {k: _exact_param(key, k, v) for k, v in params.items()}
            cache_key = (key, tuple(sorted((k, str(v)) for k, v in exact.items())))
            hit = _CACHE.get(cache_key)
            if hit is None:
                hit = _CACHE[cache_key] = _FACTORIES[key](**exact)
                if len(_CACHE) > CACHE_SIZE:
                    _CACHE.popitem(last=False)
            else:
                _CACHE.move_to_end(cache_key)
            return hit
        if spec.strip().isidentifier():
            raise InvalidArgument(
                "unknown activation %r; known: %s, and for an output layer %s (or pass an expression string in z such as 'z*sigmoid(z)')"
                % (spec, ", ".join(BUILTIN_ACTIVATIONS), ", ".join(OUTPUT_ACTIVATIONS))
            )
    if params:
        raise InvalidArgument("activation: parameters %s are only for built-in activations" % sorted(params))
    return custom_activation(spec)


#: Seconds SymPy may spend on checking a custom activation (is φ real, is φ' finite, the
#: derivative, the LaTeX), enforced; past it the activation is refused, never half-accepted.
CUSTOM_CHECK_SECONDS = 5.0


def custom_activation(spec, *, name: str | None = None, latex_name: str | None = None, bound: DerivativeBound | None = None) -> Activation:
    """An activation from a SymPy expression in :data:`z` (or any one real symbol), a callable
    ``f(z) -> sympy.Expr``, or an expression string parsed through an AST whitelist (never
    ``eval``/``sympify``).

    It is accepted only if it works end to end: SymPy must show that φ is real and φ' finite
    for every real z (``sqrt(z)``, ``log(z)``, ``1/z``, ``sqrt(-1)*z`` are refused), and its
    NumPy kernels must be able to evaluate it.  Its derivative is SymPy's, with the Dirac
    deltas of jumps dropped; its NumPy kernels evaluate φ and φ' from φ's expression tree with
    symgrad's convention at kinks (φ' is the derivative of the branch just below:
    ``max(0.01*z, z)`` has φ'(0) = 0.01), and give no nan and no warning for finite inputs.

    >>> act = custom_activation("z/(1 + abs(z))", name="softsign2")
    >>> act.derivative
    -z*sign(z)/(Abs(z) + 1)**2 + 1/(Abs(z) + 1)
    """
    from symgrad.spec._parse import parse_expression

    if bound is not None and not isinstance(bound, DerivativeBound):
        raise InvalidArgument("custom_activation: bound=%s must be a DerivativeBound or None. Fix: e.g. bound=DerivativeBound("
                              "sympy.Rational(1, 4), sympy.FiniteSet(0), sympy.Interval(0, sympy.Rational(1, 4)), True)" % _show_value(bound))
    if name is not None and not (isinstance(name, str) and 0 < len(name) <= 200):
        raise InvalidArgument("custom_activation: name=%s must be a string of 1 to 200 characters. Fix: e.g. name='swish2'" % _show_value(name))
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
            out = spec(z)
        except Exception as exc:  # the user's callable failed: report it, do not hide it
            raise InvalidArgument("custom activation callable %r failed on a SymPy symbol: %s: %s" % (spec, type(exc).__name__, exc)) from exc
        if isinstance(out, str):  # never parsed or evaluated here
            raise InvalidArgument("custom activation callable %r returned the string %s, not a SymPy expression. Fix: return an expression "
                                  "built from its argument, or pass the string itself to activation()" % (spec, _show_value(out)))
        if not isinstance(out, sympy.Expr):
            try:
                out = _as_argument("custom activation callable %r" % (spec,), out)
            except InvalidArgument:
                raise InvalidArgument("custom activation callable %r returned %s, not a SymPy expression. Fix: return e.g. t*sigmoid(t)"
                                      % (spec, _show_value(out))) from None
        return custom_activation(out, name=name or getattr(spec, "__name__", None), latex_name=latex_name, bound=bound)
    else:
        raise InvalidArgument(
            "activation must be a built-in name (%s), an expression string, a SymPy expression or a callable; got %s of type %s"
            % (", ".join(BUILTIN_ACTIVATIONS), _show_value(spec), type(spec).__name__)
        )
    if expr.free_symbols - {z}:
        raise InvalidArgument("custom activation %s must depend on z only" % expr)
    derivative = _check_custom(expr, label)
    kernel = _KinkKernel(expr)
    try:  # a smoke run at the usual kinks and large |z|: what fails here would fail in backprop
        kernel.both(np.array([-1e3, -30.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 30.0, 1e3]))
    except SymgradError as exc:
        raise InvalidArgument("custom activation %s cannot be evaluated numerically: %s. Fix: write kinks whose argument "
                              "crosses zero with a nonzero slope (z rather than z**2)" % (_show_value(label), exc)) from None

    return Activation(
        label, expr, derivative, _latex_symbol(name, latex_name),
        kernel.value, kernel.grad, lambda x: kernel.log_abs(x, 1), bound, builtin=False, bounded=kernel.bounded,
        log_abs_value=lambda x: kernel.log_abs(x, 0), value_sign=lambda x: kernel.sign(x, 0),
        grad_sign=lambda x, g: kernel.sign(x, 1, g),
    )


# LaTeX a user may name an activation with: letters, digits, sub/superscripts, primes, and these
# commands only.  Anything else could reach pdflatex as code (\input, \write18, \catcode).
_LATEX_COMMANDS = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi rho sigma tau "
    "upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega operatorname mathrm mathit "
    "mathsf mathbf tilde hat bar".split()
)
_LATEX_TOKEN = re.compile(r"\\([A-Za-z]+)|[A-Za-z0-9 _^{}'.,()+\-]")


def _latex_symbol(name: str | None, latex_name: str | None) -> str:
    """The LaTeX symbol of a custom activation: ``latex_name`` if it is safe, else refused; from
    ``name`` as \\operatorname{name} when that is plain letters and digits, else \\varphi."""
    if latex_name is None:
        if isinstance(name, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,39}", name):
            return r"\operatorname{%s}" % name
        return r"\varphi"
    if not isinstance(latex_name, str) or len(latex_name) > 80:
        raise InvalidArgument("latex_name=%s must be a short LaTeX string such as r'\\varphi'" % _show_value(latex_name))
    position, depth = 0, 0
    while position < len(latex_name):
        match = _LATEX_TOKEN.match(latex_name, position)
        if match is None or (match.group(1) is not None and match.group(1) not in _LATEX_COMMANDS):
            raise InvalidArgument(
                "latex_name=%s is not allowed at %s: only letters, digits, _ ^ { } ' and the commands %s. Fix: e.g. "
                "latex_name=r'\\operatorname{swish}'" % (_show_value(latex_name), _show_value(latex_name[position:position + 12]),
                                                          ", ".join("\\" + c for c in sorted(_LATEX_COMMANDS)))
            )
        depth += {"{": 1, "}": -1}.get(match.group(0), 0)
        if depth < 0:
            break
        position = match.end()
    if depth != 0:
        raise InvalidArgument("latex_name=%s has unbalanced braces. Fix: e.g. latex_name=r'\\operatorname{swish}'" % _show_value(latex_name))
    return latex_name


def _check_custom(expr: sympy.Expr, label: str) -> sympy.Expr:
    """φ' of a custom activation, after checking that it works end to end; else InvalidArgument."""
    from symgrad._budget import BudgetExceeded, within_budget

    shown = _show_value(label)
    why = _kernel_support(expr)
    if why is not None:
        raise InvalidArgument("custom activation %s is not supported: %s. Fix: write it with the functions the parser lists." % (shown, why))

    def real_everywhere(e):
        # Every part, not only the whole: heaviside(1/(z - 1)) is "real" to SymPy, but its
        # argument is undefined at z = 1.
        # Constant parts too: log(log(0.5)) is complex with no z in it.
        return all(n.is_real for n in set(sympy.preorder_traversal(e)) if isinstance(n, sympy.Expr) and not n.is_Number)

    def checks():
        if not real_everywhere(expr):  # also refuses sqrt(-1)*z, I, log(-2)
            return "real", None
        d = _ae_derivative(expr)
        if not real_everywhere(d):
            return "finite", None
        sympy.latex(expr), sympy.latex(d)  # printing must work (LaTeX, CLI)
        return "ok", d

    try:
        verdict, derivative = within_budget(checks, seconds=CUSTOM_CHECK_SECONDS, what="checking the activation %s" % shown)
    except BudgetExceeded as exc:
        raise InvalidArgument("custom activation %s is refused: %s. Fix: simplify the formula." % (shown, exc.reason)) from None
    except Exception as exc:  # noqa: BLE001 - SymPy's own failures (OverflowError in evalf, ...) mean "cannot check"
        raise InvalidArgument("custom activation %s is refused: SymPy failed while checking it (%s). Fix: simplify the formula."
                              % (shown, type(exc).__name__)) from None
    if verdict == "real":
        raise InvalidArgument(
            "custom activation %s is refused: SymPy cannot show that φ(z) and each of its parts are real and finite for every "
            "real z (a square root or log of a possibly negative number, a division by a possibly zero one, or a complex "
            "constant). Fix: e.g. sqrt(abs(z)), "
            "log(1 + exp(z)), z/(1 + abs(z))." % shown
        )
    if verdict == "finite":
        raise InvalidArgument(
            "custom activation %s is refused: SymPy cannot show that φ'(z) and each of its parts are finite for every real z "
            "(e.g. sqrt(abs(z)) has an "
            "infinite slope at 0). Fix: use a formula with a bounded slope near every point, e.g. abs(z)**1.5." % shown
        )
    return derivative
