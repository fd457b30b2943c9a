"""Custom activations end to end: an accepted string gives a real φ, a finite φ' with the
convention at kinks (the derivative of the branch just below), LaTeX and a working CLI; anything
else is refused at once with a one-line InvalidArgument.  Also: φ(arg) and the built-ins'
parameters accept numbers only, and the bound of a custom φ' answers within its budget."""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, example, given, settings, strategies as st

import symgrad
from symgrad.spec import activations as A
from symgrad._budget import BudgetExceeded, within_budget
from symgrad.spec._parse import DEFAULT_FUNCTIONS
from symgrad.spec.activations import z
from symgrad.cli import main

U = 2.0**-53  # float64 unit roundoff
FMAX = np.finfo(np.float64).max


def exact(expr, x, digits=60):
    """φ(x) by SymPy at ``digits`` digits, x an exact rational."""
    return expr.xreplace({z: x}).evalf(digits)


def left_quotient(expr, x0: float, h=sympy.Rational(1, 10**30)):
    """(φ(x0) − φ(x0 − h))/h to 30 digits: an independent oracle for the left derivative (exact
    for piecewise-linear φ, off by about h·|φ''|/2 ≈ 1e-30·|φ''| otherwise).  The difference is
    formed exactly and evaluated by SymPy's evalf, which raises its precision through the
    cancellation (exp(π⁴) + z needs 72 digits, not 60)."""
    x = sympy.Rational(x0)
    return ((expr.xreplace({z: x}) - expr.xreplace({z: x - h})) / h).evalf(30)


# ---------------------------------------------------------------------------------------------
# The convention at kinks
# ---------------------------------------------------------------------------------------------
KINKS = [
    ("max(0.01*z, z)", 0.0, 0.01),  # the issue's example: was 0.505
    ("Max(0.01*z, z)", 0.0, 0.01),  # SymPy's spelling
    ("abs(z)", 0.0, -1.0),
    ("Abs(z - 2)", 2.0, -1.0),
    ("relu(z - 1)", 1.0, 0.0),
    ("relu(1 - z)", 1.0, -1.0),
    ("min(z, z/2)", 0.0, 1.0),  # just below 0, z < z/2: min is z
    ("min(z, 0.5*z) + max(-z, 3*z)", 0.0, 1.0 - 1.0),
    ("z*sign(z)", 0.0, -1.0),  # = |z|; SymPy's derivative has 2z·DiracDelta(z)
    ("z*heaviside(z)", 0.0, 0.0),
    ("z*heaviside(-z)", 0.0, 1.0),  # just below 0, −z > 0: the branch z
    ("z*Heaviside(z - 1) + abs(z)", 1.0, 1.0),
    ("max(z**3, 0)", 0.0, 0.0),  # a tie in value and in slope
    ("z*heaviside(z**2)", 0.0, 1.0),  # first order cannot decide: probes just below 0 do
    ("z*heaviside(z**2) + z*heaviside(-z**3)", 0.0, 2.0),
    ("heaviside(max(z - 1, z) - min(1 - z, z))*z", 0.25, 0.0),  # the argument cancels to 0 below 1/2
    ("z*heaviside(relu(z))", -1.0, 0.0),  # relu(z) vanishes identically below -1
    ("sigmoid(z)*abs(z)", 0.0, -0.5),
    ("max(tanh(z), sin(z))", 0.0, 1.0),  # equal value and slope at 0: either branch
]


@pytest.mark.parametrize("source, x0, expected", KINKS, ids=[k[0] for k in KINKS])
def test_derivative_at_a_kink_is_the_left_derivative(source, x0, expected):
    act = symgrad.activation(source)
    got = act.grad(np.array([x0, x0, 5.0]))
    assert got[0] == got[1] == pytest.approx(expected, abs=1e-15)
    # The independent oracle: the one-sided difference quotient from below, at 60 digits.
    assert float(left_quotient(act.expr, x0)) == pytest.approx(expected, abs=1e-20)
    # Away from the kink the derivative is SymPy's, evaluated exactly.
    assert got[2] == pytest.approx(float(exact(A._ae_derivative(act.expr), 5)), rel=64 * U)


# (SymPy's limit takes 4 s on the first and fails on the second: see the next test)
_SYMBOLIC_KINKS = [k for k in KINKS if k[0] not in ("max(tanh(z), sin(z))", "z*heaviside(relu(z))")]


@pytest.mark.parametrize("source, x0, expected", _SYMBOLIC_KINKS, ids=[k[0] for k in _SYMBOLIC_KINKS])
def test_symbolic_derivative_at_a_kink_is_the_left_limit_too(source, x0, expected):
    act = symgrad.activation(source)
    at = act.prime(sympy.Rational(x0)).doit()
    assert at.is_Rational and at == sympy.Rational(str(expected))
    # away from kinks it is the plain substitution
    assert act.derivative_at(sympy.Rational(7, 2)) == act.derivative.xreplace({z: sympy.Rational(7, 2)})


