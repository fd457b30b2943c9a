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

The package, by topic (import the names from here): ``_base`` (:class:`Assumption`,
:class:`StepResult`, :class:`Step`, :class:`Given`, :class:`Hypothesis`), ``exact`` (identities,
exact values, certificates, ``solveset``, limits), ``intervals`` (interval arithmetic),
``structure`` (:class:`Induction`, :class:`Implies`), ``theorem`` (:class:`Theorem`,
:class:`Result`, :func:`assuming_text`); ``_values`` checks arguments and ``_tex`` escapes text
and refuses unsafe LaTeX.

>>> import sympy
>>> from symgrad.proof.engine import Certificate, Theorem
>>> x = sympy.Symbol("x", real=True)
>>> thm = Theorem("demo", "AM-GM", r"x^2 + 1 \ge 2x", [Certificate(x**2 + 1 - 2*x, (x - 1)**2)])
>>> thm.prove().status
'proved'
"""

from __future__ import annotations

from symgrad.proof.engine._base import Assumption, Given, Hypothesis, Step, StepResult
from symgrad.proof.engine._tex import _escape as _escape  # re-exported: the tests check the escaping
from symgrad.proof.engine.exact import Certificate, ExactValue, Identity, Limit, Solve, peel_products
from symgrad.proof.engine.intervals import CertifiedRoot, Enclosure, interval_eval
from symgrad.proof.engine.structure import Implies, Induction
from symgrad.proof.engine.theorem import Result, Theorem
from symgrad.proof.engine.theorem import assuming_text as assuming_text  # public, though not in __all__ (as before)

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
