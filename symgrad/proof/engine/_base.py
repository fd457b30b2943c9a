"""The step protocol: :class:`Assumption` (what a proof rests on), :class:`StepResult`,
:class:`Step`, and the unchecked steps :class:`Given` and :class:`Hypothesis`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from symgrad._budget import BudgetExceeded, within_budget
from symgrad.errors import InvalidArgument
from symgrad.proof.engine._tex import _check_tex, _display, _escape
from symgrad.proof.engine._values import _show, _sym


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
