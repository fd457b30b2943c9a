"""Steps checked by interval arithmetic (``mpmath.iv``, outward rounding): :func:`interval_eval`,
:class:`CertifiedRoot` (a sign change on a rational bracket) and :class:`Enclosure`."""

from __future__ import annotations

import mpmath
import sympy
from sympy import S

from symgrad.errors import InvalidArgument
from symgrad.proof.engine._base import Step, StepResult
from symgrad.proof.engine._tex import _check_tex, _display, _tex
from symgrad.proof.engine._values import _rat, _show, _sym, _symbol
from symgrad.spec.activations import ActivationPrime, sigmoid, softplus


# ---------------------------------------------------------------------------------------------
# Interval arithmetic: certified roots and enclosures
# ---------------------------------------------------------------------------------------------

_IV_DPS = 40


def interval_eval(expr: sympy.Expr, env: dict):
    """Evaluate ``expr`` in ``mpmath.iv`` interval arithmetic (outward rounding), with each free
    symbol bound by ``env`` to a pair ``(lo, hi)`` of exact Rationals.  The result encloses every
    value of ``expr`` on the box; it raises when ``expr`` is not defined on the whole box (a log
    or square root of an interval reaching 0 or below, a division by an interval holding 0), so
    a finite result also shows that ``expr`` is continuous there."""
    iv = mpmath.iv

    def num(r):
        r = sympy.Rational(r)
        return iv.mpf(int(r.p)) / iv.mpf(int(r.q))

    def ev(e):
        if e.is_Rational:
            return num(e)
        if e is S.Pi:
            return iv.pi
        if e is S.Exp1:
            return iv.e
        if e.is_Symbol:
            lo, hi = env[e]
            a, b = num(lo), num(hi)
            return iv.mpf([a.a, b.b])
        if e.is_Add:
            out = ev(e.args[0])
            for t in e.args[1:]:
                out = out + ev(t)
            return out
        if e.is_Mul:
            out = ev(e.args[0])
            for t in e.args[1:]:
                out = out * ev(t)
            return out
        if e.is_Pow:
            b, x = e.args
            if x.is_Integer:
                base = ev(b)
                if x < 0:
                    if base.a <= 0 <= base.b:
                        raise ArithmeticError("division by an interval containing 0: %s" % b)
                    base, x = 1 / base, -x
                out = iv.mpf(1)
                for _ in range(int(x)):
                    out = out * base
                return out
            if x == S.Half:
                base = ev(b)
                if base.a < 0:
                    raise ArithmeticError("square root of an interval reaching below 0: %s" % b)
                return iv.sqrt(base)
            base = ev(b)
            if base.a <= 0:
                raise ArithmeticError("power of an interval reaching 0: %s" % b)
            return iv.exp(ev(x) * iv.log(base))
        if isinstance(e, sympy.exp):
            return iv.exp(ev(e.args[0]))
        if isinstance(e, sympy.log):
            arg = ev(e.args[0])
            if arg.a <= 0:
                raise ArithmeticError("log of an interval reaching 0: %s" % e.args[0])
            return iv.log(arg)
        if isinstance(e, sympy.erf):
            return _iv_erf(ev(e.args[0]))
        if isinstance(e, (sigmoid, sympy.tanh, sympy.cosh, sympy.atanh, softplus)):
            return ev(e.rewrite(sympy.exp) if not isinstance(e, sympy.atanh) else e.rewrite(sympy.log))
        if isinstance(e, ActivationPrime):
            return ev(e.doit())
        raise ArithmeticError("no interval rule for %s" % type(e).__name__)

    expr = _sym(expr, "interval_eval expr")
    env = {_symbol(s, "interval_eval env"): (_rat(ab[0], "interval_eval env lower end of %s" % s), _rat(ab[1], "interval_eval env upper end of %s" % s))
           for s, ab in dict(env).items()}
    with mpmath.workdps(_IV_DPS):
        iv.dps = _IV_DPS
        return ev(expr)


