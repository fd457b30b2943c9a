r"""A small proof engine: theorems as sequences of exactly checked steps.

A :class:`Theorem` is a statement, a list of :class:`Step` objects and an optional numeric
cross-check.  :meth:`Theorem.prove` runs the steps in order and stops at the first one that
fails; the result says ``proved`` or ``failed`` and names the failing step.  The cross-check
(Hypothesis or the NumPy evaluator) is reported separately and never counts as a proof step.

Every step is checked exactly; floating point never decides a step:

* :class:`Identity` ``lhs = rhs``: SymPy reduces ``lhs − rhs`` to 0 by a bounded chain of
  rewrites (``expand``, ``cancel``, ``rewrite(exp)``, ``simplify``) on small local expressions;
* :class:`Certificate` ``expr ≥ 0`` (or ``> 0``): ``expr`` equals a *witness* identically, and
  the witness is nonnegative by its structure alone (squares, exponentials, sums and products
  of nonnegative terms, and the stated hypotheses);
* :class:`Solve`: ``solveset`` returns exactly the expected set;
* :class:`Induction`: a base case and an inductive step, each a list of steps;
* :class:`CertifiedRoot` and :class:`Enclosure`: interval arithmetic (``mpmath.iv``, outward
  rounding) proves a sign change on a rational interval, or that a constant lies in a
  rational interval;
* :class:`Limit`, :class:`ExactValue`, :class:`Implies` (a named inference whose premises are
  themselves checked steps) and :class:`Given` (a definition or hypothesis of the theorem,
  shown as such and never counted as checked).

>>> import sympy
>>> from symgrad.theorems import Certificate, Theorem
>>> x = sympy.Symbol("x", real=True)
>>> thm = Theorem("demo", "AM-GM", r"x^2 + 1 \ge 2x", [Certificate(x**2 + 1 - 2*x, (x - 1)**2)])
>>> thm.prove().status
'proved'
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import mpmath
import sympy
from sympy import S

from .activations import ActivationPrime, sigmoid, softplus
from .errors import InvalidArgument

__all__ = [
    "StepResult",
    "Step",
    "Identity",
    "ExactValue",
    "Certificate",
    "Solve",
    "Limit",
    "Induction",
    "CertifiedRoot",
    "Enclosure",
    "Implies",
    "Given",
    "Theorem",
    "Result",
    "peel_products",
    "interval_eval",
]


@dataclass(frozen=True)
class StepResult:
    """Outcome of one step: ``ok`` and a deterministic one-line ``detail`` (what decided it)."""

    ok: bool
    detail: str


def _tex(e) -> str:
    return e if isinstance(e, str) else sympy.latex(e)


class Step:
    """One checked step.  Subclasses implement :meth:`_check` and :meth:`_body`.

    * ``label``: a short name ("σ' in closed form") used in reports and failure messages;
    * ``why``: one sentence for the reader of the LaTeX.
    """

    kind = "step"
    counts_as_proof = True

    def __init__(self, label: str = "", why: str = ""):
        self.label = label
        self.why = why
        self._result: StepResult | None = None

    def check(self) -> StepResult:
        """Run the check once (the result is cached: steps are immutable once built)."""
        if self._result is None:
            try:
                self._result = self._check()
            except Exception as exc:  # a check that crashes has not proved anything
                self._result = StepResult(False, "check raised %s: %s" % (type(exc).__name__, exc))
        return self._result

    def _check(self) -> StepResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def _body(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def latex(self) -> str:
        """The step for a reader: its kind, label, the mathematics and the reason."""
        head = r"\textbf{%s}" % self.kind
        if self.label:
            head += r" (%s)" % _escape(self.label)
        why = (" " + _escape(self.why)) if self.why else ""
        return "%s.%s\n%s" % (head, why, self._body())

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.label)


_TEXT_MAP = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "^": r"\^{}", "~": r"\~{}", "−": "$-$", "∈": r"$\in$", "σ": r"$\sigma$", "φ": r"$\varphi$", "≥": r"$\ge$",
    "≤": r"$\le$", "Π": r"$\Pi$", "→": r"$\to$", "≈": r"$\approx$", "·": r"$\cdot$", "′": "'", "δ": r"$\delta$",
    "∂": r"$\partial$", "λ": r"$\lambda$", "η": r"$\eta$", "α": r"$\alpha$", "Σ": r"$\Sigma$", "‖": r"$\|$",
    "—": "---", "–": "--", "×": r"$\times$", ">": "$>$", "<": "$<$", "|": "$|$",
}


def _escape(text: str) -> str:
    """Plain text to LaTeX text; ``$…$`` spans are kept as maths, a few Unicode symbols become maths."""
    out, parts = [], text.split("$")
    for i, p in enumerate(parts):
        if i % 2:
            out.append("$" + p + "$")
        else:
            p = p.replace(">=", "≥").replace("<=", "≤").replace("->", "→")
            out.append("".join(_TEXT_MAP.get(c, c) for c in p))
    return "".join(out)


def _display(tex: str) -> str:
    return "\\[\\fitmath{%s}\\]" % tex


# ---------------------------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------------------------


def peel_products(expr: sympy.Expr) -> sympy.Expr:
    r"""Apply the recursive definition of Π: ``Π_{k=a}^{M+c} f(k) = Π_{k=a}^{M+c-1} f(k) · f(M+c)``
    for every product whose upper limit is a symbol plus a positive integer ``c`` (valid for
    ``M + c ≥ a − 1``; the empty product is 1).  This is the only rule the engine adds to SymPy."""

    def peel(p):
        (k, lo, hi), = p.limits
        c, rest = hi.as_coeff_Add()
        if not (c.is_Integer and c > 0 and rest != 0):
            return p
        inner = peel(sympy.Product(p.function, (k, lo, hi - 1)))
        return inner * p.function.xreplace({k: hi})

    return expr.replace(lambda e: isinstance(e, sympy.Product), peel)


def _closed_forms(e):
    """φ'(x) (unevaluated) → its closed form; leaves Products and Subs alone."""
    return e.replace(lambda t: isinstance(t, ActivationPrime), lambda t: t.doit())


