r"""A small proof engine: theorems as sequences of exactly checked steps.

A :class:`Theorem` is a statement, a list of :class:`Step` objects and an optional numeric
cross-check.  :meth:`Theorem.prove` runs the steps in order and stops at the first one that
fails; the result says ``proved`` or ``failed`` and names the failing step.  The cross-check
(Hypothesis or the NumPy evaluator) is reported separately and never counts as a proof step.

*What a proof rests on* is counted the way Lean counts ``sorry``: every step's check returns,
besides ``ok``, the set of :class:`Assumption` s it rests on (each :class:`Given`, each
:class:`Implies` whose inference rule is stated rather than checked, and each hypothesis of a
:class:`Certificate` that no step establishes), propagated through every composite step.  An
:class:`Induction` discharges its induction hypothesis, and a :class:`Theorem` the hypotheses of
its own statement.  The status is ``"proved"`` only when nothing else is left; otherwise it is
``"proved assuming 1 given and 2 stated rules"``.  An inference without premises and a theorem
without a checked step are refused at construction.

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
  themselves steps; the rule itself is stated, not checked, and counted) and :class:`Given` (a
  fact assumed without proof, shown as such and counted); :class:`Hypothesis` is a premise of a
  theorem's or an induction's own statement, discharged by it.

Every expression argument must be a SymPy object or a number: strings are refused with
:class:`~symgrad.errors.InvalidArgument` (parse text with :func:`symgrad.spec._parse.parse_expression`),
so nothing a user typed ever reaches ``sympify``, ``eval`` or ``lambdify``.  Each check runs under
a time budget (:func:`symgrad._budget.within_budget`); a check that runs past it is ``unknown``.

>>> import sympy
>>> from symgrad.proof.engine import Certificate, Theorem
>>> x = sympy.Symbol("x", real=True)
>>> thm = Theorem("demo", "AM-GM", r"x^2 + 1 \ge 2x", [Certificate(x**2 + 1 - 2*x, (x - 1)**2)])
>>> thm.prove().status
'proved'
"""

from __future__ import annotations

import fractions
import itertools
import numbers
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Sequence

import mpmath
import sympy
from sympy import S

from symgrad._budget import BudgetExceeded, within_budget
from symgrad.spec.activations import ActivationPrime, sigmoid, softplus
from symgrad.errors import InvalidArgument

__all__ = [
    "Assumption",
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
    "Hypothesis",
    "Theorem",
    "Result",
    "peel_products",
    "interval_eval",
]


@dataclass(frozen=True)
class Assumption:
    """Something a proof rests on without checking it (Lean's ``sorry``).

    * ``kind``: ``"given"`` (a :class:`Given`, or a certificate hypothesis no step establishes),
      ``"hypothesis"`` (a :class:`Hypothesis`; discharged by the theorem or induction that
      declares it, counted as a given otherwise) or ``"rule"`` (the stated rule of an
      :class:`Implies`);
    * ``label`` and ``statement``: what it says; ``key``: which step made it (two assumptions with
      the same words made by different steps are different assumptions)."""

    kind: str
    label: str
    statement: str
    key: int

    @property
    def is_rule(self) -> bool:
        return self.kind == "rule"


_KEYS = itertools.count(1)


@dataclass(frozen=True)
class StepResult:
    """Outcome of one step: ``ok``, a deterministic one-line ``detail`` (what decided it), and
    ``rests_on``: the :class:`Assumption` s the step (with everything inside it) rests on.
    ``unknown``: the check ran past its budget, so it neither passed nor failed."""

    ok: bool
    detail: str
    rests_on: frozenset = frozenset()
    unknown: bool = False


def _show(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sym(value, what: str):
    """A SymPy object from ``value``: SymPy objects and real numbers only.  A string is refused,
    never sympified (``sympify`` calls ``eval``)."""
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, str):
        raise InvalidArgument("%s: got the string %s; pass a SymPy expression or a number "
                              "(parse text with symgrad.spec._parse.parse_expression)" % (what, _show(value)))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return sympy.sympify(value)  # an int, float, Fraction or NumPy scalar: no parsing involved
    raise InvalidArgument("%s: %s (a %s) is not a SymPy expression or a real number" % (what, _show(value), type(value).__name__))


