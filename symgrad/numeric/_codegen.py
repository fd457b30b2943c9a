"""SymPy → numba: the compiled chain kernel for any activation, generated from its one definition.

Each activation's stable scalar form (``Activation.stable`` for the built-ins, ``(expr,
derivative)`` for a custom one) is printed by :class:`_Printer` into a small Python function of
one float ``z`` that returns ``(φ(z), φ'(z), uf)``, and the chain kernel (forward, the loss and
output delta, backward) is generated around the distinct forms of a chain and compiled by numba.

What is printed.  Only a whitelist of SymPy nodes: numbers, the symbol ``z``, Add, Mul, Pow with
an integer or half-integer exponent, exp, expm1, log, log1p, tanh, erf, erfc, Abs, Max, Min, sign,
Heaviside, Piecewise (built-in forms only), relationals, and symgrad's sigmoid / softplus / relu /
leaky_relu / elu.  Anything else raises :class:`_Unprintable`, and the chain runs on NumPy.  The
generated text is made only of this module's fixed vocabulary (``math.exp``, ``t3``, ``z``) and
of numbers printed with ``repr(float)``: no name, string or other text of the user's reaches it,
which is why ``exec`` of it is safe (tests/test_security.py lists that call, with this reason).

Custom forms.  A built-in's stable form is proved stable by hand and printed as it is.  A custom
form (``trusted=False``: the SymPy φ and φ' as the user's formula gives them) may cancel:
e^z/(1 + e^z) − e^{2z}/(1 + e^z)², SymPy's φ' of a custom sigmoid, is a difference of two terms
near 1 whose float64 value at z = 300 is about 1e-16 (exact: 5e-131).  So each of its values is
printed with its first-order running error bound (:class:`_Bounds`), and φ or φ' is replaced by
nan wherever the bound exceeds the budget of symgrad.spec.activations.ERROR_SLACK (the NumPy
kernel's rule, :func:`_trust`); the kernels send a nan at a finite z to the NumPy path, as any
non-finite φ or φ' (the chain kernels through their status and ``_NonFiniteBlock``, the dense
shared pass by redoing that layer with ``Activation.value`` and ``.grad``).  Sums and products
of a custom form are printed as chains of binary operations, in the order Python evaluates the
one-line form (the same values, bit for bit), so that each partial result has its bound.

Kinks.  φ' at a kink is the left derivative (symgrad's convention): ``Heaviside(u)`` with ``u``
increasing in z prints as ``1 if u > 0 else 0`` (and with ``u`` decreasing as ``1 if u >= 0``);
``sign(u)`` likewise; a kink whose argument has a non-constant slope is not printed (NumPy
decides it).  Built-in forms write their convention into ``Piecewise((…, z > 0), (…, True))``.

Underflow.  ``uf`` is true where a product, a reciprocal, or an exp/erfc/σ came out below the
smallest normal double while no factor was exactly 0 (so a dead ReLU's exact 0 does not count).
The kernel flags a sample for the rescaled redo wherever φ or φ' is below the smallest normal
while ``uf`` is set (or is subnormal), where z is subnormal, and where a forward or backward
product underflows from nonzero factors or overflows: where NumPy's ``_lost_to_underflow`` and
its floating-point traps would send the block to ``_scaled_block`` (or, conservatively, more
often).  Only the flagged samples are redone.  These per-sample flags are the exact pass's: the
kernel first runs a fast pass with one flag per sub-block of ``SUB`` samples (a superset of the
conditions, no per-sample memory, uf not computed), and only a sub-block where that flag is set is
run again through the exact pass, which recomputes the same values and sets the per-sample flags
(see ``_LAYER``).  The chain kernels inline the flushing exp and erfc
(``compiled.elementary(flush=True)``): 0 where the value is below 2^−1022, so that no subnormal
number is formed (each costs a microcode assist on Intel CPUs); a flushed 0 sets ``uf`` as the
subnormal did, and a value below the smallest normal with ``uf`` set is never a result.

Elementary functions.  numba compiles ``math.exp``/``expm1``/``log1p``/``tanh`` to scalar libm
calls unless its LLVM is patched for Intel SVML (``numba -s``: "SVML Operational"); the pip
llvmlite 0.50 (LLVM 22) is not, with or without the ``intel-cmplr-lib-rt`` package, and LLVM's
``-vector-library`` option set through llvmlite did not vectorise them either.  So ``exp`` of an
argument SymPy proves ≤ 0, ``expm1`` of one ≤ 0, ``log1p(exp(u ≤ 0))``, ``tanh`` and ``erfc`` (GELU's
Φ) print as the branch-free functions of :mod:`symgrad.numeric.compiled`, which LLVM vectorises;
``erf`` (custom activations only) stays scalar ``math.erf``.  (:data:`LIBM` prints the libm calls
instead, for the benchmark.)

Compilation.  One kernel per distinct tuple of printed forms (``functools.lru_cache``, 64 kept),
about 1.3-2.5 s each on first use; numba's ``cache=True`` needs a function defined in a file, so
these exec'd kernels are compiled in each process (``backend="auto"`` compiles only for chains
with at least ``numeric.JIT_MIN_WORK`` layer-samples).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import sympy

from symgrad.spec.activations import ERROR_SLACK, _ae_derivative, elu, leaky_relu, relu, sigmoid, softplus, z as Z

__all__ = ["form_of", "chain_kernel", "scalar_kernel"]


#: Print numba's math.exp/expm1/log1p/tanh/erfc (scalar libm calls) instead of the branch-free
#: functions of symgrad.numeric.compiled: for benchmarks/bench_evaluator.py's comparison only (call
#: ``form_of.cache_clear()`` after changing it).
LIBM = False


class _Unprintable(Exception):
    """A node outside the printer's whitelist: the chain runs on NumPy (the message says why)."""


try:  # SymPy's C-style functions, used by the built-in stable forms
    from sympy.codegen.cfunctions import expm1 as _expm1, log1p as _log1p
except ImportError:  # pragma: no cover - every supported SymPy has them
    _expm1 = _log1p = None

#: math functions printed as themselves (argument printed first).
_PLAIN = {sympy.log: "math.log", sympy.tanh: "tanh_", sympy.erf: "math.erf"}
if _log1p is not None:
    _PLAIN[_log1p] = "math.log1p"
    _PLAIN[_expm1] = "math.expm1"
#: functions whose value may underflow to 0 although the exact value is not 0 (erfc_: fdlibm's
#: erfc, branch-free, in symgrad.numeric.compiled).
_UNDERFLOWING = {sympy.erfc: "erfc_"}


def _double(x) -> float:
    """The double nearest to the real number x (_Unprintable where it is not one)."""
    if isinstance(x, sympy.Rational):
        v = float(Fraction(int(x.p), int(x.q)))
    else:
        try:
            v = float(sympy.N(x, 30))
        except (TypeError, ValueError):
            raise _Unprintable("the constant %s is not a real number" % sympy.srepr(x)[:60]) from None
    if not math.isfinite(v):
        raise _Unprintable("a constant overflows float64")
    return v


def _num(x) -> str:
    """A real number as Python source: repr of the double nearest to it (never other text)."""
    return "(%r)" % _double(x)


