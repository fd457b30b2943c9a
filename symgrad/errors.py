"""symgrad's one error hierarchy.

Every exception symgrad raises on purpose is a :class:`SymgradError`.  Bad arguments raise
:class:`InvalidArgument` (also a :class:`ValueError`, so generic handlers still catch it), and a
failed numeric or symbolic check raises :class:`GradientCheckError` (also an
:class:`AssertionError`, so a failed check inside a test reads as a test failure).  A symbolic
computation that runs past its time budget raises :class:`BudgetExceeded`, whose ``reason`` the
callers that can answer "unknown" report instead.  Rendering a PDF that fails raises
:class:`LatexError`; a gradient check in a precision too low for tight finite differences warns
with :class:`PrecisionWarning`.  Every public exception and warning class of the package lives
here (the modules that raise them import them from this one).

>>> from symgrad.errors import InvalidArgument, SymgradError
>>> issubclass(InvalidArgument, ValueError) and issubclass(InvalidArgument, SymgradError)
True
"""

from __future__ import annotations

__all__ = ["SymgradError", "InvalidArgument", "GradientCheckError", "BudgetExceeded", "LatexError", "PrecisionWarning"]


class SymgradError(Exception):
    """Base class of every error symgrad raises deliberately.

    >>> import symgrad
    >>> try:
    ...     symgrad.chain(0)
    ... except symgrad.SymgradError as exc:
    ...     print(type(exc).__name__)
    InvalidArgument
    """


class InvalidArgument(SymgradError, ValueError):
    """An argument is invalid.  The message names the bad value and says how to fix it.

    >>> import symgrad
    >>> symgrad.chain(2.0)
    Traceback (most recent call last):
    ...
    symgrad.errors.InvalidArgument: depth=2.0 must be an int, not a float; pass depth=2
    """


class GradientCheckError(SymgradError, AssertionError):
    """Two computations of the same gradient disagree, or a claimed bound does not hold.

    Also an :class:`AssertionError`, so a failed check inside a test reads as a test failure.

    >>> issubclass(GradientCheckError, AssertionError)
    True
    """


class BudgetExceeded(SymgradError):
    """A symbolic computation ran past its time budget (or its recursion depth).

    ``reason`` says which computation and which limit; callers turn it into an "unknown" answer.

    >>> BudgetExceeded("doit() of dC/db1 ran past 1 s").reason
    'doit() of dC/db1 ran past 1 s'
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LatexError(SymgradError):
    """pdflatex is missing, failed, or set a line wider than the page (:mod:`symgrad.render.latex`).

    >>> issubclass(LatexError, SymgradError)
    True
    """


class PrecisionWarning(UserWarning):
    """A gradient check runs in a precision too low for tight finite differences (float32).

    Raised as a warning by :func:`symgrad.testing.check_gradients`; also importable as
    ``symgrad.testing.PrecisionWarning``.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("float32: loose finite differences", PrecisionWarning)
    >>> w[0].category.__name__
    'PrecisionWarning'
    """