def test_symbolic_derivative_at_a_kink_sympy_cannot_resolve_is_unknown_not_guessed():
    act = symgrad.activation("z*heaviside(relu(z))")
    with pytest.raises(symgrad.SymgradError, match="at the kink z = -1 is unknown"):
        act.derivative_at(sympy.Integer(-1))
    assert act.grad(np.array([-1.0]))[0] == 0.0  # the kernel knows relu vanishes below -1


def test_derivative_at_a_kink_for_zero_dimensional_and_shaped_inputs():
    act = symgrad.activation("max(0.01*z, z)")
    assert act.grad(np.float64(0.0)) == 0.01 and np.shape(act.grad(np.float64(0.0))) == ()
    g = act.grad(np.zeros((2, 3)))
    assert g.shape == (2, 3) and np.all(g == 0.01)
    assert act.value(np.array([-1.0, 0.0, 2.0])).tolist() == [-0.01, 0.0, 2.0]


# ---------------------------------------------------------------------------------------------
# Large inputs: no warning (warnings are errors here), no nan, ±inf only where the true value
# is beyond float64
# ---------------------------------------------------------------------------------------------
EXTREME = [
    ("exp(z)/(1 + exp(z))", 1000.0, 1.0, 0.0),  # inf/inf in float64
    ("log(1 + exp(z))", 1000.0, 1000.0, 1.0),
    ("cosh(z) - sinh(z)", 1000.0, 0.0, -0.0),  # inf − inf; true value e^−1000 underflows
    ("exp(z)*sigmoid(-z)", 800.0, 1.0, 0.0),
    ("exp(z)", 1000.0, math.inf, math.inf),  # legitimately beyond float64
    ("z*erf(z)", -1e300, 1e300, -1.0),
    ("atan(exp(z))", 1e3, math.pi / 2, 0.0),
]


@pytest.mark.parametrize("source, x0, value, slope", EXTREME, ids=[e[0] for e in EXTREME])
def test_large_inputs_give_the_correctly_rounded_limit_without_nan(source, x0, value, slope):
    act = symgrad.activation(source)
    v, g = act.value(np.array([x0])), act.grad(np.array([x0]))
    assert v[0] == pytest.approx(value, rel=4 * U) and g[0] == pytest.approx(slope, rel=4 * U, abs=1e-300)
    if not np.isfinite(v[0]):  # only where the exact value overflows float64
        assert abs(exact(act.expr, sympy.Rational(x0), 30)) > FMAX


def test_astronomical_intermediates_overflow_to_inf_and_unknowable_values_are_refused():
    # sinh(e^(10^6)) is beyond any float: inf at once (mpmath used to work on it for minutes)
    act = symgrad.activation("sinh(exp(z**2)) + z**2")
    assert act.value(np.array([1000.0]))[0] == math.inf and act.grad(np.array([1000.0]))[0] == math.inf
    # sin(e^(e^30)) needs e^(e^30) to ~10^13 digits: no value can be given, so it is refused
    with pytest.raises(symgrad.InvalidArgument, match="cannot be evaluated numerically: cannot evaluate .* at z = 30.0"):
        symgrad.activation("sin(exp(exp(z)))")


# ---------------------------------------------------------------------------------------------
# Refused at once, in one line
# ---------------------------------------------------------------------------------------------
REFUSED = [
    ("sqrt(-1)*z", "cannot show that φ(z) and each of its parts are real"),  # was accepted; `check` then said "all pass"
    ("log(-2)*z", "are real"),
    ("sqrt(z)", "are real"),
    ("log(z)", "are real"),
    ("1/z", "are real"),
    ("z**(1/3)", "are real"),
    ("sqrt(abs(z))", "cannot show that φ'(z) and each of its parts are finite"),
    ("abs(z)**0.5", "are finite"),
    ("z*heaviside(1/(z - 1))", "are real"),  # SymPy calls the whole real; its part 1/(z - 1) is not at 1
    ("sign(log(z))", "are real"),
    ("log(log(0.5))", "are real"),  # a complex constant, no z in it
    ("tan(z)", "unknown function 'tan'"),
    ("I*z", "unknown name 'I'"),
]


@pytest.mark.parametrize("source, fragment", REFUSED, ids=[r[0] for r in REFUSED])
def test_strings_that_cannot_work_end_to_end_are_refused_in_one_line(source, fragment):
    with pytest.raises(symgrad.InvalidArgument) as err:
        symgrad.activation(source)
    message = str(err.value)
    assert fragment in message and "\n" not in message and "Fix" in message


def test_just_inside_the_boundary_is_accepted():
    # the accepted neighbours of the refused strings above
    for source in ["sqrt(1 + z**2)", "log(1 + z**2)", "1/(1 + z**2)", "abs(z)**1.5", "sqrt(abs(z) + 1)"]:
        act = symgrad.activation(source)
        assert act.expr.is_real and np.all(np.isfinite(act.grad(np.array([-2.0, 0.0, 2.0]))))