def _reduces_to_zero(d: sympy.Expr) -> str | None:
    """The name of the first rewrite that turns ``d`` into 0, or None.  Bounded: each attempt
    is one SymPy call on a small local expression."""
    if d.has(sympy.Float):
        raise InvalidArgument("identity contains a floating-point number %s; use exact Rationals" % d.atoms(sympy.Float))
    d = _closed_forms(d)
    if d == 0:
        return "syntactic"
    attempts = [
        ("doit + expand", lambda e: sympy.expand(e.doit())),
        ("cancel", lambda e: sympy.cancel(sympy.together(e.doit()))),
        ("rewrite(exp) + cancel", lambda e: sympy.cancel(sympy.together(sympy.expand(e.doit().rewrite(sympy.exp))))),
        ("simplify", lambda e: sympy.simplify(e.doit())),
        ("rewrite(exp) + simplify", lambda e: sympy.simplify(e.doit().rewrite(sympy.exp))),
    ]
    for name, f in attempts:
        r = f(d)
        if r == 0:
            return name
    return None


class Identity(Step):
    """``lhs = rhs`` exactly: SymPy reduces ``lhs − rhs`` to 0.

    * ``peel``: first apply :func:`peel_products` (the recursive definition of Π), for
      inductive steps on the depth.
    """

    kind = "Identity"

    def __init__(self, lhs, rhs, label="", why="", *, peel=False, lhs_tex=None, rhs_tex=None):
        super().__init__(label, why)
        self.lhs, self.rhs = sympy.sympify(lhs), sympy.sympify(rhs)
        self.peel = peel
        self.lhs_tex, self.rhs_tex = lhs_tex, rhs_tex

    def _check(self):
        if self.lhs.has(sympy.Float) or self.rhs.has(sympy.Float):
            return StepResult(False, "a floating-point number appears; identities must be exact (use Rationals)")
        d = self.lhs - self.rhs
        if self.peel:
            d = peel_products(d)
        how = _reduces_to_zero(d)
        if how is None:
            return StepResult(False, "lhs − rhs does not reduce to 0 (expand, cancel, rewrite(exp), simplify all left a nonzero remainder)")
        return StepResult(True, "lhs − rhs reduces to 0 by %s%s" % ("peeling Π, then " if self.peel else "", how))

    def _body(self):
        return _display("%s = %s" % (self.lhs_tex or _tex(self.lhs), self.rhs_tex or _tex(self.rhs)))