#: The most lines a custom form may print to (φ, φ', φ'' and their bounds); a larger one runs on
#: NumPy.  φ'' of a nested composition grows as the square of its depth (SymPy's product rule
#: writes d products of d factors): σ nested 10 deep prints 971 lines and its first chain backprop
#: compiles in 11.8 s (53 lines and 4.1 s without φ'' and the bounds), nested 30 deep 7711 lines;
#: swish prints 41 lines, a custom sigmoid 44 (2.5-3.1 s).
MAX_CUSTOM_LINES = 600

#: The running error bound of a custom form (see :class:`_Bounds`): ulp accuracies of the functions
#: it calls.  libm's math.* (exp, expm1, log, log1p, erf, erfc, tanh under LIBM): 4, as for the NumPy
#: kernel; the branch-free functions of symgrad.numeric.compiled, from the bounds tests/test_jit.py
#: holds them to: exp_neg 1, expm1_neg 2, log1p_unit 4, tanh_ 5, erfc_ 3; σ (exp_neg, 1 + e, 1/(1 + e),
#: e·r) 4; softplus (max(u, 0) exact, log1p_unit of a rounded e: 5, the sum: 1) 6.
_ULP_LIBM = 4.0
_ULP_EXPM1 = 2.0
_ULP_LOG1P = 4.0
_ULP_TANH = 5.0
_ULP_ERFC = 3.0
_ULP_SIGMOID = 4.0
_ULP_SOFTPLUS = 6.0
#: the literal of a bound known to be 0 (an exact value), u = 2^−53, and ERROR_SLACK, as printed
_ZERO = "(0.0)"
_U = "(%r)" % 2.0 ** -53
_SLACK = "(%r)" % float(ERROR_SLACK)


class _Bounds:
    """The first-order running error bound of a custom form (Higham, *Accuracy and Stability of
    Numerical Algorithms*, 2nd ed., §3.3), in units of u = 2^−53, printed beside its values.

    ``err`` maps the name of each printed value to the name of its bound (or to ``(0.0)``, a value
    known to be exact): z is exact; a constant contributes |c| unless it is a double; each rounded
    operation adds |its result| and propagates its operands' bounds (x + y: E_x + E_y; x·y: |y|E_x +
    |x|E_y; 1/y: E_y/y²; a function f: |f'(x)|E_x + c_f|f(x)| with c_f its ulp accuracy, above); the
    1-Lipschitz selections (abs, max, min, relu) take the larger bound; a step (Heaviside, sign) is
    exact unless its argument is within its own error of 0 (|x| < E_x·u), where it is unbounded, as
    is a quotient or a logarithm of a value within its error of 0.  ``inf``: the line holding +inf.
    Underflow is not part of it: a value that underflowed is flagged by ``uf``, as for a built-in."""

    def __init__(self):
        self.err: dict[str, str] = {}
        self.inf: str | None = None


def _exact_double(c) -> bool:
    """Whether the number c is a double exactly (its printed constant has no rounding)."""
    if not (c.is_Rational or c.is_Float):
        return False
    q = sympy.Rational(c)
    return Fraction(_double(c)) == Fraction(int(q.p), int(q.q))


def _is_power_of_two(c) -> bool:
    """Whether c = ±2^k exactly (a product by it is exact, barring underflow and overflow)."""
    return _exact_double(c) and math.frexp(abs(_double(c)))[0] == 0.5


