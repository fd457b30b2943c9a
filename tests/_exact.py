"""Exact-equality helpers shared by the symbolic tests (no floats involved)."""

from __future__ import annotations

import random

import sympy


def random_rationals(symbols, seed: int, nonzero: bool = True) -> dict:
    """A point with small random rational coordinates, e.g. {w1: -3/7, b1: 5/2, ...}."""
    rng = random.Random(seed)
    point = {}
    for s in symbols:
        while True:
            q = sympy.Rational(rng.randint(-9, 9), rng.randint(1, 7))
            if q != 0 or not nonzero:
                break
        point[s] = q
    return point


def _canonical(arg):
    """Expanded form of an atom's argument when that is cheap; SymPy's own canonical
    (already sorted and flattened) form otherwise, where expanding nested products would blow up."""
    return sympy.expand(arg) if sympy.count_ops(arg) <= 40 else arg


def _atomize(expr, table: dict):
    """Replace every function application (σ, exp, erf, tanh, Heaviside, Abs, …) by a fresh
    symbol, innermost first, with each argument put in canonical (expanded) form, so equal atoms
    written differently become the same symbol."""
    if expr.is_Atom:
        return expr
    args = [_atomize(a, table) for a in expr.args]
    if isinstance(expr, (sympy.Function, sympy.Pow)) and not (isinstance(expr, sympy.Pow) and expr.exp.is_Integer):
        if isinstance(expr, sympy.Pow) and not expr.exp.is_Rational:
            key = sympy.exp(_canonical(expr.exp * sympy.log(args[0])))
        else:
            key = expr.func(*[_canonical(a) for a in args])
        if key.is_number and key.is_Rational:
            return key
        if key not in table:
            table[key] = sympy.Dummy("atom%d" % len(table))
        return table[key]
    return expr.func(*args)


def is_exactly_zero(expr) -> bool:
    """True when ``expr`` is identically zero as a rational function of its function atoms
    (σ(q), exp(q), erf(q), … with their arguments in canonical form).  Deciding a rational
    function identity with ``cancel`` is exact; no number is ever rounded.  (A False can only
    mean "not shown equal": atoms are treated as independent.)"""
    if expr == 0:
        return True
    return sympy.cancel(sympy.together(_atomize(expr, {}))) == 0


def assert_exactly_equal(a, b, symbols, points: int = 2, seed: int = 0) -> None:
    """``a == b`` exactly at ``points`` random rational points of ``symbols``: after the
    substitution, what is left is decided as a rational-function identity in the remaining
    transcendental atoms (σ(q), erf(q), exp(q), …), which is exact.  Use on shallow expressions
    (see :func:`assert_chain_gradient_matches_diff`); SymPy is slow to substitute numbers into
    deeply nested transcendental ones."""
    diff = a - b
    for k in range(points):
        pt = random_rationals(symbols, seed + k)
        value = diff.xreplace(pt)
        assert is_exactly_zero(value), "not equal at %s: difference %.300s" % (pt, value)


def assert_chain_gradient_matches_diff(net, name: str, C, points: int = 1, seed: int = 0) -> None:
    """``net.gradient(name).explicit() == sympy.diff(C, p)`` exactly, for a chain.

    Both sides are composed expressions of depth L.  Replacing every composed pre-activation
    z_j (top-down, so the outermost match wins) by a fresh symbol Z_j on *both* sides gives
    shallow expressions f(Z, w, b, a0, y) and g(…); f ≡ g as functions of independent Z implies
    the originals agree (substitute Z_j = z_j back).  f ≡ g is then decided exactly as a
    rational-function identity in the atoms, at random rational points.
    """
    fwd = net.forward()
    Z = {fwd["z%d" % j]: sympy.Dummy("Z%d" % j, real=True) for j in range(1, net.depth + 1)}
    ours_full = net.gradient(name).explicit()
    ref_full = sympy.diff(C, net.symbols[name])
    ours, ref = ours_full.xreplace(Z), ref_full.xreplace(Z)
    try:
        assert_exactly_equal(ours, ref, list(net.symbols.values()) + list(Z.values()), points=points, seed=seed)
    except AssertionError:
        # The rewrite is only consistent when each composed z_j survives as a subexpression on
        # both sides (an identity activation lets a_L − y flatten z_L away).  Decide directly.
        assert_exactly_equal(ours_full, ref_full, list(net.symbols.values()), points=points, seed=seed)