class ExactValue(Identity):
    """``expr`` evaluates exactly (in the rationals, or a closed form) to ``expected``."""

    kind = "Exact value"

    def _check(self):
        if self.rhs.has(sympy.Float) or self.lhs.has(sympy.Float):
            return StepResult(False, "a floating-point number appears; exact values must be Rationals")
        r = super()._check()
        return StepResult(r.ok, r.detail.replace("lhs − rhs reduces", "the difference evaluates"))


# ---------------------------------------------------------------------------------------------
# Inequalities: certificates checked by structure
# ---------------------------------------------------------------------------------------------


_POS, _NONNEG = 2, 1


def _sign(e, pos: frozenset, nonneg: frozenset) -> int:
    """2: manifestly > 0, 1: manifestly ≥ 0, 0: not manifest.  Structural only: no numerics."""
    if e in pos:
        return _POS
    if e in nonneg:
        return _NONNEG
    if e.is_Number:
        return _POS if e > 0 else (_NONNEG if e == 0 else 0)
    if e.is_NumberSymbol:  # π, e
        return _POS if e.is_positive else 0
    if e.is_Symbol:
        return _POS if e.is_positive else (_NONNEG if e.is_nonnegative else 0)
    if e.is_Pow:
        b, x = e.args
        sb = _sign(b, pos, nonneg)
        if sb == _POS and x.is_real:
            return _POS
        if x.is_Integer and x.is_even and b.is_real:
            return _POS if (sb == _POS or _sign(-b, pos, nonneg) == _POS) else _NONNEG
        if sb == _NONNEG and x.is_positive:
            return _NONNEG
        return 0
    if e.is_Mul or e.is_Add:
        signs = [_sign(a, pos, nonneg) for a in e.args]
        if min(signs) == 0:
            return 0
        if e.is_Mul:
            return _POS if min(signs) == _POS else _NONNEG
        return _POS if max(signs) == _POS else _NONNEG
    if isinstance(e, (sympy.exp, sympy.cosh)) and e.args[0].is_real:
        return _POS
    if isinstance(e, sigmoid) and e.args[0].is_real:
        return _POS
    if isinstance(e, sympy.Abs):
        return _NONNEG
    if isinstance(e, (sympy.tanh, sympy.erf, sympy.atanh)):  # odd and increasing: sign of the argument
        return _sign(e.args[0], pos, nonneg)
    if isinstance(e, sympy.log):
        return _sign(sympy.cancel(e.args[0] - 1), pos, nonneg)
    return 0


class Certificate(Step):
    r"""``expr ≥ 0`` (``strict=True``: ``expr > 0``), by a witness.

    Checked in two parts: the witness, with each hypothesis symbol of ``where`` replaced by the
    expression it stands for, equals ``expr`` (``expr − witness`` reduces to 0 as in
    :class:`Identity`); and the witness is manifestly nonnegative (positive) by its structure:
    numbers, even powers, ``exp``, σ, ``cosh``, sums and products of such terms, and the
    hypothesis symbols, which carry ``nonnegative=True`` or ``positive=True``.  The hypotheses
    (``h = 1/4 − σ'(z) ≥ 0``, say) are the theorem's premises, and the LaTeX states each one.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> Certificate(x**2 - 2*x + 1, (x - 1)**2).check().ok
    True
    """

    kind = "Certificate"

    def __init__(self, expr, witness, label="", why="", *, strict=False, where=None, expr_tex=None):
        super().__init__(label, why)
        self.expr, self.witness = sympy.sympify(expr), sympy.sympify(witness)
        self.strict = strict
        self.where = dict(where or {})
        for h in self.where:
            if not (isinstance(h, sympy.Symbol) and (h.is_nonnegative or h.is_positive)):
                raise InvalidArgument("hypothesis %r must be a Symbol declared nonnegative=True or positive=True" % (h,))
        self.expr_tex = expr_tex

    def _check(self):
        if self.expr.has(sympy.Float) or self.witness.has(sympy.Float):
            return StepResult(False, "a floating-point number appears; certificates must be exact (use Rationals)")
        how = _reduces_to_zero(self.expr - self.witness.xreplace(self.where))
        if how is None:
            return StepResult(False, "expr − witness does not reduce to 0: the witness is not the expression")
        s = _sign(self.witness, frozenset(), frozenset())
        need = _POS if self.strict else _NONNEG
        if s < need:
            return StepResult(False, "the witness is not manifestly %s by its structure" % ("positive" if self.strict else "nonnegative"))
        return StepResult(True, "expr = witness (%s) and the witness is manifestly %s" % (how, "positive" if self.strict else "nonnegative"))

    def _body(self):
        rel = ">" if self.strict else r"\ge"
        text = _display(r"%s = %s %s 0" % (self.expr_tex or _tex(self.expr), _tex(self.witness), rel))
        if self.where:
            hyps = ["$%s = %s %s 0$" % (_tex(h), _tex(e), ">" if h.is_positive else r"\ge") for h, e in self.where.items()]
            text += "\nwhere " + ", ".join(hyps) + "."
        return text