class _Printer:
    """Prints one or more expressions in z into straight-line assignments ``tK = …`` (each
    distinct node once), and collects the underflow conditions.  For a custom (untrusted) form it
    also prints, beside each value, its running error bound (:class:`_Bounds`)."""

    def __init__(self, derivative_mode: bool, trusted: bool):
        self.lines: list[str] = []
        self.memo: dict = {}
        self.uf: list[str] = []
        self.deriv = derivative_mode
        self.trusted = trusted
        self.bd = None if trusted else _Bounds()
        self.pending: dict = {}  # memoised names printed ahead, and the underflow term each adds when read

    def _tmp(self, code: str) -> str:
        name = "t%d" % len(self.lines)
        self.lines.append("%s = %s" % (name, code))
        return name

    def p(self, e) -> str:
        if e in self.memo:
            out = self.memo[e]
            if out in self.pending:  # printed ahead (by _tanh_pair): its underflow term, now that it is used
                self.uf.append(self.pending.pop(out))
            return out
        out = self._p(e)
        self.memo[e] = out
        return out

    def _tanh_pair(self, u) -> str:
        """tanh(u) of a built-in (trusted) form, sharing its work with the stable derivative
        4e/(1 + e)², e = e^{−2 min(|u|, 10⁴)} (tanh's ``stable`` φ'): (m, e) = (e^v − 1, e^v) at
        v = −2 min(|u|, 10⁴) from one polynomial (``expm1_exp_neg``), r = 1/(1 + e) = 1/(2 + m)
        once, tanh = sign(u)·(−m·r).  e and r are memoised as the SymPy nodes e^{−2 min(|u|, 10⁴)}
        and (1 + e^{…})^{−1}, so that φ' reads them instead of a second exp and a second division
        (2.0 against 2.8 ns per entry in the dense pass's tanh step); their underflow terms are
        added only if they are read.  |error| ≤ 3 ulp: m within 2 ulp (an exact 2 + m would be
        within 1), r one rounding of 1 + e and one of the quotient, and the product one more."""
        a = self.p(u)
        pair = self._tmp("expm1_exp_neg((-2.0) * min(abs(%s), (10000.0)))" % a)
        m = self._tmp("%s[0]" % pair)
        ee = self._tmp("%s[1]" % pair)
        s1 = self._tmp("(1.0) + %s" % ee)
        r = self._tmp("1.0 / %s" % s1)
        t = self._tmp("math.copysign(-%s * %s, %s)" % (m, r, a))
        E = sympy.exp(-2 * sympy.Min(sympy.Abs(u), 10**4))
        for node, name, uf in ((E, ee, "(%s < TINY)" % ee), (1 + E, s1, None), ((1 + E) ** -1, r, "(abs(%s) < TINY)" % r)):
            self.memo.setdefault(node, name)
            if uf:
                self.pending[name] = uf
        return t

    def _p(self, e) -> str:
        if e == Z:
            return "z"
        if isinstance(e, sympy.Symbol):
            raise _Unprintable("a symbol other than z")
        if not e.free_symbols:
            if e.is_real is False or e.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
                raise _Unprintable("a non-real constant")
            return _num(e)
        if e.is_Add:
            if self.bd is not None:
                return self._sum(e.args)
            return self._tmp(" + ".join(self.p(a) for a in e.args))
        if e.is_Mul:
            return self._mul(e)
        if e.is_Pow:
            return self._pow(e)
        f = e.func
        if f is sympy.exp:
            u = e.args[0]
            if u.is_extended_nonpositive and not LIBM:
                t = self._tmp("exp_neg(%s)" % self.p(u))
                c = 1.0
            else:
                t = self._tmp("math.exp(%s)" % self.p(u))
                c = _ULP_LIBM
            self.uf.append("(%s < TINY)" % t)
            if self.bd is not None:  # e^u·E_u + c·e^u
                self._bound(t, self._times(t, self._eb(u)), "%s * %s" % (_num(c), t))
            return t
        if f in _UNDERFLOWING:
            u = e.args[0]
            t = self._tmp("%s(%s)" % ("math.erfc" if LIBM else _UNDERFLOWING[f], self.p(u)))
            self.uf.append("(%s < TINY)" % t)
            if self.bd is not None:  # |erfc'(u)| = (2/√π) e^{−u²}
                self._bound(t, self._gauss(u), "%s * %s" % (_num(_ULP_LIBM if LIBM else _ULP_ERFC), t))
            return t
        if _expm1 is not None and f is _expm1 and e.args[0].is_extended_nonpositive and not LIBM:
            u = e.args[0]
            t = self._tmp("expm1_neg(%s)" % self.p(u))
            if self.bd is not None:  # expm1' = e^u = t + 1
                self._bound(t, self._times("(%s + 1.0)" % t, self._eb(u)), "%s * abs(%s)" % (_num(_ULP_EXPM1), t))
            return t
        if _log1p is not None and f is _log1p:
            u = e.args[0]
            if u.func is sympy.exp and u.args[0].is_extended_nonpositive and not LIBM:  # log1p(e^{−|z|}): in [0, 1]
                pu = self.p(u)
                t = self._tmp("log1p_unit(%s)" % pu)
                if self.bd is not None:  # log1p'(x) = 1/(1 + x), x ≥ 0
                    self._bound(t, self._times("(1.0 / (1.0 + %s))" % pu, self._eb(u)), "%s * %s" % (_num(_ULP_LOG1P), t))
                return t
        if f is sympy.tanh and self.trusted and not LIBM:
            return self._tanh_pair(e.args[0])
        if f is sympy.tanh and LIBM:
            u = e.args[0]
            t = self._tmp("math.tanh(%s)" % self.p(u))
            if self.bd is not None:
                self._bound(t, self._times("(1.0 - %s * %s)" % (t, t), self._eb(u)), "%s * abs(%s)" % (_num(_ULP_LIBM), t))
            return t
        if f in _PLAIN:
            u = e.args[0]
            pu = self.p(u)
            t = self._tmp("%s(%s)" % (_PLAIN[f], pu))
            if self.bd is not None:
                self._plain_bound(f, t, u, pu)
            return t
        if f is sympy.Abs:
            u = e.args[0]
            t = self._tmp("abs(%s)" % self.p(u))
            if self.bd is not None:  # 1-Lipschitz, exact
                self.bd.err[t] = self._eb(u)
            return t
        if f in (sympy.Max, sympy.Min):
            name = "max" if f is sympy.Max else "min"
            args = [self.p(a) for a in e.args]
            errs = [self._eb(a) for a in e.args] if self.bd is not None else None
            acc = args[0]
            ea = errs[0] if errs else None
            for i, a in enumerate(args[1:], 1):
                acc = self._tmp("%s(%s, %s)" % (name, acc, a))
                if self.bd is not None:  # 1-Lipschitz in each argument, exact: the larger bound
                    ea = self._max_bound(ea, errs[i])
                    self.bd.err[acc] = ea
            return acc
        if f is sigmoid:
            u = self.p(e.args[0])
            ee = self._tmp("exp_neg(-abs(%s))" % u)
            r = self._tmp("1.0 / (1.0 + %s)" % ee)
            t = self._tmp("(%s if %s >= 0.0 else %s * %s)" % (r, u, ee, r))
            self.uf.append("(%s < TINY)" % t)
            if self.bd is not None:  # σ'(u) = e r² with e = e^{−|u|}, r = 1/(1 + e); σ within 4 ulp
                self._bound(t, self._times("%s * %s * %s" % (ee, r, r), self._eb(e.args[0])), "%s * %s" % (_num(_ULP_SIGMOID), t))
            return t
        if f is softplus:
            u = self.p(e.args[0])
            ee = self._tmp("exp_neg(-abs(%s))" % u)
            self.uf.append("(%s < TINY)" % ee)
            t = self._tmp("max(%s, 0.0) + log1p_unit(%s)" % (u, ee))
            if self.bd is not None:  # softplus'(u) = σ(u) ≤ min(1, e^u); max(u, 0) exact, log1p 5 ulp, the sum 1
                self._bound(t, self._times("(1.0 if %s >= 0.0 else %s)" % (u, ee), self._eb(e.args[0])),
                            "%s * %s" % (_num(_ULP_SOFTPLUS), t))
            return t
        if f is relu:
            u = e.args[0]
            t = self._tmp("max(%s, 0.0)" % self.p(u))
            if self.bd is not None:  # 1-Lipschitz, exact
                self.bd.err[t] = self._eb(u)
            return t
        if f is leaky_relu:
            u, a = self.p(e.args[0]), e.args[1]
            if a.free_symbols:
                raise _Unprintable("leaky_relu with a symbolic slope")
            eu = self._eb(e.args[0]) if self.bd is not None else None
            au = self._product(a, [u], None if eu is None else [eu])
            t = self._tmp("(%s if %s > 0.0 else %s)" % (u, u, au))
            if self.bd is not None:  # continuous, slopes 1 and a: max(1, |a|)·E_u, and a·u's own rounding
                self._bound(t, self._times(_num(max(1.0, abs(float(a)))), eu), self.bd.err.get(au) if au != u else None)
            return t
        if f is elu:
            u, a = self.p(e.args[0]), e.args[1]
            if a.free_symbols or _expm1 is None:
                raise _Unprintable("elu with a symbolic alpha")
            t = self._tmp("(%s if %s > 0.0 else %s * expm1_neg(min(%s, 0.0)))" % (u, u, _num(a), u))
            if self.bd is not None:  # continuous, slopes 1 and a·e^u ≤ |a|; a·expm1: a (rounded), expm1 2 ulp, the product
                self._bound(t, self._times(_num(max(1.0, abs(float(a)))), self._eb(e.args[0])),
                            "%s * abs(%s)" % (_num(_ULP_EXPM1 + 2.0), t))
            return t
        if f is sympy.Heaviside:
            return self._step(e, "1.0", "0.0", "Heaviside")
        if f is sympy.sign:
            return self._step(e, "1.0", "-1.0", "sign")
        if f is sympy.Piecewise:
            if not self.trusted:
                raise _Unprintable("Piecewise in a custom activation (its convention at the breakpoints is NumPy's to decide)")
            *pairs, last = e.args
            if last.cond is not sympy.true:
                raise _Unprintable("a Piecewise without a default branch")
            acc = self.p(last.expr)
            for ex, cond in reversed(pairs):
                acc = self._tmp("(%s if %s else %s)" % (self.p(ex), self._cond(cond), acc))
            return acc
        raise _Unprintable("%s is not in the compiled kernel's whitelist" % type(e).__name__)

    def _cond(self, c) -> str:
        ops = {sympy.StrictGreaterThan: ">", sympy.GreaterThan: ">=", sympy.StrictLessThan: "<", sympy.LessThan: "<="}
        op = ops.get(type(c))
        if op is None:
            raise _Unprintable("a condition other than <, <=, >, >=")
        return "(%s %s %s)" % (self.p(c.lhs), op, self.p(c.rhs))

    def _step(self, e, pos: str, neg: str, what: str) -> str:
        """Heaviside(u) (1/0) or sign(u) (1/−1) off the kink; at u = 0 the left limit (φ') or,
        for φ itself, the value (a step in φ is refused)."""
        u = e.args[0]
        if not self.deriv:
            if what == "sign" and self.trusted:
                pu = self.p(u)
                return self._tmp("(1.0 if %s > 0.0 else (-1.0 if %s < 0.0 else 0.0))" % (pu, pu))
            if what == "Heaviside" and len(e.args) == 2 and e.args[1].is_number:
                pu = self.p(u)  # the value, with its stated H(0)
                t = self._tmp("(1.0 if %s > 0.0 else (%s if %s == 0.0 else 0.0))" % (pu, _num(e.args[1]), pu))
                if self.bd is not None:
                    self._decision(t, u, pu)
                return t
            raise _Unprintable("%s in φ itself" % what)
        if what == "Heaviside" and len(e.args) > 1 and self.trusted:
            if e.args[1] != 0:
                raise _Unprintable("a built-in Heaviside(u, H0) with H0 ≠ 0")
        slope = sympy.diff(u, Z)
        if slope.free_symbols or slope == 0 or not slope.is_real:
            raise _Unprintable("a kink whose argument does not cross 0 with a constant nonzero slope")
        pu = self.p(u)
        # Just left of a root of u: u < 0 when u increases (slope > 0), u > 0 when it decreases.
        op = ">" if slope > 0 else ">="
        t = self._tmp("(%s if %s %s 0.0 else %s)" % (pos, pu, op, neg))
        if self.bd is not None:
            self._decision(t, u, pu)
        return t

    def _mul(self, e) -> str:
        # x/y is printed as x·(1/y): the reciprocal of a shared denominator (σ's 1/(1 + e)) is
        # then one division for φ and φ' together (a product costs far less than a quotient).
        num = []
        errs = [] if self.bd is not None else None
        coeff = sympy.S.One
        for f in e.args:
            if not f.free_symbols:
                coeff *= f
            else:
                num.append(self.p(f))
                if errs is not None:
                    errs.append(self._eb(f))
        return self._product(coeff, num, errs)

    def _product(self, coeff, factors: list[str], errs: list[str] | None = None) -> str:
        """coeff · Π factors; flagged where it underflowed (no factor 0, result below normal).
        A single factor times a constant of magnitude ≥ 1 cannot underflow (z itself is checked
        for subnormals by the kernel), and −x is exact.  ``errs``: the factors' error bounds (a
        custom form's), then printed as a chain of binary products, each with its bound."""
        if not factors:
            return _num(coeff)
        if len(factors) == 1 and coeff in (1, -1):
            if coeff == 1:
                return factors[0]
            t = self._tmp("-%s" % factors[0])
            if self.bd is not None:
                self.bd.err[t] = errs[0]
            return t
        if self.bd is not None:
            t = self._product_bounded(coeff, factors, errs)
        else:
            t = self._tmp(" * ".join(([_num(coeff)] if coeff != 1 else []) + factors))
        if len(factors) > 1 or abs(coeff) < 1:
            nz = " & ".join("(%s != 0.0)" % f for f in factors)
            self.uf.append("((abs(%s) < TINY) & %s)" % (t, nz))
        return t

    def _product_bounded(self, coeff, factors: list[str], errs: list[str]) -> str:
        """coeff · f1 · f2 · … as the same left-to-right products (the same value, bit for bit),
        one line each, with the bound |y|·E_x + |x|·E_y + |x·y| of each (no rounding where the
        coefficient is a power of two: that product is exact)."""
        if coeff != 1:
            acc, ea, mag = _num(coeff), self._const_bound(coeff), _num(abs(coeff))
            exact_scale = _is_power_of_two(coeff)
            items = list(zip(factors, errs))
        else:
            acc, ea, mag = factors[0], errs[0], "abs(%s)" % factors[0]
            exact_scale = False
            items = list(zip(factors[1:], errs[1:]))
        for i, (f, ef) in enumerate(items):
            t = self._tmp("%s * %s" % (acc, f))
            rnd = None if (i == 0 and exact_scale) else "abs(%s)" % t
            self._bound(t, self._times("abs(%s)" % f, ea), self._times(mag, ef), rnd)
            acc, ea, mag = t, self.bd.err[t], "abs(%s)" % t
        return acc

    def _pow(self, e) -> str:
        base, ex = e.args
        if not ex.is_Rational:
            if base == sympy.E:
                return self.p(sympy.exp(ex))
            raise _Unprintable("a power with a non-constant or irrational exponent")
        b = self.p(base)
        if ex == sympy.Rational(1, 2):
            t = self._tmp("math.sqrt(%s)" % b)
            if self.bd is not None:  # √'(b) = 1/(2√b); correctly rounded
                eb = self._eb(base)
                self._bound(t, None if eb == _ZERO else "(0.5 * %s / %s if abs(%s) > %s * %s else %s)"
                            % (eb, t, b, eb, _U, self._inf()), "abs(%s)" % t)
            return t
        if ex == -sympy.Rational(1, 2):
            t = self._tmp("1.0 / math.sqrt(%s)" % b)
            self.uf.append("(abs(%s) < TINY)" % t)
            if self.bd is not None:  # |d b^{−1/2}/db| = t/(2b); a rounded root and a quotient
                eb = self._eb(base)
                self._bound(t, None if eb == _ZERO else "(0.5 * %s * abs(%s) / abs(%s) if abs(%s) > %s * %s else %s)"
                            % (eb, t, b, b, eb, _U, self._inf()), "(2.0) * abs(%s)" % t)
            return t
        if ex.q == 2 and abs(ex.p) <= 33:  # b^{k/2} = (√b)^k or (1/√b)^|k| (φ'' of a custom √: b^{−3/2})
            root = self.p(base ** sympy.Rational(1 if ex > 0 else -1, 2))
            errs = [self._eb(base ** sympy.Rational(1 if ex > 0 else -1, 2))] * abs(int(ex.p)) if self.bd is not None else None
            return self._product(sympy.S.One, [root] * abs(int(ex.p)), errs)
        if not ex.is_Integer or abs(ex) > 16:
            raise _Unprintable("a power other than an integer or a half-integer up to 16")
        n = int(ex)
        if n == 0:
            return "(1.0)"
        if n == -1:
            t = self._tmp("1.0 / %s" % b)
            self.uf.append("(abs(%s) < TINY)" % t)
            if self.bd is not None:  # E_b/b² = E_b·t², infinite where b is within its error of 0
                eb = self._eb(base)
                self._bound(t, None if eb == _ZERO else "(%s * abs(%s) * abs(%s) if abs(%s) > %s * %s else %s)"
                            % (eb, t, t, b, eb, _U, self._inf()), "abs(%s)" % t)
            return t
        if n < 0:  # (1/b)^|n|, sharing the reciprocal
            base = base ** -1
            b = self.p(base)
        errs = [self._eb(base)] * abs(n) if self.bd is not None else None
        return self._product(sympy.S.One, [b] * abs(n), errs)

    # -- the running error bound of a custom form ------------------------------------------------

    def _eb(self, node) -> str:
        """The printed error bound (in units of u) of a node already printed."""
        if node == Z:
            return _ZERO
        if not node.free_symbols:
            return _ZERO if _exact_double(node) else _num(abs(node))
        name = self.memo[node]
        if name not in self.bd.err:
            raise _Unprintable("no error bound for %s" % type(node).__name__)
        return self.bd.err[name]

    def _bound(self, t: str, *terms) -> None:
        """E_t = the sum of ``terms`` (None: a term known to be 0)."""
        terms = [x for x in terms if x is not None]
        self.bd.err[t] = self._tmp(" + ".join(terms)) if terms else _ZERO

    @staticmethod
    def _times(x: str, e: str):
        """x·E (None where E is the literal 0)."""
        return None if e == _ZERO else "%s * %s" % (x, e)

    def _inf(self) -> str:
        if self.bd.inf is None:
            self.bd.inf = self._tmp("(2.0) * HUGE")
        return self.bd.inf

    def _const_bound(self, c) -> str:
        return _ZERO if _exact_double(c) else _num(abs(c))

    def _max_bound(self, ea: str, eb: str) -> str:
        """max(E_a, E_b), kept nan where either is (an unknown bound stays unknown)."""
        if ea == _ZERO:
            return eb
        if eb == _ZERO:
            return ea
        return self._tmp("max(%s, %s) + 0.0 * (%s + %s)" % (ea, eb, ea, eb))

    def _gauss(self, u):
        """(2/√π)·e^{−u²}·E_u: |erf'(u)| = |erfc'(u)| times u's bound (None where it is 0)."""
        eu = self._eb(u)
        if eu == _ZERO:
            return None
        pu = self.p(u)
        return "(1.1283791670955126) * exp_neg(-(%s * %s)) * %s" % (pu, pu, eu)

    def _plain_bound(self, f, t: str, u, pu: str) -> None:
        eu = self._eb(u)
        if f is sympy.log:  # log'(u) = 1/u, infinite where u is within its error of 0
            first = None if eu == _ZERO else "(%s / abs(%s) if abs(%s) > %s * %s else %s)" % (eu, pu, pu, eu, _U, self._inf())
            self._bound(t, first, "%s * abs(%s)" % (_num(_ULP_LIBM), t))
        elif f is sympy.tanh:  # tanh' = 1 − tanh²
            self._bound(t, self._times("(1.0 - %s * %s)" % (t, t), eu), "%s * abs(%s)" % (_num(_ULP_TANH), t))
        elif f is sympy.erf:
            self._bound(t, self._gauss(u), "%s * abs(%s)" % (_num(_ULP_LIBM), t))
        elif f is _log1p:  # log1p'(u) = 1/(1 + u)
            first = None if eu == _ZERO else "(%s / abs(1.0 + %s) if abs(1.0 + %s) > %s * %s else %s)" % (
                eu, pu, pu, eu, _U, self._inf())
            self._bound(t, first, "%s * abs(%s)" % (_num(_ULP_LIBM), t))
        elif f is _expm1:  # expm1'(u) = e^u = t + 1
            self._bound(t, self._times("abs(%s + 1.0)" % t, eu), "%s * abs(%s)" % (_num(_ULP_LIBM), t))
        else:  # pragma: no cover - _PLAIN holds only the functions above
            raise _Unprintable("no error bound for %s" % f)

    def _decision(self, t: str, u, pu: str) -> None:
        """A step decided by the sign of u: exact where u is certain to be on its side of 0
        (|u| ≥ E_u·u, so an exact 0 is certain), else unbounded (a jump may be on the wrong side)."""
        eu = self._eb(u)
        self.bd.err[t] = _ZERO if eu == _ZERO else self._tmp("(%s if abs(%s) < %s * %s else 0.0)" % (self._inf(), pu, eu, _U))

    def _sum(self, args) -> str:
        """a0 + a1 + … as the same left-to-right sums, one line each, with the bound
        E_x + E_y + |x + y| of each."""
        acc, ea = self.p(args[0]), self._eb(args[0])
        for a in args[1:]:
            pa, e2 = self.p(a), self._eb(a)
            t = self._tmp("%s + %s" % (acc, pa))
            self._bound(t, None if ea == _ZERO else ea, None if e2 == _ZERO else e2, "abs(%s)" % t)
            acc, ea = t, self.bd.err[t]
        return acc