def test_sympy_expressions_and_callables_are_checked_like_strings():
    with pytest.raises(symgrad.InvalidArgument, match="are real"):
        symgrad.custom_activation(sympy.I * z)
    with pytest.raises(symgrad.InvalidArgument, match="are real"):
        symgrad.custom_activation(lambda t: sympy.sqrt(t))
    with pytest.raises(symgrad.InvalidArgument, match="do not evaluate"):
        symgrad.custom_activation(sympy.gamma(z**2 + 1))
    assert symgrad.custom_activation(lambda t: 3).expr == 3  # a number is a (constant) expression


def test_kernel_errors_at_an_undecidable_kink_are_refused_at_construction(monkeypatch):
    # If neither the probes nor SymPy decide a kink, the activation is refused, not half-built.
    def undecided(self, node, x0):
        raise symgrad.SymgradError("cannot decide the kink of %s at z = %r" % (node, x0))

    monkeypatch.setattr(A._KinkKernel, "_left_sign_higher", undecided)
    with pytest.raises(symgrad.InvalidArgument, match="cannot be evaluated numerically: cannot decide the kink of z\\*\\*2 at z = 0.0"):
        symgrad.activation("z*heaviside(z**2)")
    symgrad.activation("z*heaviside(z)")  # a first-order kink never needs them