# ---------------------------------------------------------------------------------------------
# Equations, limits
# ---------------------------------------------------------------------------------------------


def _same_set(a, b) -> bool:
    if a == b:
        return True
    if isinstance(a, sympy.FiniteSet) and isinstance(b, sympy.FiniteSet) and len(a) == len(b):
        rest = list(b)
        for x in a:
            hit = next((y for y in rest if _reduces_to_zero(sympy.sympify(x) - y) is not None), None)
            if hit is None:
                return False
            rest.remove(hit)
        return True
    return False


class Solve(Step):
    """``solveset(equation, var, domain)`` is exactly ``expected`` (an equation, or an
    inequality, whose solution set SymPy computes in closed form)."""

    kind = "Solved"

    def __init__(self, equation, var, expected, label="", why="", *, domain=S.Reals, eq_tex=None):
        super().__init__(label, why)
        self.equation, self.var, self.expected, self.domain = equation, var, expected, domain
        self.eq_tex = eq_tex

    def _check(self):
        got = sympy.solveset(self.equation, self.var, self.domain)
        if _same_set(got, self.expected):
            return StepResult(True, "solveset gives exactly the expected set")
        return StepResult(False, "solveset gives %s, not %s" % (got, self.expected))

    def _body(self):
        eq = self.eq_tex or (_tex(self.equation) if not isinstance(self.equation, sympy.Expr) or self.equation.is_Relational
                             else "%s = 0" % _tex(self.equation))
        return _display(r"%s \iff %s \in %s" % (eq, _tex(self.var), _tex(self.expected)))


class Limit(Step):
    """``lim_{var → point} expr = expected``, by ``sympy.limit``."""

    kind = "Limit"

    def __init__(self, expr, var, point, expected, label="", why=""):
        super().__init__(label, why)
        self.expr, self.var, self.point, self.expected = expr, var, point, sympy.sympify(expected)

    def _check(self):
        expr = self.expr.rewrite(sympy.exp) if self.expr.has(sigmoid, softplus) else self.expr
        # One rational normal form first: SymPy 1.14 gets lim_{z→∞} of the uncancelled SiLU' wrong (0, not 1).
        expr = sympy.cancel(sympy.together(expr))
        got = sympy.limit(expr, self.var, self.point)
        if isinstance(got, sympy.Limit) or got.has(sympy.Limit):
            return StepResult(False, "sympy.limit could not evaluate the limit")
        if got == self.expected or _reduces_to_zero(got - self.expected) is not None:
            return StepResult(True, "sympy.limit gives %s" % got)
        return StepResult(False, "sympy.limit gives %s, not %s" % (got, self.expected))

    def _body(self):
        return _display(r"\lim_{%s \to %s} %s = %s" % (_tex(self.var), _tex(self.point), _tex(self.expr), _tex(self.expected)))


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

    with mpmath.workdps(_IV_DPS):
        iv.dps = _IV_DPS
        return ev(sympy.sympify(expr))


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
        self.f, self.var = f, var
        self.lo, self.hi, self.digits = sympy.Rational(lo), sympy.Rational(hi), int(digits)

    @classmethod
    def near(cls, f, var, a, b, digits, label="", why=""):
        """Find the root of ``f`` in ``[a, b]`` with mpmath, then bracket it by Rationals
        ``10^{-digits-1}`` either side.  Only the bracket is certified; the search is a guess."""
        g = sympy.lambdify(var, f, modules="mpmath")
        with mpmath.workdps(digits + 15):
            r = mpmath.findroot(g, (mpmath.mpf(sympy.Rational(a)), mpmath.mpf(sympy.Rational(b))), solver="anderson")
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
        self.expr, self.lo, self.hi = sympy.sympify(expr), sympy.Rational(lo), sympy.Rational(hi)
        self.env = dict(env or {})
        self.expr_tex = expr_tex

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