def _rat(value, what: str) -> sympy.Rational:
    """An exact Rational from an int, a Fraction or a SymPy Rational (not a float or a string)."""
    if isinstance(value, sympy.Rational):
        return value
    if isinstance(value, (int, fractions.Fraction)) and not isinstance(value, bool):
        return sympy.Rational(value.numerator, value.denominator)
    raise InvalidArgument("%s: %s is not an exact rational; pass an int or sympy.Rational('1.25')" % (what, _show(value)))


def _symbol(value, what: str) -> sympy.Symbol:
    if not isinstance(value, sympy.Symbol):
        raise InvalidArgument("%s: %s is not a SymPy Symbol; pass sympy.Symbol('x', real=True)" % (what, _show(value)))
    return value


def _steps(values, what: str) -> list:
    if isinstance(values, (str, Step)):
        raise InvalidArgument("%s must be a list of steps, not %s" % (what, _show(values)))
    out = list(values)
    bad = [v for v in out if not isinstance(v, Step)]
    if bad:
        raise InvalidArgument("%s: %s is not a Step" % (what, _show(bad[0])))
    return out


def _union(results) -> frozenset:
    out = frozenset()
    for r in results:
        out |= r.rests_on
    return out


def _tex(e) -> str:
    if isinstance(e, str):
        return e
    out = sympy.latex(e)
    if _UNSAFE_MATH.search(out) or not _balanced(out):  # a symbol or function named like a TeX command
        return r"\text{%s}" % _text(str(e))
    return out


def _check_tex(tex, what: str):
    """LaTeX given by the caller (a statement, a display): refused when it reads or writes files,
    defines commands, or has unbalanced braces, since symgrad's documents do none of that."""
    if tex is None:
        return None
    if not isinstance(tex, str):
        raise InvalidArgument("%s must be LaTeX text, not %s" % (what, _show(tex)))
    bad = _UNSAFE_MATH.search(tex)
    if bad:
        raise InvalidArgument("%s uses %s; symgrad's LaTeX reads no file and defines no command" % (what, bad.group(0)))
    if not _balanced(tex.replace(r"\%", "").replace(r"\#", "")):
        raise InvalidArgument("%s has unbalanced braces or a bare %% or #: %s" % (what, _show(tex)))
    return tex


class Step:
    """One checked step.  Subclasses implement :meth:`_check` and :meth:`_body`.

    * ``label``: a short name ("σ' in closed form") used in reports and failure messages;
    * ``why``: one sentence for the reader of the LaTeX.
    """

    kind = "step"
    counts_as_proof = True
    #: Time budget of one check, in seconds (SymPy's simplify, solveset and limit have none).
    budget_seconds = 120.0

    def __init__(self, label: str = "", why: str = ""):
        if not isinstance(label, str) or not isinstance(why, str):
            raise InvalidArgument("a step's label and why must be text, got %s and %s" % (_show(label), _show(why)))
        self.label = label
        self.why = why
        self._result: StepResult | None = None

    def check(self) -> StepResult:
        """Run the check once (the result is cached: steps are immutable once built), under the
        time budget; a check that runs past it is ``unknown``, one that crashes has failed."""
        if self._result is None:
            try:
                self._result = within_budget(self._check, seconds=self.budget_seconds, what="the check of %s" % (self.label or self.kind))
            except BudgetExceeded as exc:
                self._result = StepResult(False, "unknown: %s" % exc.reason, unknown=True)
            except Exception as exc:  # a check that crashes has not proved anything
                self._result = StepResult(False, "check raised %s: %s" % (type(exc).__name__, exc))
        return self._result

    def checks_something(self) -> bool:
        """Whether the step checks anything itself (a :class:`Given` does not, nor an inference
        or induction made only of givens)."""
        return self.counts_as_proof

    def establishes(self):
        """``(expr, strict)`` when the step shows ``expr ≥ 0`` (``> 0`` if strict), else None: what
        a :class:`Certificate` hypothesis may be linked to."""
        return None

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
    "—": "---", "–": "--", "×": r"$\times$", ">": "$>$", "<": "$<$", "|": "$|$", "$": r"\$",
}