# ---------------------------------------------------------------------------------------------
# Nothing a user passes is evaluated as code
# ---------------------------------------------------------------------------------------------
def _forbid_sympify(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("sympify called on user input")

    monkeypatch.setattr(sympy, "sympify", boom)  # the name symgrad used to call


@pytest.mark.parametrize("arg", ["__import__('os').system('touch pwned')", "z", b"z", None, True, 1j, float("nan"), [1.0], {}])
def test_activation_call_refuses_anything_but_sympy_objects_and_real_numbers(arg, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _forbid_sympify(monkeypatch)
    sig = symgrad.activation("sigmoid")
    with pytest.raises(symgrad.InvalidArgument, match="not a SymPy expression or a finite real number"):
        sig(arg)
    assert not os.path.exists("pwned")


@pytest.mark.parametrize(
    "arg, expected",
    [(2, 2), (0.5, sympy.Float(0.5)), (Fraction(1, 3), sympy.Rational(1, 3)), (np.float64(0.25), sympy.Float(0.25)),
     (np.int64(3), 3), (sympy.Symbol("w") + 1, sympy.Symbol("w") + 1)],
)
def test_activation_call_accepts_numbers_and_expressions(arg, expected, monkeypatch):
    _forbid_sympify(monkeypatch)
    assert symgrad.activation("sigmoid")(arg) == A.sigmoid(expected)
    with pytest.raises(symgrad.InvalidArgument, match="not a SymPy expression"):
        symgrad.activation("tanh")(sympy.Eq(z, 1))  # a SymPy object, but not an expression


def test_a_callable_returning_a_string_is_refused_without_parsing_it(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _forbid_sympify(monkeypatch)
    with pytest.raises(symgrad.InvalidArgument, match="returned the string .* not a SymPy expression"):
        symgrad.custom_activation(lambda t: "__import__('os').system('touch pwned')")
    assert not os.path.exists("pwned")


# ---------------------------------------------------------------------------------------------
# Parameters are validated like activation strings
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "alpha, fragment",
    [
        (10**10**6, "alpha=(a 3321929-bit integer) is too large"),  # raised a raw ValueError
        (10**6 + 1, "too large"),  # just past the limit
        (1e6 * (1 + 2 * U), "too large"),
        (float("inf"), "not finite"),
        (float("nan"), "not finite"),
        (sympy.oo, "not a real number"),
        (sympy.pi, "not a real number"),
        (1 + 1j, "complex, not a real number"),
        (True, "bool"),
        (None, "NoneType, not a real number"),
        ("__import__('os').system('touch pwned')", "is not a number"),
        ("1e999", "too large"),
        ("1/0", "divides by zero"),
        ("0.1 + 0.2", "is not a number"),
        (Fraction(1, 10**330), "too large"),  # a denominator of 331 digits: just past the limit
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, int) and v > 10**100 else None,
)
def test_bad_alpha_is_refused_naming_the_value_and_the_fix(alpha, fragment, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(symgrad.InvalidArgument) as err:
        symgrad.activation("leaky_relu", alpha=alpha)
    message = str(err.value)
    assert fragment in message and "Fix: pass a real number" in message and "\n" not in message
    assert not os.path.exists("pwned")


@pytest.mark.parametrize(
    "alpha, exact_alpha",
    [(10**6, 10**6), (0.1, sympy.Rational(1, 10)), ("0.1", sympy.Rational(1, 10)), ("-3/7", sympy.Rational(-3, 7)),
     (Fraction(1, 3), sympy.Rational(1, 3)), (5e-324, sympy.Rational(5, 10**324)), (Fraction(1, 10**329), sympy.Rational(1, 10**329)), (np.float64(0.2), sympy.Rational(1, 5)), (sympy.Rational(1, 5), sympy.Rational(1, 5))],
)
def test_good_alpha_is_exact(alpha, exact_alpha):
    assert dict(symgrad.activation("leaky_relu", alpha=alpha).params)["alpha"] == exact_alpha


def test_unknown_parameter_names_are_refused():
    with pytest.raises(symgrad.InvalidArgument, match="takes only alpha, got \\['beta'\\]"):
        symgrad.activation("elu", beta=1)


def test_sigmoid_and_softplus_evaluate_real_arguments_without_an_imaginary_part():
    # evalf used to rewrite the argument into complex exponentials: σ(sin(1/2)) had 1e-28 i
    for f in (A.sigmoid, A.softplus):
        value = f(sympy.sin(sympy.Rational(1, 2))).evalf(30)
        assert value.is_real and sympy.im(value) == 0
    assert symgrad.activation("sigmoid(sin(0.5))").value(np.array([3.0]))[0] == pytest.approx(0.6176122149034253, rel=4 * U)


def test_sigmoid_is_real_only_for_real_arguments():
    w = sympy.Symbol("w")  # no assumptions
    assert A.sigmoid(z).is_real is True
    assert A.sigmoid(sympy.I * z).is_real is not True
    assert A.sigmoid(w).is_real is None
    assert (z * A.sigmoid(z)).is_real is True


# ---------------------------------------------------------------------------------------------
# Bounds of custom φ' answer within their budget
# ---------------------------------------------------------------------------------------------
def test_bound_answers_unknown_with_the_reason_when_sympy_runs_out_of_time(monkeypatch):
    # tanh(z)·σ(z): SymPy's maximum takes about 5 s here (the CLI used to hang inside it for
    # minutes before it had a budget); with a 0.2 s budget the answer must be "unknown".
    monkeypatch.setattr(A, "BOUND_SECONDS", 0.2)
    b = symgrad.activation("tanh(z)*sigmoid(z)").bound
    assert b.sup is None and not b.exact and not b.known
    assert b.note.startswith("unknown:") and "ran past its budget of 0.2 s" in b.note


def test_bound_is_exact_only_when_sympy_derived_it():
    b = symgrad.custom_activation("z/(1 + z**2)").bound
    assert b.exact and b.sup == 1
    b = symgrad.custom_activation("z*sign(z) + sin(z)").bound  # SymPy cannot: says so
    assert not b.exact and b.sup is None and b.note.startswith("unknown:")


# ---------------------------------------------------------------------------------------------
# Every whitelisted function works end to end: numbers, LaTeX, the CLI
# ---------------------------------------------------------------------------------------------
EXAMPLE = {
    "exp": "exp(-z**2)", "log": "log(1 + z**2)", "sqrt": "sqrt(1 + z**2)", "abs": "abs(z)", "Abs": "Abs(z)",
    "tanh": "tanh(z)", "sinh": "sinh(z)", "cosh": "cosh(z)/10", "sin": "sin(z)", "cos": "cos(z)",
    "atan": "atan(z)", "asinh": "asinh(z)", "erf": "erf(z)", "max": "max(0.01*z, z)", "Max": "Max(z, -z/2)",
    "min": "min(z, 1)", "Min": "Min(z, 0.5*z)", "sign": "z*sign(z)", "heaviside": "z*heaviside(z) + z/2",
    "Heaviside": "z*Heaviside(-z)",
}


def test_every_whitelisted_function_has_an_end_to_end_example():
    assert set(EXAMPLE) == set(DEFAULT_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(EXAMPLE))
def test_every_whitelisted_function_works_in_the_cli(name, capsys, monkeypatch):
    monkeypatch.setattr(A, "BOUND_SECONDS", 0.5)  # LaTeX states the bound: keep SymPy's search short
    source = EXAMPLE[name]
    assert main(["check", "--depth", "3", "--activation", source, "--batch", "2"]) == 0
    assert main(["latex", "--depth", "3", "--activation", source, "--fragment"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and r"\varphi'" in out


@pytest.mark.parametrize("source", ["z*sign(z)", "erf(z)", "log(1e100)+z"])
def test_the_issue_examples_run_in_the_cli(source, capsys):
    assert main(["check", "--depth", "3", "--activation", source, "--batch", "2"]) == 0
    assert "all 6 parameter(s) pass" in capsys.readouterr().out


def test_a_refused_string_gives_exit_2_and_one_line(capsys):
    assert main(["check", "--depth", "3", "--activation", "sqrt(-1)*z", "--batch", "2"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "are real" in err


# ---------------------------------------------------------------------------------------------
# The pipeline, over generated formulas: refused in one line, or working end to end
# ---------------------------------------------------------------------------------------------
_UNARY = ["exp", "log", "sqrt", "abs", "Abs", "tanh", "sinh", "cosh", "sin", "cos", "atan", "asinh", "erf",
          "sign", "heaviside", "Heaviside", "sigmoid", "softplus", "relu"]
_LEAVES = st.sampled_from(["z", "z", "z", "0.5", "2", "pi", "(z - 1)", "(1 - z)", "(z/2)"])


def _formulas():
    def extend(inner):
        unary = st.builds(lambda f, a: f"{f}({a})", st.sampled_from(_UNARY), inner)
        return st.one_of(
            unary,
            st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["+", "-", "*", "/"]), inner),
            st.builds(lambda a: f"({a})**2", inner),
            st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(["max", "min", "Max", "Min"]), inner, inner),
        )

    formula = st.recursive(_LEAVES, extend, max_leaves=6)
    # a whitelisted function at the top (of one side), so that every function is drawn often
    return st.builds(lambda f, a, op, b: f"{f}({a}) {op} {b}", st.sampled_from(_UNARY), formula, st.sampled_from(["+", "*"]), formula)


# kinks of the generated formulas sit at 0, ±1, ±2; ±30 and ±1e3 test the tails
GRID = [-1e3, -30.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 30.0, 1e3]


def _with_examples(test):
    for source in EXAMPLE.values():  # every whitelisted function, every run
        test = example(source)(test)
    return test


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_formulas())
@_with_examples
def test_pipeline_accepted_formulas_work_end_to_end(source):
    try:
        act = symgrad.activation(source)
    except symgrad.InvalidArgument as exc:
        assert "\n" not in str(exc)
        return
    # a real φ
    assert act.expr.is_real is not False and not act.expr.has(sympy.I)
    # finite (or correctly overflowed) NumPy φ and φ' on the grid, kinks included
    x = np.array(GRID)
    v, g = act.value(x), act.grad(x)
    assert not np.any(np.isnan(v)) and not np.any(np.isnan(g))
    for xi, vi in zip(GRID, v):
        if not np.isfinite(vi):
            try:  # (the oracle itself may be unaffordable: exp(exp(exp(z))) at 1000 has 10^10^434 digits)
                true = within_budget(lambda: exact(act.expr, sympy.Rational(xi), 30), seconds=1.0, what="the oracle")
            except BudgetExceeded:
                continue
            assert abs(true) > FMAX, (source, xi)
    # φ' is the left derivative: the 60-digit one-sided quotient (skipping jumps, where it is
    # ~1e30), to 1e-6 relative: ≥ 1e9 u of room for the rounding of a ≤ 6-leaf formula on |x| ≤ 2,
    # and far below the O(1) error of a wrong branch.
    for xi, gi in zip(GRID, g):
        if abs(xi) <= 2:
            try:
                ref = within_budget(lambda: left_quotient(act.expr, xi), seconds=5.0, what="the oracle")
            except BudgetExceeded:
                continue
            assert ref.is_real and ref.is_finite, (source, xi)  # every part is defined everywhere
            if abs(ref) < 1e12:
                assert gi == pytest.approx(float(ref), rel=1e-6, abs=1e-9), (source, xi)
    # LaTeX
    assert isinstance(sympy.latex(act.expr), str)
    # backprop runs, and the closed form (evaluated factor by factor) agrees with it
    net = symgrad.chain(2, activation=act)
    p = symgrad.sample(net, 4, seed=1)
    # A forward pass whose φ or φ' overflows (exp(exp(z)) + z at z = 7.6) is refused by name;
    # the samples that stay finite are then checked on their own.
    z1 = p["w1"] * p["a0"] + p["b1"]
    z2 = p["w2"] * act.value(z1) + p["b2"]
    forward_finite = np.isfinite(z2) & np.isfinite(act.value(z2)) & np.isfinite(act.grad(z1)) & np.isfinite(act.grad(z2))
    if not forward_finite.all():
        with pytest.raises(symgrad.InvalidArgument, match="overflows float64"):
            symgrad.backprop(net, p)
        with pytest.raises(symgrad.InvalidArgument, match="overflows float64"):
            symgrad.evaluate_gradient(net.gradient("b1"), p)
        p = {k: v[forward_finite] for k, v in p.items()}
        if not p["a0"].size:
            return
        forward_finite = forward_finite[forward_finite]
    back = symgrad.backprop(net, p).grads["b1"]
    closed = symgrad.evaluate_gradient(net.gradient("b1"), p)
    assert not np.any(np.isnan(back[forward_finite])) and not np.any(np.isnan(closed[forward_finite]))
    # Both multiply the same rounded factors (φ'(z1), w2, φ'(z2), a2 − y) in some order: each
    # product of 4 factors is within 3u of exact, so they differ by at most 6u relative.
    finite = np.isfinite(back) & np.isfinite(closed)
    np.testing.assert_allclose(closed[finite], back[finite], rtol=6 * U * 1.01, atol=1e-300)
    assert np.array_equal(np.isfinite(back[forward_finite]), np.isfinite(closed[forward_finite]))


# ---------------------------------------------------------------------------------------------
# Names reach LaTeX documents (and pdflatex): only safe LaTeX gets there
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "latex_name", [r"\input{/etc/passwd}", r"\immediate\write18{id}", r"\catcode`\@=11", "$x$", "%", "}{", r"\varphi^{", "x" * 81, 3]
)
def test_unsafe_latex_names_are_refused(latex_name):
    with pytest.raises(symgrad.InvalidArgument, match="latex_name="):
        symgrad.custom_activation("z*sigmoid(z)", latex_name=latex_name)


def test_safe_latex_names_and_plain_names_are_used():
    assert symgrad.custom_activation("z*sigmoid(z)", latex_name=r"\operatorname{swish}_{\beta}").latex_name == r"\operatorname{swish}_{\beta}"
    assert symgrad.custom_activation("z*sigmoid(z)", latex_name="x" * 80).latex_name == "x" * 80  # the longest
    assert symgrad.custom_activation("z*sigmoid(z)", name="swish2").latex_name == r"\operatorname{swish2}"
    # a name that is not plain letters and digits is shown as φ in LaTeX, never pasted in
    assert symgrad.custom_activation("z*sigmoid(z)", name=r"x}\input{/etc/passwd").latex_name == r"\varphi"


# ---------------------------------------------------------------------------------------------
# The other entry points of activations.py take no strings either
# ---------------------------------------------------------------------------------------------
HOSTILE = "__import__('os').system('touch pwned')"


def test_derivative_at_refuses_strings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("tanh", "max(0.01*z, z)"):
        with pytest.raises(symgrad.InvalidArgument, match="not a SymPy expression or a finite real number"):
            symgrad.activation(name).derivative_at(HOSTILE)
    assert symgrad.activation("tanh").derivative_at(0) == 1 and not os.path.exists("pwned")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(sup=HOSTILE), "sup="),  # the LaTeX writer used to sympify sup
        (dict(sup=sympy.Symbol("s")), "sup="),
        (dict(attained_at=HOSTILE), "attained_at="),
        (dict(range=[0, 1]), "range="),
        (dict(exact="yes"), "exact="),
        (dict(note=3), "note="),
    ],
)
def test_derivative_bound_fields_are_checked(kwargs, fragment):
    fields = dict(sup=sympy.Rational(1, 4), attained_at=sympy.FiniteSet(0), range=sympy.Interval(0, 1), exact=True, note="")
    fields.update(kwargs)
    with pytest.raises(symgrad.InvalidArgument, match=fragment):
        symgrad.spec.DerivativeBound(**fields)