def _printed(phi, dphi, trusted: bool) -> tuple[_Printer, str, str]:
    """The printer holding φ and φ' printed into one body, and their names."""
    if not (isinstance(phi, sympy.Basic) and isinstance(dphi, sympy.Basic)):
        raise _Unprintable("φ and φ' must be SymPy expressions")
    pv = _Printer(derivative_mode=False, trusted=trusted)
    a = pv.p(phi)
    pd = _Printer(derivative_mode=True, trusted=trusted)
    pd.lines = pv.lines  # one body: φ and φ' share their subexpressions (e = exp(−|z|))
    pd.memo = {k: v for k, v in pv.memo.items()}
    pd.uf = pv.uf
    pd.bd = pv.bd
    pd.pending = pv.pending
    d = pd.p(dphi)
    return pd, a, d


def scalar_source(phi, dphi, name: str, trusted: bool) -> str:
    """``def name(z): … return (φ, φ', uf)`` for one activation form (raises _Unprintable).  An
    untrusted (custom) form returns nan for φ or φ' where its running error bound is not within the
    conditioning budget (:func:`_trust`)."""
    pd, a, d = _printed(phi, dphi, trusted)
    if not trusted:
        a, d = _trust(pd, phi, dphi, a, d)
        if len(pd.lines) > MAX_CUSTOM_LINES:
            raise _Unprintable("its compiled form with φ'' and the error bounds would be %d lines (more than %d)"
                               % (len(pd.lines), MAX_CUSTOM_LINES))
    uf = " | ".join(pd.uf) if pd.uf else "False"
    body = "".join("    %s\n" % ln for ln in pd.lines)
    return "def %s(z):\n%s    return (%s, %s, %s)\n" % (name, body, a, d, uf)