#: TeX commands a ``$…$`` span of a label may not use (file access, definitions, shell): such a span is printed as text.
_UNSAFE_MATH = re.compile(r"\\(input|include|openin|openout|read|readline|write|immediate|catcode|def|edef|gdef|xdef|let|futurelet|"
                          r"csname|special|newcommand|renewcommand|providecommand|usepackage|documentclass|endinput|"
                          r"makeatletter|makeatother|expandafter|directlua|jobname|outer|long|global)(?![A-Za-z])"
                          r"|\\(begin|end)(?![A-Za-z])(?!\{(p|b|v|V|B|small)?matrix\}|\{cases\}|\{array\}|\{aligned\})")


def _balanced(tex: str) -> bool:
    depth, i = 0, 0
    while i < len(tex):
        c = tex[i]
        if c == "\\":
            i += 2
            continue
        if c in "%#":  # a comment would swallow the closing $; a parameter has no meaning here
            return False
        depth += (c == "{") - (c == "}")
        if depth < 0:
            return False
        i += 1
    return depth == 0


def _text(p: str) -> str:
    p = p.replace(">=", "≥").replace("<=", "≤").replace("->", "→")
    out = []
    for c in p:
        if c in _TEXT_MAP:
            out.append(_TEXT_MAP[c])
        elif c < " " or c == "\x7f":
            out.append(" ")
        elif c > "~":  # other non-ASCII: transliterate (é → e), or a visible placeholder
            folded = unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode("ascii")
            out.append("".join(_TEXT_MAP.get(x, x) for x in folded) if folded.strip() else "?")
        else:
            out.append(c)
    return "".join(out)


def _escape(text: str) -> str:
    """Plain text to LaTeX text: every special character is escaped and other Unicode is
    transliterated; ``$…$`` spans are kept as maths when they are balanced and use no file,
    definition or shell command (otherwise they are printed as text, dollars included)."""
    out, pos = [], 0
    for m in re.finditer(r"\$([^$]*)\$", text):
        out.append(_text(text[pos:m.start()]))
        body = m.group(1)
        if body and not _UNSAFE_MATH.search(body) and _balanced(body) and all(" " <= c <= "~" for c in body):
            out.append("$" + body + "$")
        else:
            out.append(r"\$" + _text(body) + r"\$")
        pos = m.end()
    out.append(_text(text[pos:]))
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


# ---------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------


class Induction(Step):
    """A statement for every integer ``var ≥ start``: the base case and the inductive step
    (``var → var + 1``, assuming the statement at ``var``) are each a non-empty list of steps.

    * ``induction_hypothesis``: :class:`Hypothesis` steps that state the claim at ``var`` (what the
      inductive step may assume); the induction discharges them in the inductive step only, so a
      base case that leans on one still counts it as a given;
    * ``premises``: :class:`Hypothesis` steps that are premises of the claim itself ("when every
      x_i ≤ b"), discharged in both parts.

    Everything else the parts rest on propagates to the induction."""

    kind = "Induction"

    def __init__(self, var, start, base: Sequence[Step], step: Sequence[Step], label="", why="", *, statement_tex="",
                 induction_hypothesis: Sequence["Hypothesis"] = (), premises: Sequence["Hypothesis"] = ()):
        super().__init__(label, why)
        self.var, self.start = _symbol(var, "Induction var"), _sym(start, "Induction start")
        self.base, self.step = _steps(base, "Induction base"), _steps(step, "Induction step")
        if not self.base or not self.step:
            raise InvalidArgument("induction %r needs a base case and an inductive step, each at least one step" % (label or statement_tex))
        self.ih, self.premises = _steps(induction_hypothesis, "induction_hypothesis"), _steps(premises, "premises")
        for h in self.ih + self.premises:
            if not isinstance(h, Hypothesis):
                raise InvalidArgument("induction %r: %s must be a Hypothesis to be discharged" % (label, _show(h)))
        self.statement_tex = _check_tex(statement_tex, "statement_tex")

    def checks_something(self) -> bool:
        return any(s.checks_something() for s in self.base + self.step)

    def _check(self):
        rests = frozenset()
        premises = {h.assumption for h in self.premises}
        ih = {h.assumption for h in self.ih}
        for part, steps, discharged in (("base case", self.base, premises), ("inductive step", self.step, premises | ih)):
            for s in steps:
                r = s.check()
                if not r.ok:
                    return StepResult(False, "%s, %s: %s" % (part, s.label or s.kind, r.detail), unknown=r.unknown)
                rests |= r.rests_on - discharged
        return StepResult(True, "base case (%d steps) and inductive step (%d steps) checked" % (len(self.base), len(self.step)), rests)

    def _body(self):
        v = _tex(self.var)
        out = []
        if self.statement_tex:
            out.append("Claim, for every integer $%s \\ge %s$:%s" % (v, _tex(self.start), _display(self.statement_tex)))
        if self.premises:
            out.append(r"\emph{Premises of the claim} (discharged by it):")
            out.append(_itemize(self.premises))
        out.append(r"\emph{Base case} $%s = %s$:" % (v, _tex(self.start)))
        out.append(_itemize(self.base))
        out.append(r"\emph{Inductive step} $%s \to %s + 1$ (assuming the claim at $%s$):" % (v, v, v))
        if self.ih:
            out.append(r"\emph{Induction hypothesis} (discharged by the induction):")
            out.append(_itemize(self.ih))
        out.append(_itemize(self.step))
        return "\n".join(out)