def test_derivative_bound_accepts_numbers_and_custom_activation_checks_bound_and_name():
    assert symgrad.spec.DerivativeBound(0.25, None, None, False).sup == sympy.Float(0.25)
    assert symgrad.spec.DerivativeBound(Fraction(1, 4), None, None, True).sup == sympy.Rational(1, 4)
    with pytest.raises(symgrad.InvalidArgument, match="bound=.* must be a DerivativeBound"):
        symgrad.custom_activation(z**2, bound=HOSTILE)
    with pytest.raises(symgrad.InvalidArgument, match="name=.* must be a string"):
        symgrad.custom_activation(z**2, name=3)
    act = symgrad.custom_activation(z**2, name=HOSTILE)  # a name is inert text: a label only
    assert act.name == HOSTILE and act.latex_name == r"\varphi"


def test_a_custom_sigmoid_keeps_its_derivative_where_the_terms_cancel():
    # φ = e^z/(1 + e^z): φ'(z) = e^z/(1 + e^z)², about e^−z for large z; the form SymPy's derivative
    # takes, e^z/(1+e^z) − e^{2z}/(1+e^z)², cancels from z ≈ 20 (reference: mpmath at 400 digits).
    # Before the running error bounds: 1.1e-16 at z = 300 (true 5.1e-131), 1.0 at z = 356.
    import mpmath

    act = symgrad.activation("exp(z)/(1+exp(z))")
    zs = np.array([30.0, 300.0, 356.0, 600.0])
    with mpmath.workdps(400):
        ref = np.array([float(mpmath.exp(x) / (1 + mpmath.exp(x)) ** 2) for x in zs])
    np.testing.assert_allclose(act.grad(zs), ref, rtol=1e-12)