def _iv_erf(x):
    """erf on an interval within [−1, 1], from its alternating Maclaurin series
    erf(t) = (2/√π) Σ (−1)^n t^{2n+1} / (n! (2n+1)): for |t| ≤ 1 the terms decrease, so the sum
    lies between consecutive partial sums.  erf is increasing, so the ends bound the interval."""
    iv = mpmath.iv
    if not (-1 <= x.a and x.b <= 1):
        raise ArithmeticError("interval erf is implemented on [-1, 1] only")

    def at(t):  # an enclosure of erf at the point interval t
        s, term, lo, hi = iv.mpf(0), t, None, None
        for k in range(60):
            s = s + term / (2 * k + 1)
            term = -term * t * t / (k + 1)
        bound = abs(term) / 121  # the next term bounds the tail of an alternating series
        return 2 / iv.sqrt(iv.pi) * (s + iv.mpf([-bound.b, bound.b]))

    lo, hi = at(iv.mpf(x.a)), at(iv.mpf(x.b))
    return iv.mpf([lo.a, hi.b])


def _ends(x):
    """The two ends of an ``mpmath.iv`` interval as plain ``mpf`` numbers."""
    lo, hi = x._mpi_
    return mpmath.mpf(lo), mpmath.mpf(hi)


def _iv_str(x) -> str:
    lo, hi = _ends(x)
    return "[%s, %s]" % (mpmath.nstr(lo, 10), mpmath.nstr(hi, 10))


class CertifiedRoot(Step):
    r"""``f(var) = 0`` has a root in ``[lo, hi]`` (exact Rationals, ``hi − lo ≤ 10^{-digits}``).

    Certified by interval arithmetic: ``f`` evaluates to a finite interval on all of
    ``[lo, hi]`` (so it is continuous there), and its enclosures at ``lo`` and ``hi`` lie strictly
    on opposite sides of 0; the intermediate value theorem gives the root.  Make one with
    :meth:`near`, which locates the bracket with mpmath first.
    """

    kind = "Certified root"

    def __init__(self, f, var, lo, hi, digits, label="", why=""):
        super().__init__(label, why)
        self.f, self.var = _sym(f, "CertifiedRoot f"), _symbol(var, "CertifiedRoot var")
        self.lo, self.hi = _rat(lo, "CertifiedRoot lo"), _rat(hi, "CertifiedRoot hi")
        if not (isinstance(digits, int) and not isinstance(digits, bool) and 1 <= digits <= 50):
            raise InvalidArgument("CertifiedRoot digits=%s: pass an int from 1 to 50" % _show(digits))
        self.digits = digits

    @classmethod
    def near(cls, f, var, a, b, digits, label="", why=""):
        """Find the root of ``f`` in ``[a, b]`` with mpmath, then bracket it by Rationals
        ``10^{-digits-1}`` either side.  Only the bracket is certified; the search is a guess."""
        f, var = _sym(f, "CertifiedRoot f"), _symbol(var, "CertifiedRoot var")
        a, b = _rat(a, "CertifiedRoot.near a"), _rat(b, "CertifiedRoot.near b")
        if not (isinstance(digits, int) and not isinstance(digits, bool) and 1 <= digits <= 50):
            raise InvalidArgument("CertifiedRoot digits=%s: pass an int from 1 to 50" % _show(digits))
        extra = f.free_symbols - {var}
        if extra:
            raise InvalidArgument("CertifiedRoot.near: f has free symbols %s besides %s; substitute numbers for them"
                                  % (", ".join(sorted(map(str, extra))), var))
        dps = digits + 15

        def g(v):  # SymPy evaluates the expression itself: no code is generated from it (lambdify prints names into code)
            val = f.xreplace({var: sympy.Float(v, dps)}).evalf(dps)
            if not (val.is_Number and val.is_real):
                raise ArithmeticError("f(%s) is not a real number: %s" % (mpmath.nstr(v, 8), val))
            return mpmath.mpf(val)

        with mpmath.workdps(dps):
            r = mpmath.findroot(g, (mpmath.mpf(a.p) / a.q, mpmath.mpf(b.p) / b.q), solver="anderson")
            q = sympy.Rational(mpmath.nstr(r, digits + 5, strip_zeros=False))
        eps = sympy.Rational(1, 10 ** (digits + 1))
        return cls(f, var, q - eps, q + eps, digits, label, why)

    @property
    def root_text(self) -> str:
        mid = (self.lo + self.hi) / 2
        return str(sympy.Float(mid, self.digits + 1))

    def _check(self):
        if self.hi <= self.lo or self.hi - self.lo > sympy.Rational(1, 10 ** self.digits):
            return StepResult(False, "the bracket [%s, %s] is not of width ≤ 1e-%d" % (self.lo, self.hi, self.digits))
        try:
            whole = interval_eval(self.f, {self.var: (self.lo, self.hi)})
            fa = interval_eval(self.f, {self.var: (self.lo, self.lo)})
            fb = interval_eval(self.f, {self.var: (self.hi, self.hi)})
        except ArithmeticError as exc:
            return StepResult(False, "f is not certified continuous on the bracket: %s" % exc)
        (wa, wb), (fa_lo, fa_hi), (fb_lo, fb_hi) = _ends(whole), _ends(fa), _ends(fb)
        if not (mpmath.isfinite(wa) and mpmath.isfinite(wb)):
            return StepResult(False, "f is unbounded on the bracket")
        if (fa_hi < 0 and fb_lo > 0) or (fa_lo > 0 and fb_hi < 0):
            return StepResult(True, "interval arithmetic: f(lo) ∈ %s, f(hi) ∈ %s, opposite strict signs" % (_iv_str(fa), _iv_str(fb)))
        return StepResult(False, "no certified sign change: f(lo) ∈ %s, f(hi) ∈ %s" % (_iv_str(fa), _iv_str(fb)))

    def _body(self):
        v = _tex(self.var)
        return _display(r"%s = 0 \text{ at some } %s \in \left[%s,\ %s\right], \quad %s \approx %s"
                        % (_tex(self.f), v, _tex(sympy.Float(self.lo, self.digits + 3)), _tex(sympy.Float(self.hi, self.digits + 3)), v, self.root_text))


