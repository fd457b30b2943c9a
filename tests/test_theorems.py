"""The proof engine: each step kind accepts a true claim and rejects a false one."""

import sympy
from sympy import Rational as Q

from symgrad.activations import sigmoid, z
from symgrad.theorems import (
    Certificate, CertifiedRoot, Enclosure, ExactValue, Given, Identity, Implies, Induction, Limit, Solve, Theorem, peel_products,
)

x = sympy.Symbol("x", real=True)


def test_identity_accepts_the_sigmoid_derivative():
    assert Identity(sympy.diff(1 / (1 + sympy.exp(-z)), z), sigmoid(z) * (1 - sigmoid(z))).check().ok


def test_identity_rejects_a_wrong_sign():
    assert not Identity(sympy.diff(sigmoid(z), z), -sigmoid(z) * (1 - sigmoid(z))).check().ok


def test_identity_refuses_floats():
    r = Identity(x * 0.5, x / 2).check()
    assert not r.ok and "floating-point" in r.detail


def test_certificate_accepts_the_sigmoid_bound():
    assert Certificate(Q(1, 4) - sigmoid(z) * (1 - sigmoid(z)), (sigmoid(z) - Q(1, 2)) ** 2).check().ok


def test_certificate_rejects_sup_one_third():
    assert not Certificate(Q(1, 3) - sigmoid(z) * (1 - sigmoid(z)), (sigmoid(z) - Q(1, 2)) ** 2).check().ok


def test_certificate_rejects_a_witness_that_is_not_manifestly_nonnegative():
    r = Certificate(x ** 2 - 1, (x - 1) * (x + 1)).check()
    assert not r.ok and "manifestly" in r.detail


def test_certificate_uses_declared_hypotheses_only():
    h = sympy.Symbol("h", nonnegative=True)
    assert Certificate(1 - x, h, where={h: 1 - x}).check().ok  # "1 − x ≥ 0" is a premise, stated in the LaTeX
    assert not Certificate(1 - x, 1 - x).check().ok


def test_solve_checks_the_exact_solution_set():
    assert Solve(x ** 2 - 2, x, sympy.FiniteSet(-sympy.sqrt(2), sympy.sqrt(2))).check().ok
    assert not Solve(x ** 2 - 2, x, sympy.FiniteSet(sympy.sqrt(2))).check().ok


def test_peel_products_applies_the_recursive_definition():
    k, n = sympy.Symbol("k", integer=True), sympy.Symbol("n", integer=True, positive=True)
    f = sympy.Function("f")
    p = sympy.Product(f(k), (k, 1, n + 2))
    assert peel_products(p) == sympy.Product(f(k), (k, 1, n)) * f(n + 1) * f(n + 2)


def test_induction_fails_at_the_inductive_step():
    n = sympy.Symbol("n", integer=True, nonnegative=True)
    good = Induction(n, 0, [ExactValue(2 ** 0, 1)], [Identity(2 * 2 ** n, 2 ** (n + 1))])
    bad = Induction(n, 0, [ExactValue(2 ** 0, 1)], [Identity(3 * 2 ** n, 2 ** (n + 1), "step")])
    assert good.check().ok
    r = bad.check()
    assert not r.ok and r.detail.startswith("inductive step, step")


def test_certified_root_brackets_sqrt2():
    step = CertifiedRoot.near(x ** 2 - 2, x, 1, 2, 10)
    assert step.check().ok and step.root_text.startswith("1.414213562")


def test_certified_root_rejects_a_bracket_without_sign_change():
    assert not CertifiedRoot(x ** 2 - 2, x, Q(3, 2), Q(3, 2) + Q(1, 10 ** 10), 10).check().ok


def test_certified_root_rejects_a_wide_bracket():
    assert not CertifiedRoot(x ** 2 - 2, x, 1, 2, 3).check().ok


def test_enclosure_is_certified_by_interval_arithmetic():
    assert Enclosure(sympy.exp(1), Q("2.718281"), Q("2.718282")).check().ok
    assert not Enclosure(sympy.exp(1), Q("2.7183"), Q("2.72")).check().ok
    assert Enclosure(sympy.erf(1), Q("0.8427007"), Q("0.8427008")).check().ok


def test_limit_rejects_a_wrong_value():
    assert Limit(sigmoid(z), z, sympy.oo, 1).check().ok
    assert not Limit(sigmoid(z), z, sympy.oo, Q(1, 2)).check().ok


def test_implies_fails_when_a_premise_fails():
    bad = Identity(x, 2 * x, "bad")
    r = Implies([bad], "x = 2x", rule="nothing").check()
    assert not r.ok and "bad" in r.detail


def test_theorem_reports_the_first_failing_step():
    thm = Theorem("T", "demo", "demo", [Given("x = x"), Identity(x, x, "ok"), Identity(x, x + 1, "wrong"), Identity(x, x, "later")])
    r = thm.prove()
    assert r.status == "failed" and r.failed_step == 3 and r.failed_label == "wrong"
    assert len(r.steps) == 3


def test_crosscheck_is_reported_separately_from_the_proof():
    def boom():
        raise AssertionError("numbers disagree")

    r = Theorem("T", "demo", "demo", [Identity(x, x)], crosscheck=boom).prove()
    assert r.proved and r.crosscheck.startswith("failed")


def test_theorem_latex_names_every_step():
    thm = Theorem("T", "demo", "demo", [Certificate(x ** 2, x ** 2, "square")])
    tex = thm.latex()
    assert r"\section{demo}" in tex and "square" in tex and "Checked" in tex
