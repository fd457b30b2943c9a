"""Steps checked by exact symbolic computation: :class:`Identity`, :class:`ExactValue`,
:class:`Certificate` (an inequality by a structurally nonnegative witness), :class:`Solve` and
:class:`Limit`, with :func:`peel_products` (the recursive definition of Π)."""

from __future__ import annotations

import sympy
from sympy import S

from symgrad.errors import InvalidArgument
from symgrad.proof.engine._base import _KEYS, Assumption, Given, Hypothesis, Step, StepResult
from symgrad.proof.engine._tex import _check_tex, _display, _escape, _tex
from symgrad.proof.engine._values import _show, _sym, _symbol
from symgrad.spec.activations import ActivationPrime, sigmoid, softplus


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
        self.lhs, self.rhs = _sym(lhs, "Identity lhs"), _sym(rhs, "Identity rhs")
        self.peel = peel
        self.lhs_tex, self.rhs_tex = _check_tex(lhs_tex, "lhs_tex"), _check_tex(rhs_tex, "rhs_tex")

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
    if e.is_Add and len(e.args) == 2:
        # exp(x) − c with 0 < c ≤ 1 and x manifestly ≥ 0: exp(x) ≥ 1 ≥ c (exp increases), > 0 when x > 0 or c < 1.
        c, t = e.as_coeff_Add()
        if isinstance(t, sympy.exp) and c.is_Rational and -1 <= c < 0:
            sx = _sign(t.args[0], pos, nonneg)
            if sx == _POS or (sx == _NONNEG and c > -1):
                return _POS
            if sx == _NONNEG:
                return _NONNEG
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
    if isinstance(e, sympy.atanh):
        # Odd and increasing, but real only on (−1, 1): atanh(2) is 0.549 − 1.571i, not ≥ 0.
        if _sign(1 - e.args[0] ** 2, pos, nonneg) != _POS:
            return 0
        return _sign(e.args[0], pos, nonneg)
    if isinstance(e, (sympy.tanh, sympy.erf)):  # odd and increasing: sign of the argument
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
    hypothesis symbols, which carry ``nonnegative=True`` or ``positive=True``.

    Each hypothesis ``h = e ≥ 0`` (``> 0`` for a positive ``h``) is linked by ``by={h: step}`` to
    the step that establishes it: a :class:`Certificate` of ``e ≥ 0`` (strict if ``h`` is
    positive), or a :class:`Given` / :class:`Hypothesis` stated with ``expr=e``.  The link is
    checked (the two expressions must agree exactly) and the linked step's assumptions are
    inherited.  A hypothesis without a link is counted as a given of its own.

    >>> import sympy
    >>> x = sympy.Symbol("x", real=True)
    >>> Certificate(x**2 - 2*x + 1, (x - 1)**2).check().ok
    True
    """

    kind = "Certificate"

    def __init__(self, expr, witness, label="", why="", *, strict=False, where=None, by=None, expr_tex=None):
        super().__init__(label, why)
        self.expr, self.witness = _sym(expr, "Certificate expr"), _sym(witness, "Certificate witness")
        self.strict = bool(strict)
        self.where = {h: _sym(e, "Certificate hypothesis %s" % (h,)) for h, e in dict(where or {}).items()}
        for h in self.where:
            if not (isinstance(h, sympy.Symbol) and (h.is_nonnegative or h.is_positive)):
                raise InvalidArgument("hypothesis %r must be a Symbol declared nonnegative=True or positive=True" % (h,))
        self.by = dict(by or {})
        for h, st in self.by.items():
            if h not in self.where:
                raise InvalidArgument("by=: %s is not a hypothesis in where=; link only the symbols of where=" % (h,))
            if not isinstance(st, Step) or st is self:
                raise InvalidArgument("by=: the hypothesis %s must be linked to another Step, not %s" % (h, _show(st)))
        # An unlinked hypothesis is an assumption of its own.
        self._unlinked = {h: Assumption("given", "hypothesis $%s$" % _tex(h), self._hyp_tex(h), next(_KEYS))
                          for h in self.where if h not in self.by}
        self.expr_tex = _check_tex(expr_tex, "expr_tex")

    def _hyp_tex(self, h) -> str:
        return "%s = %s %s 0" % (_tex(h), _tex(self.where[h]), ">" if h.is_positive else r"\ge")

    def establishes(self):
        return (self.expr, self.strict)

    def _links(self):
        """Check each ``by`` link; return (None, assumptions) or (failure detail, None)."""
        rests = frozenset(self._unlinked.values())
        for h, st in self.by.items():
            est = st.establishes()
            name = st.label or st.kind
            if est is None:
                return "hypothesis %s is linked to %s, which states no inequality" % (h, name), None
            e, strict = est
            if h.is_positive and not strict:
                return "hypothesis %s > 0 is linked to %s, which shows only %s >= 0" % (h, name, e), None
            if _reduces_to_zero(e - self.where[h]) is None:
                return "hypothesis %s = %s is linked to %s, which shows %s instead" % (h, self.where[h], name, e), None
            r = st.check()
            if not r.ok:
                return "hypothesis %s: its step %s failed: %s" % (h, name, r.detail), None
            rests |= r.rests_on
        return None, rests

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
        bad, rests = self._links()
        if bad:
            return StepResult(False, bad)
        linked = " and %d linked hypothes%s" % (len(self.by), "is" if len(self.by) == 1 else "es") if self.by else ""
        return StepResult(True, "expr = witness (%s) and the witness is manifestly %s%s" % (how, "positive" if self.strict else "nonnegative", linked), rests)

    def _body(self):
        rel = ">" if self.strict else r"\ge"
        text = _display(r"%s = %s %s 0" % (self.expr_tex or _tex(self.expr), _tex(self.witness), rel))
        if self.where:
            hyps = []
            for h in self.where:
                st = self.by.get(h)
                kind = "hypothesis" if isinstance(st, Hypothesis) else "given" if isinstance(st, Given) else "step"
                src = "assumed" if st is None else "by the %s ``%s''" % (kind, _escape(st.label or st.kind))
                hyps.append("$%s$ (%s)" % (self._hyp_tex(h), src))
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
            hit = next((y for y in rest if _reduces_to_zero(x - y) is not None), None)
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
        self.equation, self.var = _sym(equation, "Solve equation"), _symbol(var, "Solve var")
        self.expected, self.domain = _sym(expected, "Solve expected"), _sym(domain, "Solve domain")
        if not isinstance(self.expected, sympy.Set) or not isinstance(self.domain, sympy.Set):
            raise InvalidArgument("Solve: expected and domain must be SymPy sets, e.g. sympy.FiniteSet(0) and sympy.S.Reals")
        self.eq_tex = _check_tex(eq_tex, "eq_tex")

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
        self.expr, self.var = _sym(expr, "Limit expr"), _symbol(var, "Limit var")
        self.point, self.expected = _sym(point, "Limit point"), _sym(expected, "Limit expected")

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