# Custom forms whose float64 evaluation cancels somewhere (a difference of nearly equal terms, or an
# input error amplified), with points on both sides of where it starts.
CANCELLING = [
    ("exp(z)/(1+exp(z))", [-800.0, -50.0, 7.0, 20.0, 30.0, 300.0, 356.0, 600.0, 1000.0]),
    ("exp(z) - z", [1e-10, 1e-5, -1e-8, 3.0]),                  # φ' = e^z − 1 near 0
    ("sqrt(z**2 + 1) - z", [10.0, 1e4, 1e8, 1e150, -5.0]),      # φ ≈ 1/(2z), φ' ≈ −1/(2z²)
    ("cosh(z) - sinh(z)", [1.0, 30.0, 300.0, 700.0]),           # e^−z as a difference
    ("1 - 2/(1 + exp(2*z))", [1e-10, -1e-6, 0.5, 20.0, -20.0]),  # tanh near 0
    ("z*(1 + erf(z/sqrt(2)))/2", [-3.0, -5.0, -10.0, -30.0, 2.0]),  # GELU with erf: 1 + erf cancels
    ("abs(exp(z) - 1)", [1e-9, -1e-9, 2.0]),                    # a kink of a cancelled argument
    ("2*tanh(z)", [20.0, 30.0, 300.0]),                         # tanh' as 1 − tanh² is 0 from |z| ≈ 19
    ("log(1 + z**2)", [1e-3, 1e-8, 5.0]),
    ("z - pi", [math.pi, 1.0]),                                 # π rounded: z − π is −1.2e-16, not 0
    ("(z - 1/3)**2", [1 / 3, 2.0]),
]