def bounds_source(phi, dphi) -> str:
    """For tests: ``def phi(z): … return (φ, E_φ, φ', E_φ', φ'', E_φ'', φ✓, φ'✓)`` of φ, φ' printed as
    a custom form: the values, their running error bounds in units of u (φ'' and its bound are 0.0
    where φ' is exact and φ'' is not needed), and the values the form returns (nan where not trusted)."""
    pd, a, d = _printed(phi, dphi, False)
    parts: dict = {}
    ta, td = _trust(pd, phi, dphi, a, d, parts)
    body = "".join("    %s\n" % ln for ln in pd.lines)
    out = (a, pd._eb(phi), d, pd._eb(dphi), parts.get("dd", _ZERO), parts.get("edd", _ZERO), ta, td)
    return "def phi(z):\n%s    return (%s)\n" % (body, ", ".join(out))


def _trust(pd: _Printer, phi, dphi, a: str, d: str, parts: dict | None = None) -> tuple[str, str]:
    """φ and φ' of a custom form, each replaced by nan where it is not trusted: where its running
    error bound E exceeds ERROR_SLACK·(|f| + |z|·|f'|) (the rule of symgrad.spec.activations,
    ERROR_SLACK's comment), for f = φ and for f = φ' (f' = φ'', the derivative of the printed φ',
    its Dirac deltas dropped, printed here; _Unprintable where it does not print).  |f'| is taken
    at its certain lower bound, |f'| − u·E_f', so that a f' that cancels does not widen the budget.
    The kernels send a nan at a finite z to the NumPy path (symgrad.numeric._codegen's docstring).
    ``parts``: receives the names of φ'' and its bound (for :func:`bounds_source`)."""
    ea, ed = pd._eb(phi), pd._eb(dphi)
    if ed != _ZERO:  # else φ' is exact: φ'' is not needed
        p2 = _Printer(derivative_mode=True, trusted=False)
        p2.lines, p2.memo, p2.bd = pd.lines, {k: v for k, v in pd.memo.items()}, pd.bd
        p2.uf = []  # φ'' is a budget, not a result: its underflow flags nothing
        dd = _ae_derivative(dphi)
        f2 = p2.p(dd)
        edd = p2._eb(dd)
        if parts is not None:
            parts.update(dd=f2, edd=edd)
        d_new = _trusted_value(pd, d, ed, _lower(f2, edd))
    else:
        d_new = d
    a_new = a if ea == _ZERO else _trusted_value(pd, a, ea, _lower(d, ed))
    return a_new, d_new