class Enclosure(Step):
    """``lo ≤ expr ≤ hi`` for every value of the symbols in ``env`` (each bound to an exact
    Rational interval, e.g. a :class:`CertifiedRoot`'s bracket), by interval arithmetic."""

    kind = "Enclosure"

    def __init__(self, expr, lo, hi, label="", why="", *, env=None, expr_tex=None):
        super().__init__(label, why)
        self.expr, self.lo, self.hi = _sym(expr, "Enclosure expr"), _rat(lo, "Enclosure lo"), _rat(hi, "Enclosure hi")
        self.env = {_symbol(s, "Enclosure env"): (_rat(ab[0], "Enclosure env lower end of %s" % s), _rat(ab[1], "Enclosure env upper end of %s" % s))
                    for s, ab in dict(env or {}).items()}
        self.expr_tex = _check_tex(expr_tex, "expr_tex")

    def _check(self):
        try:
            x = interval_eval(self.expr, self.env)
        except ArithmeticError as exc:
            return StepResult(False, "interval evaluation failed: %s" % exc)
        with mpmath.workdps(_IV_DPS):
            lo, hi = mpmath.mpf(self.lo.p) / self.lo.q, mpmath.mpf(self.hi.p) / self.hi.q
            xa, xb = _ends(x)
            ok = xa >= lo and xb <= hi
        if ok:
            return StepResult(True, "interval arithmetic encloses the value in %s" % _iv_str(x))
        return StepResult(False, "the value lies in %s, not inside [%s, %s]" % (_iv_str(x), self.lo, self.hi))

    def _body(self):
        where = ""
        if self.env:
            where = r"\quad\text{for } " + ",\\ ".join(r"%s \in \left[%s, %s\right]" % (_tex(s), _tex(sympy.Float(a, 10)), _tex(sympy.Float(b, 10)))
                                                        for s, (a, b) in self.env.items())
        return _display(r"%s \in \left[%s,\ %s\right]%s" % (self.expr_tex or _tex(self.expr), _tex(sympy.Float(self.lo, 8)), _tex(sympy.Float(self.hi, 8)), where))
