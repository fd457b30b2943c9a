"""Steps made of steps: :class:`Induction` (base case and inductive step) and :class:`Implies`
(a named inference from checked premises, its rule stated and counted)."""

from __future__ import annotations

from typing import Sequence

from symgrad.errors import InvalidArgument
from symgrad.proof.engine._base import _KEYS, Assumption, Hypothesis, Step, StepResult, _steps, _union
from symgrad.proof.engine._tex import _check_tex, _display, _escape, _itemize, _tex
from symgrad.proof.engine._values import _show, _sym, _symbol


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
