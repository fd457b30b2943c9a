"""Theorems: :class:`Theorem` (a statement and its checked steps), :class:`Result` (the outcome
of :meth:`Theorem.prove`) and :func:`assuming_text` (the status wording)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from symgrad.errors import InvalidArgument
from symgrad.proof.engine._base import Assumption, Given, Hypothesis, Step, _steps
from symgrad.proof.engine._tex import _check_tex, _escape, _itemize
from symgrad.proof.engine._values import _show


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