# ---------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------


class Induction(Step):
    """A statement for every integer ``var ≥ start``: the base case and the inductive step
    (``var → var + 1``, assuming the statement at ``var``) are each a list of steps."""

    kind = "Induction"

    def __init__(self, var, start, base: Sequence[Step], step: Sequence[Step], label="", why="", *, statement_tex=""):
        super().__init__(label, why)
        self.var, self.start, self.base, self.step = var, start, list(base), list(step)
        self.statement_tex = statement_tex

    def _check(self):
        for part, steps in (("base case", self.base), ("inductive step", self.step)):
            for s in steps:
                r = s.check()
                if not r.ok:
                    return StepResult(False, "%s, %s: %s" % (part, s.label or s.kind, r.detail))
        return StepResult(True, "base case (%d steps) and inductive step (%d steps) checked" % (len(self.base), len(self.step)))

    def _body(self):
        v = _tex(self.var)
        out = []
        if self.statement_tex:
            out.append("Claim, for every integer $%s \\ge %s$:%s" % (v, _tex(self.start), _display(self.statement_tex)))
        out.append(r"\emph{Base case} $%s = %s$:" % (v, _tex(self.start)))
        out.append(_itemize(self.base))
        out.append(r"\emph{Inductive step} $%s \to %s + 1$ (assuming the claim at $%s$):" % (v, v, v))
        out.append(_itemize(self.step))
        return "\n".join(out)


class Implies(Step):
    """A named inference (``rule``, e.g. "a function with negative derivative decreases") from
    premises that are themselves checked steps, to ``conclusion_tex``.  Fails if any premise fails."""

    kind = "Inference"

    def __init__(self, premises: Sequence[Step], conclusion_tex: str, label="", why="", *, rule=""):
        super().__init__(label, why)
        self.premises, self.conclusion_tex, self.rule = list(premises), conclusion_tex, rule

    def _check(self):
        for p in self.premises:
            r = p.check()
            if not r.ok:
                return StepResult(False, "premise %s failed: %s" % (p.label or p.kind, r.detail))
        return StepResult(True, "all %d premises checked; rule: %s" % (len(self.premises), self.rule))

    def _body(self):
        names = ", ".join(_escape(p.label or p.kind) for p in self.premises)
        return "From %s, by: %s,%s" % (names, _escape(self.rule), _display(self.conclusion_tex))


class Given(Step):
    """A definition or hypothesis of the theorem (e.g. the definition of the operator norm).
    Shown as given; it is not a checked step and the report counts it separately."""

    kind = "Given"
    counts_as_proof = False

    def __init__(self, statement_tex: str, label="", why=""):
        super().__init__(label, why)
        self.statement_tex = statement_tex

    def _check(self):
        return StepResult(True, "given (definition or hypothesis; not checked)")

    def _body(self):
        return _display(self.statement_tex)


def _itemize(steps) -> str:
    if not steps:
        return ""
    items = "\n".join(r"\item %s" % s.latex() for s in steps)
    return "\\begin{itemize}\n%s\n\\end{itemize}" % items


# ---------------------------------------------------------------------------------------------
# Theorems
# ---------------------------------------------------------------------------------------------