class Implies(Step):
    """A named inference (``rule``, e.g. "a function with negative derivative decreases") from
    ``premises``, themselves steps, to ``conclusion_tex``.  Fails if any premise fails.

    The rule is stated, not checked: the inference counts as one *stated rule* among the
    assumptions, besides everything its premises rest on.  An inference needs at least one
    premise and a rule (:class:`~symgrad.errors.InvalidArgument` otherwise).  ``expr`` (with
    ``strict``) states the conclusion symbolically as ``expr ≥ 0`` (``> 0``), so that a
    :class:`Certificate` hypothesis can be linked to it."""

    kind = "Inference"
    counts_as_proof = False

    def __init__(self, premises: Sequence[Step], conclusion_tex: str, label="", why="", *, rule="", expr=None, strict=False):
        super().__init__(label, why)
        self.premises, self.rule = _steps(premises, "Implies premises"), rule
        self.conclusion_tex = _check_tex(conclusion_tex, "conclusion_tex")
        self.expr = None if expr is None else _sym(expr, "Implies expr")
        self.strict = bool(strict)
        if not self.premises:
            raise InvalidArgument("inference %r has no premises; name the checked steps it follows from, "
                                  "or state it as a Given" % (label or conclusion_tex))
        if not (isinstance(rule, str) and rule.strip()):
            raise InvalidArgument("inference %r states no rule; pass rule='...' (the reason the conclusion follows)" % (label or conclusion_tex))
        self.assumption = Assumption("rule", label or "inference", rule, next(_KEYS))

    def checks_something(self) -> bool:
        return any(p.checks_something() for p in self.premises)

    def establishes(self):
        return None if self.expr is None else (self.expr, self.strict)

    def _check(self):
        results = []
        for p in self.premises:
            r = p.check()
            if not r.ok:
                return StepResult(False, "premise %s failed: %s" % (p.label or p.kind, r.detail), unknown=r.unknown)
            results.append(r)
        return StepResult(True, "all %d premises checked; the rule is stated, not checked: %s" % (len(self.premises), self.rule),
                          _union(results) | {self.assumption})

    def _body(self):
        names = ", ".join(_escape(p.label or p.kind) for p in self.premises)
        return "From %s, by the stated rule: %s,%s" % (names, _escape(self.rule), _display(self.conclusion_tex))


class Given(Step):
    """A fact assumed without proof (e.g. the definition of the operator norm).  Shown as given;
    it checks nothing, and every proof that uses it is reported as resting on it.

    ``expr`` (with ``strict``) states it symbolically as ``expr ≥ 0`` (``> 0``), so that a
    :class:`Certificate` hypothesis can be linked to it with ``by=``."""

    kind = "Given"
    counts_as_proof = False
    _assumption_kind = "given"

    def __init__(self, statement_tex: str, label="", why="", *, expr=None, strict=False):
        super().__init__(label, why)
        if not isinstance(statement_tex, str):
            raise InvalidArgument("%s statement must be LaTeX text, not %s" % (self.kind, _show(statement_tex)))
        self.statement_tex = _check_tex(statement_tex, "statement_tex")
        self.expr = None if expr is None else _sym(expr, "%s expr" % self.kind)
        self.strict = bool(strict)
        self.assumption = Assumption(self._assumption_kind, label or self.kind, statement_tex, next(_KEYS))

    def establishes(self):
        return None if self.expr is None else (self.expr, self.strict)

    def _check(self):
        return StepResult(True, "given (assumed; not checked)", frozenset({self.assumption}))

    def _body(self):
        return _display(self.statement_tex)


