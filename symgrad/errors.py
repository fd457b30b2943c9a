"""symgrad's one error hierarchy.

Every exception symgrad raises on purpose is a :class:`SymgradError`.  Bad arguments raise
:class:`InvalidArgument` (also a :class:`ValueError`, so generic handlers still catch it), and a
failed numeric or symbolic check raises :class:`GradientCheckError` (also an
:class:`AssertionError`, so a failed check inside a test reads as a test failure).
"""

from __future__ import annotations

__all__ = ["SymgradError", "InvalidArgument", "GradientCheckError"]


class SymgradError(Exception):
    """Base class of every error symgrad raises deliberately."""


class InvalidArgument(SymgradError, ValueError):
    """An argument is invalid.  The message names the bad value and says how to fix it."""


class GradientCheckError(SymgradError, AssertionError):
    """Two computations of the same gradient disagree, or a claimed bound does not hold."""
