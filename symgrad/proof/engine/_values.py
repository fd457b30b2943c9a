"""Argument checks shared by the proof steps: SymPy objects, exact rationals and symbols from
what a caller passes; a string is refused and never sympified."""

from __future__ import annotations

import fractions
import numbers

import sympy

from symgrad.errors import InvalidArgument


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