@dataclass
class Result:
    """The outcome of :meth:`Theorem.prove`.

    * ``status``: ``"proved"`` or ``"failed"``; ``failed_step`` (1-based) and ``failed_label`` name
      the first failing step, ``detail`` says why;
    * ``crosscheck``: ``"passed"``, ``"failed: …"`` or ``"none"`` (never part of the proof);
    * ``steps``: the ``(label, StepResult)`` of every step run.
    """

    theorem: "Theorem"
    status: str
    steps: list = field(default_factory=list)
    failed_step: int | None = None
    failed_label: str | None = None
    detail: str = ""
    crosscheck: str = "none"
    seconds: float = 0.0

    @property
    def proved(self) -> bool:
        return self.status == "proved"

    def __str__(self):
        head = "%-4s %-44s %s" % (self.theorem.number, self.theorem.title[:44], self.status)
        if not self.proved:
            head += " at step %s (%s): %s" % (self.failed_step, self.failed_label, self.detail)
        return head + "  [cross-check: %s]" % self.crosscheck


class Theorem:
    """A statement, its proof steps and an optional numeric cross-check.

    * ``number``: catalogue number, e.g. ``"1"`` or ``"2d"``; ``title``: a short name;
    * ``statement``: the claim in LaTeX (text mode; maths in ``$…$``);
    * ``steps``: a list of :class:`Step`, checked in order;
    * ``crosscheck``: a callable that raises (e.g. ``AssertionError``) when the numbers disagree;
      ``crosscheck_doc`` says what it compares.
    """

    def __init__(self, number: str, title: str, statement: str, steps: Sequence[Step], *,
                 crosscheck: Callable[[], None] | None = None, crosscheck_doc: str = "", source: str = "", slug: str | None = None):
        if not steps:
            raise InvalidArgument("theorem %r has no steps; a proof needs at least one checked step" % title)
        self.number, self.title, self.statement = str(number), title, statement
        self.steps = list(steps)
        self.crosscheck_fn, self.crosscheck_doc, self.source = crosscheck, crosscheck_doc, source
        self.slug = slug or "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_")

    def __repr__(self):
        return "Theorem(%s, %r)" % (self.number, self.title)

    def prove(self, *, crosscheck: bool = True) -> Result:
        """Check every step in order; stop at the first failure.  Then run the cross-check."""
        t0 = time.perf_counter()
        res = Result(self, "proved")
        for i, s in enumerate(self.steps, start=1):
            r = s.check()
            res.steps.append((s.label or s.kind, r))
            if not r.ok:
                res.status, res.failed_step, res.failed_label, res.detail = "failed", i, s.label or s.kind, r.detail
                break
        if crosscheck and self.crosscheck_fn is not None:
            try:
                self.crosscheck_fn()
                res.crosscheck = "passed"
            except Exception as exc:  # report, never hide: the cross-check is independent evidence
                res.crosscheck = "failed: %s: %s" % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        res.seconds = time.perf_counter() - t0
        return res

    def latex(self, result: Result | None = None) -> str:
        """The theorem, its proof and its cross-check as a LaTeX section (deterministic)."""
        result = result if result is not None else self.prove(crosscheck=False)
        status = "proved: every step checked" if result.proved else "FAILED at step %s (%s)" % (result.failed_step, result.failed_label)
        out = [r"\section{%s}\label{thm:%s}" % (_escape(self.title), self.number)]
        if self.source:
            out.append(r"\noindent\emph{Source:} %s\par\smallskip" % _escape(self.source))
        out.append(r"\begin{theorem}[%s]" % self.number)
        out.append(self.statement)
        out.append(r"\end{theorem}")
        out.append(r"\noindent\emph{Status:} %s." % _escape(status))
        out.append(r"\begin{proof}")
        out.append(r"\begin{enumerate}")
        for s, (_, r) in zip(self.steps, result.steps + [(None, None)] * (len(self.steps) - len(result.steps))):
            mark = "" if r is None else (r"\emph{Checked:} %s." % _escape(r.detail) if r.ok else r"\emph{FAILED:} %s." % _escape(r.detail))
            if r is not None and not s.counts_as_proof:
                mark = r"\emph{Given, not checked.}"
            out.append(r"\item %s" % s.latex())
            if mark:
                out.append(r"\par{\small %s}" % mark)
        out.append(r"\end{enumerate}")
        out.append(r"\end{proof}")
        if self.crosscheck_doc:
            out.append(r"\noindent\emph{Numeric cross-check (not part of the proof):} %s" % _escape(self.crosscheck_doc))
        return "\n".join(out) + "\n"