def _lower(f: str, ef: str) -> str:
    """A certain lower bound of |f| from its value and its error bound."""
    return "abs(%s)" % f if ef == _ZERO else "max(abs(%s) - %s * %s, 0.0)" % (f, _U, ef)


def _trusted_value(pr: _Printer, v: str, ev: str, slope: str) -> str:
    """v where E_v ≤ ERROR_SLACK·(|v| + |z|·slope), else nan (as inf − inf: the generated text
    keeps to its vocabulary)."""
    inf = pr._inf()
    return pr._tmp("(%s if %s <= %s * (abs(%s) + abs(z) * %s) else %s - %s)" % (v, ev, _SLACK, v, slope, inf, inf))


@functools.lru_cache(maxsize=256)
def form_of(act) -> str:
    """The printed scalar form of an activation (its body, as ``def phi(z): …``), or _Unprintable."""
    stable = getattr(act, "stable", None)
    if stable is not None:
        phi, dphi = stable
        trusted = True
    else:
        # a custom φ through the NumPy kernel's exact identities (1 + erf → erfc, log(1 + e^u) →
        # softplus, …: symgrad.spec.activations._stable_rewrites), so that GELU written with erf is
        # not untrusted over its whole left tail; φ' is then the derivative of the rewritten φ
        from symgrad.spec.activations import _ae_derivative, _stable_rewrites

        phi = _stable_rewrites(act.expr)
        dphi = act.derivative if phi == act.expr else _ae_derivative(phi)
        trusted = False
    return scalar_source(phi, dphi, "phi", trusted)


@functools.lru_cache(maxsize=256)
def bounds_of(act) -> str:
    """The printed ``def bnd(z): return (V, U)`` of an activation's :attr:`Activation.log_bounds`
    (log|φ| ≤ V, log|φ'| ≤ U), or ``(INF, INF)`` (nothing certified) where it has none or they do
    not print."""
    lb = getattr(act, "log_bounds", None)
    if lb is not None:
        try:
            pr = _Printer(derivative_mode=False, trusted=True)
            v, u = pr.p(lb[0]), pr.p(lb[1])
            body = "".join("    %s\n" % ln for ln in pr.lines)
            return "def bnd(z):\n%s    return (%s, %s)\n" % (body, v, u)
        except _Unprintable:
            pass
    return "def bnd(z):\n    return (INF, INF)\n"


# ---------------------------------------------------------------------------------------------
# The chain kernel around the forms.
# ---------------------------------------------------------------------------------------------

# Two passes.  The fast pass (``forward``, ``backward``, ``chain_block``) keeps one flag per
# sub-block of SUB samples, ``bad``: a superset of every exact condition below, reduced with one OR
# per element and no per-sample memory, and stored at the sub-block's first entry of ``fl``; where
# it is set (rare: a saturated unit, a vanishing or exploding product, a non-finite z),
# ``ChainKernel`` redoes that sub-block with the exact pass (``*_exact``: the status protocol and
# per-sample flags ``fl``), which recomputes every value, so the results and flags are those of the
# exact pass alone wherever one sample of the sub-block is odd.  The fast loops index with
# ``range(np.uint64(c0), np.uint64(c1))``: with a signed start numba adds a negative-index branch to
# every access, and LLVM no longer vectorises the loop (2.5 times slower).
_LAYER = """\
            if k == {k}:
                for i in range(m):
                    zi = z[i]
                    ai, di, ufi = phi{k}(zi)
                    a[i] = ai
                    drow[i] = di
{check}
"""

#: the exact pass's check of φ and φ': not finite (status); then, in a loop of its own, below the
#: smallest normal where uf says a nonzero value underflowed (or where it is subnormal), or z
#: subnormal (flag).  uf is recomputed in that second loop so that the first one compiles to the
#: fast pass's arithmetic (the products that uf reads would otherwise have a second use, which
#: changes where LLVM fuses a multiply and an add): a block gets the same values through either pass.
_CHECK_PHI_EXACT = """\
                    bad |= ~((abs(ai) <= HUGE) & (abs(di) <= HUGE))
                for i in range(m):
                    zi = z[i]
                    ai = a[i]
                    di = drow[i]
                    ufi = phi{k}(zi)[2]
                    fl[i] |= ((abs(zi) < TINY) & (zi != 0.0)) | ((abs(ai) < TINY) & ((ai != 0.0) | ufi)) | ((abs(di) < TINY) & ((di != 0.0) | ufi))"""

#: the fast pass's superset of it: ``ufi`` is not computed (LLVM drops it), any value below the
#: smallest normal counts where the form has an underflow term, a nonzero one where it has none.
_CHECK_PHI_FAST_UF = """\
                    bad |= ~((abs(ai) <= HUGE) & (abs(di) <= HUGE)) | ((abs(zi) < TINY) & (zi != 0.0)) | (abs(ai) < TINY) | (abs(di) < TINY)"""
_CHECK_PHI_FAST = """\
                    bad |= ~((abs(ai) <= HUGE) & (abs(di) <= HUGE)) | ((abs(zi) < TINY) & (zi != 0.0)) | ((abs(ai) < TINY) & (ai != 0.0)) | ((abs(di) < TINY) & (di != 0.0))"""

#: the exact pass's check of c = φ'(z_prev)·w (the fast pass's, in _LAYER_FAST, drops ``ci != 0.0``:
#: ci = pi·wi ≠ 0 implies pi ≠ 0 and wi ≠ 0, so it is the same condition; likewise _lost2, the fast
#: pass's _lost for x = p·q)
_CHECK_C = {"_exact": "fl[i] |= (abs(ci) > HUGE) | ((abs(ci) < TINY) & ((ci != 0.0) | ((pi != 0.0) & (wi != 0.0))))"}