class Hypothesis(Given):
    """A premise of a statement: of the theorem's (``Theorem(..., hypotheses=[h])``, e.g.
    ``|w_j| ≤ 1``) or of an induction's claim (the induction hypothesis).  The statement that
    declares it discharges it, as Lean's ``intro`` does; anywhere else it counts as a given."""

    kind = "Hypothesis"
    _assumption_kind = "hypothesis"

    def _check(self):
        return StepResult(True, "hypothesis of the statement (assumed where the statement declares it)", frozenset({self.assumption}))


def _itemize(steps) -> str:
    if not steps:
        return ""
    items = "\n".join(r"\item %s" % s.latex() for s in steps)
    return "\\begin{itemize}\n%s\n\\end{itemize}" % items


# ---------------------------------------------------------------------------------------------
# Theorems
# ---------------------------------------------------------------------------------------------


def assuming_text(n_given: int, n_rules: int) -> str:
    """``"proved"``, or ``"proved assuming 1 given and 2 stated rules"``: the status wording that
    ``symgrad prove``, ``proofs/`` and the README table share."""
    parts = []
    if n_given:
        parts.append("%d given%s" % (n_given, "" if n_given == 1 else "s"))
    if n_rules:
        parts.append("%d stated rule%s" % (n_rules, "" if n_rules == 1 else "s"))
    return "proved" if not parts else "proved assuming " + " and ".join(parts)


def _assumption_order(a: Assumption):
    return (a.is_rule, a.label, a.statement, a.key)


