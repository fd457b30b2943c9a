"""The activation catalogue: closed-form derivatives, printing, stable NumPy kernels, bounds,
the convention at kinks, and custom activations."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy
from sympy import Heaviside, Piecewise, exp, erf, pi, sqrt

import symgrad
import symgrad.spec._parse  # imported before the no-exec test patches builtins.exec
from symgrad.spec.activations import z

BUILTINS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"]

# Each built-in written with SymPy's elementary functions only, independently of symgrad's
# Function classes: the reference its closed-form derivative is checked against.
ELEMENTARY = {
    "sigmoid": 1 / (1 + exp(-z)),
    "tanh": sympy.tanh(z),
    "relu": Piecewise((z, z > 0), (0, True)),
    "leaky_relu": Piecewise((z, z > 0), (z / 100, True)),
    "elu": Piecewise((z, z > 0), (exp(z) - 1, True)),
    "softplus": sympy.log(1 + exp(z)),
    "silu": z / (1 + exp(-z)),
    "gelu": z * (1 + erf(z / sqrt(2))) / 2,
    "softsign": z / (1 + sympy.Abs(z)),
    "identity": z,
}

# mpmath references at 50 digits for φ and φ' (independent of both SymPy and NumPy).
MP = {
    "sigmoid": (lambda x: 1 / (1 + mpmath.exp(-x)), lambda x: mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2),
    "tanh": (mpmath.tanh, lambda x: mpmath.sech(x) ** 2),
    "softplus": (lambda x: mpmath.log1p(mpmath.exp(x)), lambda x: 1 / (1 + mpmath.exp(-x))),
    "silu": (lambda x: x / (1 + mpmath.exp(-x)), lambda x: 1 / (1 + mpmath.exp(-x)) + x * mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2),
    "gelu": (lambda x: x * mpmath.ncdf(x), lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x)),
    "softsign": (lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2),
    "elu": (lambda x: x if x > 0 else mpmath.expm1(x), lambda x: mpmath.mpf(1) if x > 0 else mpmath.exp(x)),
}

POINTS = [-745.5, -100.0, -30.0, -4.0, -1.5, -0.25, -1e-300, 0.0, 5e-324, 1e-8, 0.3, 2.3994, 4.0, 17.0, 40.0, 100.0, 800.0]


@pytest.mark.parametrize("name", BUILTINS)
def test_closed_form_derivative_matches_sympy_diff_of_the_elementary_form(name):
    act = symgrad.activation(name)
    ref = sympy.diff(ELEMENTARY[name], z)
    ours = act.derivative
    for q in [sympy.Rational(-7, 3), sympy.Rational(-1, 5), sympy.Rational(2, 7), sympy.Rational(9, 2)]:
        a = ours.xreplace({z: q}).rewrite(exp).doit()
        b = ref.xreplace({z: q}).doit()
        assert sympy.simplify(a - b) == 0, (name, q)
    # The closed form is also what SymPy's diff gives on symgrad's own expression.
    assert sympy.simplify((sympy.diff(act.expr, z) - ours).rewrite(exp)) == 0


def test_sigmoid_derivative_is_sigma_times_one_minus_sigma_and_prints_as_sigma():
    act = symgrad.activation("sigmoid")
    s = symgrad.spec.activations.sigmoid(z)
    assert act.derivative == s * (1 - s)
    assert sympy.diff(s, z) == s * (1 - s)
    assert sympy.latex(s) == r"\sigma\mathopen{}\left(z\right)"
    assert sympy.latex(act.prime(z)) == r"\sigma'\mathopen{}\left(z\right)"
    # no swelling: the 5th derivative is a polynomial in σ of degree 6
    d5 = sympy.diff(s, z, 5)
    assert d5.atoms(sympy.Function) == {s}
    assert sympy.Poly(sympy.expand(d5), s).degree() == 6


def test_tanh_derivative_is_one_minus_tanh_squared():
    assert symgrad.activation("tanh").derivative == 1 - sympy.tanh(z) ** 2


@pytest.mark.parametrize("name", sorted(MP))
def test_numpy_kernels_match_mpmath_to_near_machine_precision(name):
    act = symgrad.activation(name)
    f, df = MP[name]
    x = np.array(POINTS)
    val, grad, logg = act.value(x), act.grad(x), act.log_abs_grad(x)
    with mpmath.workdps(60):
        for i, xi in enumerate(POINTS):
            X = mpmath.mpf(xi)
            fv, dv = f(X), df(X)
            assert float(fv) == pytest.approx(val[i], rel=1e-12, abs=1e-300), (name, xi)
            assert float(dv) == pytest.approx(grad[i], rel=1e-11, abs=1e-300), (name, xi)
            if dv != 0:
                ref = float(mpmath.log(abs(dv)))
                assert logg[i] == pytest.approx(ref, rel=1e-12, abs=1e-12), (name, xi)


@pytest.mark.parametrize("name", BUILTINS)
def test_kernels_are_finite_and_silent_at_extreme_inputs(name):
    """No warning (warnings are errors here), no nan, and the right limits, for every finite
    float64 including ±1e300, ±max, subnormals and ±0.0.  log|φ'| may be −inf only where φ' is
    exactly 0 (a dead ReLU) or below float64's range (GELU's far left tail)."""
    act = symgrad.activation(name)
    x = np.array([-np.finfo(float).max, -1e300, -1e154, -1000.0, -5e-324, -0.0, 0.0, 5e-324, 1000.0, 1e154, 1e300, np.finfo(float).max])
    v, g, lg = act.value(x), act.grad(x), act.log_abs_grad(x)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    assert not np.any(np.isnan(lg)) and not np.any(lg == np.inf)
    finite_log = np.isfinite(lg)
    assert np.all(finite_log | (g == 0) | ((name == "gelu") & (x < -1e154)))


def test_sigmoid_at_plus_minus_1000_gives_exact_limits_without_warnings():
    sig = symgrad.activation("sigmoid")
    x = np.array([-1000.0, 1000.0])
    assert sig.value(x).tolist() == [0.0, 1.0]
    assert sig.grad(x).tolist() == [0.0, 0.0]
    assert sig.log_abs_grad(x).tolist() == [-1000.0, -1000.0]


# --------------------------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------------------------

EXPECTED_SUP = {
    "sigmoid": (sympy.Rational(1, 4), sympy.FiniteSet(0)),
    "tanh": (1, sympy.FiniteSet(0)),
    "relu": (1, sympy.Interval.open(0, sympy.oo)),
    "softsign": (1, sympy.FiniteSet(0)),
    "identity": (1, sympy.Reals),
    "softplus": (1, sympy.EmptySet),
    "gelu": ((1 + erf(1)) / 2 + exp(-1) / sqrt(pi), sympy.FiniteSet(sqrt(2))),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SUP))
def test_exact_sup_of_abs_derivative_and_where_it_is_attained(name):
    b = symgrad.activation(name).bound
    sup, where = EXPECTED_SUP[name]
    assert b.exact and sympy.simplify(b.sup - sup) == 0
    assert b.attained_at == where


@pytest.mark.parametrize("name", BUILTINS)
def test_sup_bounds_the_numeric_derivative_on_a_dense_grid_and_is_approached(name):
    act = symgrad.activation(name)
    x = np.linspace(-30, 30, 600001)
    g = np.abs(act.grad(x))
    sup = float(act.bound.sup)
    assert g.max() <= sup * (1 + 1e-12)
    assert g.max() >= sup * (1 - 1e-3) or name == "softplus"  # softplus' = σ only approaches 1
    lo, hi = float(act.bound.range.inf), float(act.bound.range.sup)
    raw = act.grad(x)
    assert raw.min() >= lo - 1e-12 and raw.max() <= hi + 1e-12


def test_silu_sup_is_a_certified_constant():
    b = symgrad.activation("silu").bound
    assert not b.exact and "certified" in b.note
    (zstar,) = tuple(b.attained_at)
    # z* solves z·tanh(z/2) = 2: check the sign change around it in exact rational arithmetic.
    lo, hi = sympy.Rational(str(zstar)) - sympy.Rational(1, 10**20), sympy.Rational(str(zstar)) + sympy.Rational(1, 10**20)
    g = lambda t: t * sympy.tanh(t / 2) - 2  # noqa: E731
    assert (g(lo).evalf(50) < 0) and (g(hi).evalf(50) > 0)
    assert abs(float(b.sup) - 1.0998393194) < 1e-9


def test_leaky_relu_and_elu_facts_depend_on_alpha():
    lr = symgrad.activation("leaky_relu", alpha=0.1)
    assert lr.bound.range == sympy.FiniteSet(sympy.Rational(1, 10), 1)
    assert symgrad.activation("elu", alpha=2).bound.sup == 2
    assert symgrad.activation("elu", alpha=0.5).bound.sup == 1


# --------------------------------------------------------------------------------------------
# Convention at kinks: φ'(0) is the left derivative, symbolically and numerically
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,alpha,expected", [("relu", None, 0), ("leaky_relu", 0.01, sympy.Rational(1, 100)), ("elu", 0.5, sympy.Rational(1, 2))])
def test_derivative_at_the_kink_is_the_left_derivative_everywhere(name, alpha, expected):
    act = symgrad.activation(name) if alpha is None else symgrad.activation(name, alpha=alpha)
    assert act.derivative.xreplace({z: 0}) == expected
    assert act.prime(sympy.Integer(0)).doit() == expected
    assert sympy.diff(act.expr, z).xreplace({z: 0}) == expected
    assert act.grad(np.array([0.0, -0.0]))[0] == float(expected) == act.grad(np.array([-0.0]))[0]


def test_relu_derivative_is_heaviside_with_zero_at_zero():
    assert symgrad.activation("relu").derivative == Heaviside(z, 0)


# --------------------------------------------------------------------------------------------
# Lookup and custom activations
# --------------------------------------------------------------------------------------------


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(symgrad.InvalidArgument, match="unknown activation 'sigmod'.*sigmoid, tanh, relu"):
        symgrad.activation("sigmod")


@pytest.mark.parametrize(
    "bad",
    ["__import__('os').system('id')", "x.__class__", "().__class__.__base__", "lambda: 1"],
)
def test_malicious_activation_strings_raise_and_execute_nothing(bad, monkeypatch):
    import builtins

    def boom(*a, **k):
        raise AssertionError("executed user input")

    monkeypatch.setattr(builtins, "eval", boom)
    monkeypatch.setattr(builtins, "exec", boom)
    monkeypatch.setattr(sympy, "sympify", boom)
    with pytest.raises(symgrad.InvalidArgument) as err:
        symgrad.activation(bad)
    assert "not allowed" in str(err.value) or "is not" in str(err.value)


@pytest.mark.parametrize(
    "spec",
    ["z*sigmoid(z)", "x*sigmoid(x)", z * symgrad.spec.activations.sigmoid(z), lambda t: t * symgrad.spec.activations.sigmoid(t)],
)
def test_custom_activation_from_string_expression_or_callable(spec):
    act = symgrad.activation(spec)
    assert act.expr == z * symgrad.spec.activations.sigmoid(z)
    assert sympy.simplify((act.derivative - symgrad.activation("silu").derivative).rewrite(exp)) == 0
    x = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(act.grad(x), symgrad.activation("silu").grad(x), rtol=1e-12)


def test_custom_activation_sup_is_derived_symbolically_where_sympy_can():
    act = symgrad.custom_activation("z/(1 + z**2)", name="rational")
    b = act.bound
    assert b.known and b.exact and b.sup == 1
    assert b.attained_at == sympy.FiniteSet(0)


def test_custom_activation_sup_says_unknown_where_sympy_cannot():
    act = symgrad.custom_activation("z*erf(z)**3 + sin(z)", name="odd")
    b = act.bound
    assert not b.known and b.sup is None and "could not" in b.note


def test_custom_activation_works_in_a_chain():
    net = symgrad.chain(3, activation="z/(1 + abs(z))")
    g = net.gradient("b1")
    assert len(g.factors) == 6
    assert r"\varphi'" in g.latex()


@pytest.mark.parametrize("x", ["1", None, 1j, np.array([1j]), [1, "a"], b"1"])
@pytest.mark.parametrize("kernel", ["value", "grad", "log_abs_grad"])
def test_kernels_refuse_anything_but_real_numbers(kernel, x):
    """A complex input used to return σ'(Re x) silently, a string a raw NumPy error."""
    with pytest.raises(symgrad.InvalidArgument, match="must be a real number"):
        getattr(symgrad.activation("sigmoid"), kernel)(x)