_FORWARD = '''\
def forward{sfx}(W, B, kinds, a0, s, e, A, oA, D, oD, aL, zL, fl):
    L = len(W)
    m = e - s
    a = np.empty(m)
    z = np.empty(m)
    for i in range(m):
        a[i] = a0[i]
    for j in range(L):
        w = W[j][s:e]
        b = B[j][s:e]
        arow = A[j, oA:oA + m]
        bad = False
        if j:
            prev = D[j - 1, oD:oD + m]
            for i in range(m):
                ai = a[i]
                wi = w[i]
                arow[i] = ai
                zi = wi * ai + b[i]
                z[i] = zi
                pi = prev[i]
                ci = pi * wi
                prev[i] = ci
                {check_c}
                bad |= (zi - zi) != 0.0
        else:
            for i in range(m):
                ai = a[i]
                arow[i] = ai
                zi = w[i] * ai + b[i]
                z[i] = zi
                bad |= (zi - zi) != 0.0
        if bad:
            return j + 1
        drow = D[j, oD:oD + m]
        k = kinds[j]
        if True:
{layers}
        if bad:
            return j + 1
    for i in range(m):
        aL[i] = a[i]
        zL[i] = z[i]
    return 0
'''

#: The fast pass's forward: one loop per layer (z = w a + b, c = φ'(z_prev)·w and φ, φ'(z)), so z
#: is not written to and read back from a row between two loops; φ of a non-finite z is computed
#: (the branch-free functions do not trap) and the sub-block goes to the exact pass, which stops there.
_FORWARD_FAST = '''\
def forward(W, B, kinds, a0, s, e, A, oA, D, oD, aL, zL, fl):
    L = len(W)
    m = e - s
    a = np.empty(m)
    z = np.empty(m)
    p0 = np.empty(m)
    for i in range(m):
        a[i] = a0[i]
        p0[i] = 0.0
    for j in range(L):
        w = W[j][s:e]
        b = B[j][s:e]
        arow = A[j, oA:oA + m]
        drow = D[j, oD:oD + m]
        prev = D[j - 1, oD:oD + m] if j else p0
        k = kinds[j]
        for c0 in range(0, m, SUB):
            c1 = min(c0 + SUB, m)
            bad = False
{layers}
            if bad:
                fl[c0] = True
    for i in range(m):
        aL[i] = a[i]
        zL[i] = z[i]
    return 0
'''

#: one layer of the fast forward (prev is a row of zeros for the first layer: c = 0, no flag).
_LAYER_FAST = """\
            if k == {k}:
                for i in range(np.uint64(c0), np.uint64(c1)):
                    ai = a[i]
                    wi = w[i]
                    arow[i] = ai
                    zi = wi * ai + b[i]
                    z[i] = zi
                    pi = prev[i]
                    ci = pi * wi
                    prev[i] = ci
                    a1, d1, ufi = phi{k}(zi)
                    a[i] = a1
                    drow[i] = d1
                    bad |= ~(abs(ci) <= HUGE) | ((abs(ci) < TINY) & (pi != 0.0) & (wi != 0.0)) | ((zi - zi) != 0.0)
{check}
"""

_BACKWARD = '''\
def backward_exact(D, oD, A, oA, m, dL, cancel, fl):
    L = D.shape[0]
    d = np.empty(m)
    drow = D[L - 1, oD:oD + m]
    arow = A[L - 1, oA:oA + m]
    for i in range(m):
        ci = drow[i]
        li = dL[i]
        di = li if cancel else ci * li
        drow[i] = di
        ai = arow[i]
        gi = ai * di
        arow[i] = gi
        d[i] = di
        {check_last}
    for j in range(L - 2, -1, -1):
        drow = D[j, oD:oD + m]
        arow = A[j, oA:oA + m]
        for i in range(m):
            ci = drow[i]
            pi = d[i]
            di = ci * pi
            drow[i] = di
            ai = arow[i]
            gi = ai * di
            arow[i] = gi
            d[i] = di
            {check_d}
    for i in range(m):
        if fl[i]:
            return True
    return False
'''

_CHECK_BACK = dict(
    check_last="fl[i] |= (_lost(di, ci, li) & ~cancel) | (cancel & ~(abs(di) <= HUGE)) | _lost(gi, ai, di)",
    check_d="fl[i] |= _lost(di, ci, pi) | _lost(gi, ai, di)")

#: The fast pass's backward: the same products, a flag per sub-block (``fl[c0]``, the fast pass's
#: superset ``_lost2`` of ``_lost``), no early exit (a flagged sub-block is redone whole).
_BACKWARD_FAST = '''\
def backward(D, oD, A, oA, m, dL, cancel, fl):
    L = D.shape[0]
    d = np.empty(m)
    drow = D[L - 1, oD:oD + m]
    arow = A[L - 1, oA:oA + m]
    for c0 in range(0, m, SUB):
        c1 = min(c0 + SUB, m)
        bad = False
        for i in range(np.uint64(c0), np.uint64(c1)):
            ci = drow[i]
            li = dL[i]
            di = li if cancel else ci * li
            drow[i] = di
            ai = arow[i]
            gi = ai * di
            arow[i] = gi
            d[i] = di
            bad |= (_lost2(di, ci, li) & ~cancel) | (cancel & ~(abs(di) <= HUGE)) | _lost2(gi, ai, di)
        if bad:
            fl[c0] = True
    for j in range(L - 2, -1, -1):
        drow = D[j, oD:oD + m]
        arow = A[j, oA:oA + m]
        for c0 in range(0, m, SUB):
            c1 = min(c0 + SUB, m)
            bad = False
            for i in range(np.uint64(c0), np.uint64(c1)):
                ci = drow[i]
                pi = d[i]
                di = ci * pi
                drow[i] = di
                ai = arow[i]
                gi = ai * di
                arow[i] = gi
                d[i] = di
                bad |= _lost2(di, ci, pi) | _lost2(gi, ai, di)
            if bad:
                fl[c0] = True
'''

#: The output layer of every generated chain kernel (plain here, residual in numeric/residual.py):
#: δ^L and the cost per sample, σ(z_L) − y from the logit for a sigmoid output.
OUTPUT_SOURCE = '''\
def output(zL, aL, y, s, m, cross_entropy, sig_out, loss, dL):
    for i in range(m):
        yi = y[s + i]
        if sig_out:
            zi = zL[i]
            ei = math.exp(-abs(zi))
            r = 1.0 / (1.0 + ei)
            t = ei * r
            if zi >= 0.0:
                di = (1.0 - yi) - t if yi >= 0.5 else r - yi
            else:
                di = t - yi
            dL[i] = di
            if cross_entropy:
                loss[s + i] = max(zi, 0.0) - yi * zi + math.log1p(ei)
            else:
                loss[s + i] = 0.5 * di * di
        else:
            di = aL[i] - yi
            dL[i] = di
            loss[s + i] = 0.5 * di * di
'''