def _reference(act, points, exact=False):
    """φ, φ', φ'' at the points by mpmath at 1500 digits (more than any cancellation above costs:
    1000 digits for e^{−1000} next to 1) of the expression and its a.e. derivatives: floats, or
    (``exact``) the mpmath numbers themselves, in a list of rows."""
    import mpmath

    d1 = A._ae_derivative(act.expr)
    d2 = A._ae_derivative(d1)
    fs = [sympy.lambdify(z, e, "mpmath") for e in (act.expr, d1, d2)]  # symgrad's own expressions, no user text
    with mpmath.workdps(1500):
        rows = [[mpmath.re(f(mpmath.mpf(float(xi)))) for f in fs] for xi in points]
    return rows if exact else np.array([[float(t) for t in row] for row in rows])


@pytest.mark.parametrize("spec,points", CANCELLING, ids=[c[0] for c in CANCELLING])
def test_a_custom_activation_is_right_where_its_float64_form_cancels(spec, points):
    # The contract (ERROR_SLACK): the exact value at an input within ERROR_SLACK·u·|z|, give or take
    # ERROR_SLACK·u·|f| (and ERROR_SLACK half-subnormals per unit of |z| at the underflow floor).
    act = symgrad.activation(spec)
    x = np.array(points)
    ref = _reference(act, points)
    floor = A.ERROR_SLACK * 2.0**-1075 * np.maximum(1.0, np.abs(x))
    for got, f, fp in ((act.value(x), ref[:, 0], ref[:, 1]), (act.grad(x), ref[:, 1], ref[:, 2])):
        allowed = A.ERROR_SLACK * U * (np.abs(f) + np.abs(x * fp)) + floor
        assert np.all(np.abs(got - f) <= allowed), (spec, x, got, f, allowed)


#: and, for the enclosures only, a red team's: erf' = (2/√π)e^{−t²} carries t²'s rounding as a
#: relative t²·u; values that underflow to 0 still have a nonzero bound (rounded up)
ENCLOSED = CANCELLING + [("erf(z) - 1", [-6.975092323916503, 4.480293435662282, 5.4049046095983755, 8.0]),
                         ("atan(z)*z", [2.140202922136882e-213, 1.0]), ("z/(1+exp(-z))", [-800.0, -30.0])]


@pytest.mark.parametrize("spec,points", ENCLOSED, ids=[c[0] for c in ENCLOSED])
def test_a_custom_activations_bounded_values_enclose_the_exact_ones(spec, points):
    # Activation.bounded: the float64 values and their running error bounds, with no exact
    # re-evaluation (what the mean-field quadrature carries)
    import mpmath

    act = symgrad.activation(spec)
    x = np.array(points)
    ref = _reference(act, points, exact=True)
    v, d, ev, ed = act.bounded(x)
    with mpmath.workdps(1500):  # against the exact numbers: the bounds include the rounding to float64
        for i, (f, fp, _) in enumerate(ref):
            assert abs(mpmath.mpf(float(v[i])) - f) <= ev[i], (spec, x[i], v[i], f, ev[i])
            assert abs(mpmath.mpf(float(d[i])) - fp) <= ed[i], (spec, x[i], d[i], fp, ed[i])
    assert symgrad.activation("tanh").bounded is None  # a built-in's stable forms: a few ulps


COMMON = ["z*sigmoid(z)", "z*tanh(softplus(z))", "max(z, 0.1*z)", "z*sigmoid(z) + 0.1*tanh(z)", "2*tanh(z)",
          "atan(z)", "asinh(z)", "z*exp(-z**2/2)", "relu(z) + 0.1*sin(z)", "softplus(z)",
          # written by hand, and cancelling as written: the kernel evaluates them through exact identities
          # (_stable_rewrites: 1 + erf → erfc, log(1 + e^z) → softplus, e^z/(1 + e^z) and 1/(1 + e^−z) → σ)
          "z*(1 + erf(z/sqrt(2)))/2", "z*tanh(log(1+exp(z)))", "log(1 + exp(z))", "exp(z)/(1+exp(z))", "z/(1+exp(-z))"]