_MP_FORMS = {
    # φ and φ' in mpmath, written independently of symgrad's forms (tanh' as sech², no cancellation)
    "sigmoid": (lambda t: 1 / (1 + mpmath.exp(-t)), lambda t: 1 / (4 * mpmath.cosh(t / 2) ** 2)),
    "tanh": (mpmath.tanh, lambda t: mpmath.sech(t) ** 2),
    "elu": (lambda t: t if t > 0 else mpmath.expm1(t), lambda t: 1 if t > 0 else mpmath.exp(t)),
    "selu": (lambda t: _SELU[0] * (t if t > 0 else _SELU[1] * mpmath.expm1(t)),
             lambda t: _SELU[0] * (1 if t > 0 else _SELU[1] * mpmath.exp(t))),
    "softplus": (lambda t: mpmath.log1p(mpmath.exp(t)), lambda t: 1 / (1 + mpmath.exp(-t))),
    "silu": (lambda t: t / (1 + mpmath.exp(-t)), lambda t: (1 + mpmath.exp(-t) + t * mpmath.exp(-t)) / (1 + mpmath.exp(-t)) ** 2),
    "gelu": (lambda t: t * mpmath.erfc(-t / mpmath.sqrt(2)) / 2,
             lambda t: mpmath.erfc(-t / mpmath.sqrt(2)) / 2 + t * mpmath.npdf(t)),
}
_SELU = (mpmath.mpf("1.0507009873554804934193349852946"), mpmath.mpf("1.6732632423543772848170429916717"))