_KERNEL = '''\
def _lost(x, p, q):
    return ~(abs(x) <= HUGE) | ((abs(x) < TINY) & ((x != 0.0) | ((p != 0.0) & (q != 0.0))))


def _lost2(x, p, q):
    return ~(abs(x) <= HUGE) | ((abs(x) < TINY) & (p != 0.0) & (q != 0.0))


{output}

def chain_block_exact(W, B, kinds, a0, y, s, e, A, oA, D, oD, cross_entropy, sig_out, loss, fl):
    m = e - s
    aL = np.empty(m)
    zL = np.empty(m)
    status = forward_exact(W, B, kinds, a0[s:e], s, e, A, oA, D, oD, aL, zL, fl)
    if status > 0:
        return status
    dL = np.empty(m)
    output(zL, aL, y, s, m, cross_entropy, sig_out, loss, dL)
    if backward_exact(D, oD, A, oA, m, dL, cross_entropy and sig_out, fl):
        return -1
    return status


def chain_block(W, B, kinds, a0, y, s, e, A, oA, D, oD, cross_entropy, sig_out, loss, fl):
    m = e - s
    aL = np.empty(m)
    zL = np.empty(m)
    dL = np.empty(m)
    forward(W, B, kinds, a0[s:e], s, e, A, oA, D, oD, aL, zL, fl)
    output(zL, aL, y, s, m, cross_entropy, sig_out, loss, dL)
    backward(D, oD, A, oA, m, dL, cross_entropy and sig_out, fl)
    for c0 in range(0, m, SUB):
        if fl[c0]:
            return REDO_EXACT
    return 0
'''


def _run_generated(src: str, flush: bool = False) -> dict:
    """Define the functions of generated source in a fresh namespace.  ``src`` comes only from
    :func:`scalar_source` and :func:`kernel_source`: this module's fixed vocabulary and numbers
    printed by ``repr(float)``, never a name or string of the user's (see the module docstring).
    ``flush``: the elementary functions that return 0 instead of a subnormal value
    (:func:`symgrad.numeric.compiled.elementary`), for the chain kernels."""
    from symgrad.numeric import compiled as _jit

    ns = {"np": np, "math": math, "TINY": _jit._TINY, "HUGE": _jit._HUGE, "REDO_EXACT": REDO_EXACT, "SUB": SUB, "INF": math.inf, "NAN": math.nan, "LN2": math.log(2.0),
          "E2_MAGIC": np.int64(0x4330000000000000), "E2_SHIFT": 4503599627370496.0}
    ns.update(_jit.elementary(flush))
    exec(compile(src, "<symgrad generated kernel>", "exec"), ns)
    return ns


def kernel_source(forms: tuple[str, ...]) -> str:
    """The module text of the chain kernel for these distinct printed forms: the fast pass, the
    exact pass and ``chain_block``, the fast pass over one block (:class:`ChainKernel` runs the exact
    pass on the sub-blocks it flags)."""
    parts = []
    for k, f in enumerate(forms):
        assert f.startswith("def phi(z):\n")
        parts.append("def phi%d(z):\n" % k + f[len("def phi(z):\n"):])
    text = []
    for sfx in ("", "_exact"):
        layers = ""
        for k, f in enumerate(forms):
            if sfx:
                check = _CHECK_PHI_EXACT.replace("{k}", str(k))
                layers += _LAYER.format(k=k, check=check)
            else:  # a form whose uf is the constant False has no underflowing intermediate
                check = _CHECK_PHI_FAST if f.rstrip().endswith(", False)") else _CHECK_PHI_FAST_UF
                layers += _LAYER_FAST.format(k=k, check=check.replace("ai", "a1").replace("di", "d1"))
        fwd = _FORWARD.replace("{sfx}", sfx).replace("{check_c}", _CHECK_C[sfx]) if sfx else _FORWARD_FAST
        text.append(fwd.replace("{layers}", layers))
        back = _BACKWARD_FAST
        if sfx:
            back = _BACKWARD
            for key, val in _CHECK_BACK.items():
                back = back.replace("{%s}" % key, val)
        text.append(back)
    return "\n\n".join(parts) + "\n\n" + "\n\n".join(text) + "\n\n" + _KERNEL.replace("{output}", OUTPUT_SOURCE)


#: What the fast ``chain_block`` returns for a block with a sub-block to redo by ``chain_block_exact``.
REDO_EXACT = -2

#: The fast pass keeps one flag per sub-block of this many samples (each layer's loop runs sub-block
#: by sub-block), and only a flagged sub-block is redone by the exact pass.  With one flag per
#: 4096-sample block, one far-negative pre-activation in a deep GELU chain (17 of 100,000 samples
#: in the benchmark's) sent the whole block through the exact pass, about as much work again as
#: the fast one: GELU went from 0.095 s to 0.072-0.078 s; sigmoid, which flags nothing, from 0.036 to
#: 0.037 s (one thread, depth 50, batch 100,000).
SUB = 512


class ChainKernel(NamedTuple):
    """The two compiled passes of one chain kernel: ``fast`` (one flag per sub-block of :data:`SUB`
    samples, written at the sub-block's first entry of ``fl``; returns 0, or :data:`REDO_EXACT`
    when some sub-block must be redone) and ``exact`` (per-sample flags and statuses), run here on
    each flagged sub-block.  Each compiles on its first call, so the exact pass costs no compile time
    until a block needs it.  Returns the exact pass's status protocol: 0, j + 1 (z_{j+1} not finite)
    or −1 (``fl`` holds the samples to redo rescaled)."""

    fast: object
    exact: object

    def __call__(self, W, B, kinds, a0, y, s, e, A, oA, D, oD, cross_entropy, sig_out, loss, fl):
        status = self.fast(W, B, kinds, a0, y, s, e, A, oA, D, oD, cross_entropy, sig_out, loss, fl)
        if status != REDO_EXACT:
            return status
        starts = np.flatnonzero(fl[::SUB]) * SUB
        fl[:] = False
        status = 0
        for o in starts:
            o1 = min(o + SUB, e - s)
            st = self.exact(W, B, kinds, a0, y, s + o, s + o1, A, oA + o, D, oD + o, cross_entropy, sig_out,
                            loss, fl[o:o1])
            if st > 0:
                return st
            status = min(status, st)
        return status


@functools.lru_cache(maxsize=64)
def chain_kernel(forms: tuple[str, ...]):
    """The compiled :class:`ChainKernel` for a chain whose distinct layer forms are ``forms``
    (each pass compiled on first use, ~seconds; one per distinct tuple, at most 64 kept)."""
    from symgrad.numeric import compiled as _jit

    numba = _jit.numba_module()
    src = kernel_source(forms)
    ns = _run_generated(src, flush=True)
    opts = dict(nogil=True, fastmath={"contract"}, error_model="numpy")
    for k in range(len(forms)):
        ns["phi%d" % k] = numba.njit(inline="always", **opts)(ns["phi%d" % k])
    for name in ("_lost", "_lost2", "output", "forward", "backward", "forward_exact", "backward_exact",
                 "chain_block_exact", "chain_block"):
        ns[name] = numba.njit(**opts)(ns[name])
    return ChainKernel(ns["chain_block"], ns["chain_block_exact"])


def scalar_kernel(act):
    """The compiled scalar ``φ(z) → (φ, φ', uf)`` of one activation (for tests)."""
    from symgrad.numeric import compiled as _jit

    numba = _jit.numba_module()
    ns = _run_generated(form_of(act))
    return numba.njit(error_model="numpy")(ns["phi"])