@pytest.mark.parametrize("spec", COMMON)
def test_common_custom_activations_stay_on_the_float64_path(spec, monkeypatch):
    # The trust rule must not send ordinary points to mpmath: not the tails, and not the roots of φ'
    # (swish's at z = −1.2785, mish's at −1.1924), where the value is small but well conditioned
    # (the difference quotient's |z·φ''| pays for it).
    act = symgrad.activation(spec)

    def refuse(self, xi, digits=0):
        raise AssertionError("%s at z = %r went to mpmath" % (spec, xi))

    monkeypatch.setattr(A._KinkKernel, "_exact", refuse)
    x = np.concatenate([np.linspace(-60, 60, 12001), np.linspace(-1.3, -1.15, 3001), [-1.2784645427610738, -1.1924]])
    act.value(x)
    act.grad(x)


def test_the_exact_path_certifies_its_rounding_and_asks_for_the_digits_it_needs():
    kernel = A._KinkKernel(symgrad.activation("cosh(z) - sinh(z)").expr)
    # at 50 digits φ(356) = e^−356 = 8.2e-155, a difference of two terms near 7e153, is noise
    more = kernel._at_digits(356.0, 50)
    assert isinstance(more, int) and more > 300
    v, d = kernel._at_digits(356.0, more)
    import mpmath

    with mpmath.workdps(1000):
        assert v == float(mpmath.exp(-356)) and d == -v
    # a derivative that is exactly 0 (its terms cancel in every precision) is certified as 0 once
    # the bound is below half the smallest subnormal
    act = symgrad.activation("sin(z)**2 + cos(z)**2")
    np.testing.assert_array_equal(act.grad(np.array([0.3, 2.0, -7.5])), 0.0)
    np.testing.assert_array_equal(act.value(np.array([0.3, 2.0, -7.5])), 1.0)


def test_mean_field_moments_of_a_custom_form_carry_its_error_bounds():
    # GELU written with erf cancels in its left tail; χ₁ by quadrature uses the bounded float64
    # values (no mpmath per node) and agrees with the built-in GELU within both errors
    from symgrad.theory import meanfield as mf

    custom = mf.chi1(symgrad.activation("z*(1 + erf(z/sqrt(2)))/2"), 1.5, 0.1)
    builtin = mf.chi1("gelu", 1.5, 0.1)
    assert abs(custom.value - builtin.value) <= custom.error + builtin.error
    assert custom.error < 1e-12


def test_the_exact_path_is_thread_safe_and_ignores_the_users_mpmath_precision():
    # backprop evaluates blocks on two threads: mpmath's global precision, shared, gave each thread
    # the other's (relative errors up to 1e77, found by a helper); and a user's mp.dps is theirs
    import mpmath
    from concurrent.futures import ThreadPoolExecutor

    act = symgrad.activation("exp(z)/(1+exp(z))")
    rng = np.random.default_rng(0)
    zs = [rng.uniform(40, 300, 400) for _ in range(4)]
    alone = [act.grad(x) for x in zs]
    saved = mpmath.mp.dps
    try:
        mpmath.mp.dps = 7
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(act.grad, zs))
        assert mpmath.mp.dps == 7
    finally:
        mpmath.mp.dps = saved
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
    with mpmath.workdps(400):
        ref = np.array([float(mpmath.exp(x) / (1 + mpmath.exp(x)) ** 2) for x in zs[0]])
    np.testing.assert_allclose(alone[0], ref, rtol=1e-15)


@pytest.mark.parametrize("spec,points", [("z*sigmoid(z)", [-800.0, -745.5, -50.0, 2.0, -1e10]),
                                         ("exp(-z**2/2)", [40.0, -39.0, 1.0]),
                                         ("z*(1 + erf(z/sqrt(2)))/2", [-40.0, -30.0, 1.0]),
                                         # past mpmath's exp cutoff (1e8), and overflowing float64 (red team)
                                         ("z*exp(-z**2)", [-1e5]), ("z**5", [1e300, -1e300]), ("z*exp(z)", [708.0])])
def test_log_and_sign_of_a_custom_activation_where_it_underflows(spec, points):
    # the log-space chains read log|φ'| and sign φ' where φ' is 0 in float64: −inf and 0 there made
    # ∂C/∂b1 of a chain 0 where it is −7.7e-195 (tests/test_jit.py); now from mpmath
    import mpmath

    act = symgrad.activation(spec)
    x = np.array(points)
    ref = _reference(act, points, exact=True)
    la, lg = act.log_abs_value(x), act.log_abs_grad(x)
    sa, sg = act.value_sign(x), act.grad_sign(x, act.grad(x))
    with mpmath.workdps(1500):
        for i, (f, fp, _) in enumerate(ref):
            for got_log, got_sign, t in ((la[i], sa[i], f), (lg[i], sg[i], fp)):
                assert got_sign == (1 if t > 0 else -1 if t < 0 else 0)
                # underflowed: mpmath's log to 2^-55 relative; elsewhere log of the float64 value,
                # off by its relative error (within ERROR_SLACK·u of the budget, 1e-13 here)
                ref_log = float(mpmath.log(abs(t)))
                assert abs(got_log - ref_log) <= 8 * U * abs(ref_log) + 1e-13, (x[i], got_log, ref_log)
