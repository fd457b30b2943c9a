"""symgrad's one error hierarchy.

Every exception symgrad raises on purpose is a :class:`SymgradError`.  Bad arguments raise
:class:`InvalidArgument` (also a :class:`ValueError`, so generic handlers still catch it), and a
failed numeric or symbolic check raises :class:`GradientCheckError` (also an
:class:`AssertionError`, so a failed check inside a test reads as a test failure).  A symbolic
computation that runs past its time budget raises :class:`BudgetExceeded`, whose ``reason`` the
callers that can answer "unknown" report instead.
"""

from __future__ import annotations

__all__ = ["SymgradError", "InvalidArgument", "GradientCheckError", "BudgetExceeded"]


class SymgradError(Exception):
    """Base class of every error symgrad raises deliberately."""


class InvalidArgument(SymgradError, ValueError):
    """An argument is invalid.  The message names the bad value and says how to fix it."""


class GradientCheckError(SymgradError, AssertionError):
    """Two computations of the same gradient disagree, or a claimed bound does not hold."""


class BudgetExceeded(SymgradError):
    """A symbolic computation ran past its time budget (or its recursion depth).

    ``reason`` says which computation and which limit; callers turn it into an "unknown" answer.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