@pytest.mark.parametrize("name", sorted(_MP_FORMS))
def test_log_bounds_bound_log_phi_and_log_dphi_everywhere(name):
    # Activation.log_bounds = (V, U): log|φ| ≤ V and log|φ'| ≤ U for every real z (the compiled
    # residual kernel certifies zeros with them), checked at 60 digits on a grid that reaches the
    # tails where φ and φ' underflow (|z| up to 1e8) and the subnormal z.
    import sympy

    act = symgrad.activation(name)
    V, U = (sympy.lambdify(symgrad.spec.activations.z, e, "mpmath") for e in act.log_bounds)
    f, df = _MP_FORMS[name]
    grid = np.concatenate([np.linspace(-60, 60, 1201), -np.logspace(-310, 8, 160), np.logspace(-310, 8, 160), [0.0]])
    with mpmath.workdps(60):
        for t in grid:
            x = mpmath.mpf(float(t))
            for fn, bound, what in ((f, V, "φ"), (df, U, "φ'")):
                v = mpmath.mpf(fn(x))
                if v != 0:
                    assert mpmath.log(abs(v)) <= bound(x) + mpmath.mpf(10) ** -40, (name, what, float(t))


def test_log_bounds_exist_where_phi_prime_underflows():
    # every built-in whose φ' can underflow for a finite z has bounds (softsign's only past 1e154)
    have = {a for a in ("sigmoid", "tanh", "elu", "selu", "softplus", "silu", "gelu") if symgrad.activation(a).log_bounds}
    assert have == set(_MP_FORMS)
    assert symgrad.activation("relu").log_bounds is None and symgrad.custom_activation("z*tanh(z)").log_bounds is None