@dataclass
class Result:
    """The outcome of :meth:`Theorem.prove`.

    * ``status``: ``"proved"`` (every step checked and nothing assumed), ``"proved assuming 1 given
      and 2 stated rules"`` (every step checked, resting on those), ``"failed"`` or ``"unknown"``
      (a check ran past its budget); ``failed_step`` (1-based) and ``failed_label`` name the first
      step that did not pass, ``detail`` says why;
    * ``assumptions``: what the proof rests on (:class:`Assumption` s, givens first), after the
      theorem's own hypotheses are discharged; ``givens`` and ``rules`` split them;
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
    assumptions: tuple = ()

    @property
    def proved(self) -> bool:
        """Proved outright: every step checked and nothing assumed."""
        return self.status == "proved"

    @property
    def checked(self) -> bool:
        """Every step checked (the proof may still rest on givens and stated rules)."""
        return self.status.startswith("proved")

    @property
    def givens(self) -> tuple:
        return tuple(a for a in self.assumptions if not a.is_rule)

    @property
    def rules(self) -> tuple:
        return tuple(a for a in self.assumptions if a.is_rule)

    def __str__(self):
        head = "%-4s %-44s %s" % (self.theorem.number, self.theorem.title[:44], self.status)
        if not self.checked:
            head += " at step %s (%s): %s" % (self.failed_step, self.failed_label, self.detail)
        elif self.assumptions:
            head += " (%s)" % "; ".join("%s: %s" % ("rule" if a.is_rule else "given", a.label) for a in self.assumptions)
        return head + "  [cross-check: %s]" % self.crosscheck


class Theorem:
    """A statement, its proof steps and an optional numeric cross-check.

    * ``number``: catalogue number, e.g. ``"1"`` or ``"2d"``; ``title``: a short name;
    * ``statement``: the claim in LaTeX (text mode; maths in ``$…$``);
    * ``steps``: a list of :class:`Step`, checked in order; at least one must check something
      (a theorem made only of givens is refused);
    * ``hypotheses``: :class:`Hypothesis` steps that are premises of the statement ("if
      ``|w_j| ≤ 1``"); the theorem discharges them and the LaTeX lists them;
    * ``crosscheck``: a callable that raises (e.g. ``AssertionError``) when the numbers disagree;
      ``crosscheck_doc`` says what it compares.
    """

    def __init__(self, number: str, title: str, statement: str, steps: Sequence[Step], *, hypotheses: Sequence[Hypothesis] = (),
                 crosscheck: Callable[[], None] | None = None, crosscheck_doc: str = "", source: str = "", slug: str | None = None):
        self.number, self.title = str(number), title
        steps = _steps(steps, "theorem %r steps" % (title,))
        if not steps:
            raise InvalidArgument("theorem %r has no steps; a proof needs at least one checked step" % title)
        if not any(s.checks_something() for s in steps):
            raise InvalidArgument("theorem %r checks nothing: its steps are only givens (or inferences from givens); "
                                  "add a checked step (Identity, Certificate, Solve, ...)" % title)
        self.hypotheses = _steps(hypotheses, "theorem %r hypotheses" % (title,))
        for h in self.hypotheses:
            if not isinstance(h, Hypothesis):
                raise InvalidArgument("theorem %r: hypothesis %s must be a Hypothesis" % (title, _show(h)))
        self.number, self.title, self.statement = str(number), title, _check_tex(statement, "statement")
        self.steps = steps
        self.crosscheck_fn, self.crosscheck_doc, self.source = crosscheck, crosscheck_doc, source
        self.slug = slug or "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_")

    def __repr__(self):
        return "Theorem(%s, %r)" % (self.number, self.title)

    def prove(self, *, crosscheck: bool = True) -> Result:
        """Check every step in order; stop at the first failure.  Then run the cross-check."""
        t0 = time.perf_counter()
        res = Result(self, "proved")
        rests = frozenset()
        for i, s in enumerate(self.steps, start=1):
            r = s.check()
            res.steps.append((s.label or s.kind, r))
            if not r.ok:
                res.status = "unknown" if r.unknown else "failed"
                res.failed_step, res.failed_label, res.detail = i, s.label or s.kind, r.detail
                break
            rests |= r.rests_on
        if res.status == "proved":
            rests -= {h.assumption for h in self.hypotheses}
            res.assumptions = tuple(sorted(rests, key=_assumption_order))
            res.status = assuming_text(len(res.givens), len(res.rules))
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
        if result.proved:
            status = "proved: every step checked, nothing assumed"
        elif result.checked:
            status = "%s; every step checked" % result.status
        else:
            status = "%s at step %s (%s)" % (result.status.upper(), result.failed_step, result.failed_label)
        out = [r"\section{%s}\label{thm:%s}" % (_escape(self.title), self.number)]
        if self.source:
            out.append(r"\noindent\emph{Source:} %s\par\smallskip" % _escape(self.source))
        out.append(r"\begin{theorem}[%s]" % self.number)
        out.append(self.statement)
        out.append(r"\end{theorem}")
        out.append(r"\noindent\emph{Status:} %s." % _escape(status))
        if self.hypotheses:
            out.append(r"\par\noindent\emph{Hypotheses of the statement} (the theorem assumes them by its statement):")
            out.append(_itemize(self.hypotheses))
        if result.checked and result.assumptions:
            out.append(r"\par\noindent\emph{The proof rests on} (not checked):")
            items = [r"\item %s ``%s'': %s" % ("stated rule" if a.is_rule else "given", _escape(a.label),
                                                 _escape(a.statement) if a.is_rule else "$%s$" % a.statement)
                     for a in result.assumptions]
            out.append("\\begin{itemize}\n%s\n\\end{itemize}" % "\n".join(items))
        out.append(r"\begin{proof}")
        out.append(r"\begin{enumerate}")
        for s, (_, r) in zip(self.steps, result.steps + [(None, None)] * (len(self.steps) - len(result.steps))):
            if r is None:
                mark = ""
            elif isinstance(s, Given):
                mark = r"\emph{%s, not checked.}" % ("Hypothesis" if isinstance(s, Hypothesis) else "Given")
            else:
                mark = r"\emph{%s:} %s." % ("Checked" if r.ok else result.status.upper(), _escape(r.detail))
            out.append(r"\item %s" % s.latex())
            if mark:
                out.append(r"\par{\small %s}" % mark)
        out.append(r"\end{enumerate}")
        out.append(r"\end{proof}")
        if self.crosscheck_doc:
            out.append(r"\noindent\emph{Numeric cross-check (not part of the proof):} %s" % _escape(self.crosscheck_doc))
        return "\n".join(out) + "\n"
