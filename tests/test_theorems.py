"""The proof engine: each step kind accepts a true claim and rejects a false one."""

import sympy
from sympy import Rational as Q

from symgrad.spec.activations import sigmoid, z
from symgrad.proof.engine import (
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


# --- what a proof rests on (issue 10 item 7): "proved" means proved --------------------------------

import time  # noqa: E402

import pytest  # noqa: E402

from symgrad import InvalidArgument  # noqa: E402
from symgrad.proof.engine import Hypothesis, Step, assuming_text, interval_eval  # noqa: E402

n = sympy.Symbol("n", integer=True, nonnegative=True)


def test_status_wording():
    assert assuming_text(0, 0) == "proved"
    assert assuming_text(1, 0) == "proved assuming 1 given"
    assert assuming_text(0, 1) == "proved assuming 1 stated rule"
    assert assuming_text(1, 2) == "proved assuming 1 given and 2 stated rules"
    assert assuming_text(3, 1) == "proved assuming 3 givens and 1 stated rule"


def test_an_inference_without_premises_is_refused():
    # It used to pass its check: Implies([], '0=1').check().ok was True.
    with pytest.raises(InvalidArgument, match="no premises"):
        Implies([], "0=1", rule="anything")
    with pytest.raises(InvalidArgument, match="no premises"):
        Implies([], "0=1")
    with pytest.raises(InvalidArgument, match="states no rule"):
        Implies([Identity(x, x)], "0=1")


def test_a_theorem_made_only_of_givens_is_refused():
    # It used to be reported "proved".
    with pytest.raises(InvalidArgument, match="checks nothing"):
        Theorem("T", "false", "$0 = 1$", [Given("0 = 1")])
    g = Given("0 = 1", "absurd")
    with pytest.raises(InvalidArgument, match="checks nothing"):
        Theorem("T", "false", "$0 = 1$", [g, Implies([g], "0 = 1", rule="restate")])
    with pytest.raises(InvalidArgument, match="checks nothing"):
        Theorem("T", "false", "$0 = 1$", [Induction(n, 0, [Given("P(0)")], [Given("P(n+1)")])])


def test_one_checked_step_beside_a_given_is_proved_assuming_the_given():
    r = Theorem("T", "t", "s", [Given("0 = 1", "absurd"), Identity(x + x, 2 * x)]).prove()
    assert r.checked and not r.proved
    assert r.status == "proved assuming 1 given" and [a.label for a in r.givens] == ["absurd"]


def test_a_given_inside_an_induction_is_counted():
    ind = Induction(n, 0, [Given("P(0)", "base given")], [Identity(2 * 2 ** n, 2 ** (n + 1))])
    r = Theorem("T", "t", "s", [ind]).prove()
    assert r.status == "proved assuming 1 given" and r.givens[0].label == "base given"


def test_givens_and_rules_propagate_through_composite_steps():
    g = Given("Q", "q")
    inner = Implies([g, Identity(x, x)], "R", "inner", rule="modus ponens")
    outer = Implies([inner], "S", "outer", rule="weakening")
    ind = Induction(n, 0, [outer], [Identity(2 * 2 ** n, 2 ** (n + 1))])
    r = Theorem("T", "t", "s", [ind]).prove()
    assert r.status == "proved assuming 1 given and 2 stated rules"
    assert sorted(a.label for a in r.rules) == ["inner", "outer"] and [a.label for a in r.givens] == ["q"]


def test_the_same_given_used_twice_counts_once():
    g = Given("Q", "q")
    r = Theorem("T", "t", "s", [g, Identity(x + x, 2 * x), Implies([g], "R", "a", rule="r1"), Implies([g], "S", "b", rule="r2")]).prove()
    assert r.status == "proved assuming 1 given and 2 stated rules"


def test_an_unlinked_certificate_hypothesis_counts_as_a_given():
    h = sympy.Symbol("h", nonnegative=True)
    r = Theorem("T", "t", "s", [Certificate(1 - x, h, where={h: 1 - x})]).prove()
    assert r.status == "proved assuming 1 given" and "1 - x" in r.givens[0].statement


def test_a_certificate_hypothesis_linked_to_the_step_that_proves_it():
    h = sympy.Symbol("h", nonnegative=True)
    sq = Certificate(x ** 2 - 2 * x + 1, (x - 1) ** 2, "square")
    r = Theorem("T", "t", "s", [sq, Certificate(x ** 2 - 2 * x + 3, h + 2, where={h: x ** 2 - 2 * x + 1}, by={h: sq})]).prove()
    assert r.status == "proved"


def test_a_certificate_link_is_checked():
    h, p = sympy.Symbol("h", nonnegative=True), sympy.Symbol("p", positive=True)
    other = Certificate(x ** 2, x ** 2, "x^2 >= 0")
    wrong = Certificate(x ** 2 - 2 * x + 3, h + 2, "wrong link", where={h: x ** 2 - 2 * x + 1}, by={h: other})
    r = wrong.check()
    assert not r.ok and "x**2 - 2*x + 1" in r.detail and "x^2 >= 0" in r.detail
    # a strict hypothesis needs a strict step
    weak = Certificate(x ** 2 + 1, (x ** 2 + 1) / 2 + (x ** 2 + 1) / 2, "weak")
    assert not Certificate(x ** 2 + 2, p + 1, where={p: x ** 2 + 1}, by={p: weak}, strict=True).check().ok
    strong = Certificate(x ** 2 + 1, x ** 2 + 1, "strong", strict=True)
    assert Certificate(x ** 2 + 2, p + 1, where={p: x ** 2 + 1}, by={p: strong}, strict=True).check().ok
    # the linked step must itself pass
    bad = Certificate(x ** 2 - 2 * x + 1, x ** 2, "bad")
    r = Certificate(x ** 2 - 2 * x + 3, h + 2, where={h: x ** 2 - 2 * x + 1}, by={h: bad}).check()
    assert not r.ok and "bad" in r.detail
    with pytest.raises(InvalidArgument, match="not a hypothesis"):
        Certificate(x, x, by={h: other})


def test_a_theorem_discharges_the_hypotheses_of_its_statement_only():
    u, h = sympy.Symbol("u", nonnegative=True), sympy.Symbol("h", nonnegative=True)
    small = Hypothesis(r"1 - u \ge 0", "u <= 1", expr=1 - u)
    cert = Certificate(2 - u, h + 1, where={h: 1 - u}, by={h: small})
    assert Theorem("T", "t", "if $u \\le 1$ ...", [cert], hypotheses=[small]).prove().status == "proved"
    cert2 = Certificate(2 - u, h + 1, where={h: 1 - u}, by={h: small})
    r = Theorem("T", "t", "...", [cert2]).prove()  # not declared by this theorem: an assumption
    assert r.status == "proved assuming 1 given" and r.givens[0].label == "u <= 1"


def test_an_induction_discharges_its_hypothesis_in_the_inductive_step_only():
    P = sympy.Symbol("P", nonnegative=True)
    g = sympy.Symbol("g", nonnegative=True)
    ih = Hypothesis(r"2^n - P \ge 0", "claim at n", expr=2 ** n - P)
    step = Certificate(2 ** (n + 1) - 2 * P, 2 * g, where={g: 2 ** n - P}, by={g: ih})
    good = Induction(n, 0, [ExactValue(sympy.Pow(2, 0, evaluate=False), 1)], [step], induction_hypothesis=[ih])
    assert Theorem("T", "t", "s", [good]).prove().status == "proved"
    # The same hypothesis used in the base case is not discharged there: circular reasoning is counted.
    base = Certificate(2 ** (n + 1) - 2 * P, 2 * g, where={g: 2 ** n - P}, by={g: ih})
    circular = Induction(n, 0, [base], [Identity(x, x)], induction_hypothesis=[ih])
    assert Theorem("T", "t", "s", [circular]).prove().status == "proved assuming 1 given"


def test_an_induction_needs_both_parts():
    with pytest.raises(InvalidArgument, match="base case and an inductive step"):
        Induction(n, 0, [], [Identity(x, x)])
    with pytest.raises(InvalidArgument, match="base case and an inductive step"):
        Induction(n, 0, [Identity(x, x)], [])


def test_a_failing_premise_inside_an_induction_fails_the_theorem():
    bad = Implies([Identity(x, 2 * x, "bad")], "x = 2x", rule="none")
    r = Theorem("T", "t", "s", [Induction(n, 0, [bad], [Identity(2 * 2 ** n, 2 ** (n + 1))], "ind")]).prove()
    assert r.status == "failed" and r.failed_label == "ind" and "bad" in r.detail


def test_latex_states_what_the_proof_rests_on():
    r = Theorem("T", "t", "s", [Given("0 = 1", "absurd"), Identity(x + x, 2 * x)])
    tex = r.latex()
    assert "proved assuming 1 given; every step checked" in tex and "every step checked, nothing assumed" not in tex
    assert "absurd" in tex and r"\emph{Given, not checked.}" in tex
    assert "nothing assumed" in Theorem("T", "t", "s", [Identity(x + x, 2 * x)]).latex()


def test_a_check_past_its_budget_is_unknown():
    class Forever(Step):
        kind = "Forever"
        budget_seconds = 0.2

        def _check(self):
            while True:
                time.sleep(0.01)

        def _body(self):
            return ""

    r = Theorem("T", "t", "s", [Forever("loop")]).prove()
    assert r.status == "unknown" and r.failed_label == "loop" and "budget" in r.detail


# --- security: strings are never sympified (issue 10 item 1) ------------------------------------


@pytest.fixture
def hostile(tmp_path):
    target = tmp_path / "pwned"
    yield "__import__('os').system('touch %s')" % target, target
    assert not target.exists(), "a hostile string was executed"


def _builders(s):
    """Every public entry point that takes an expression, each fed the string ``s`` in one place."""
    q = Q(1, 2)
    h = sympy.Symbol("h", nonnegative=True)
    return [
        lambda: Identity(s, x), lambda: Identity(x, s), lambda: ExactValue(s, 1), lambda: ExactValue(x, s),
        lambda: Certificate(s, x ** 2), lambda: Certificate(x ** 2, s), lambda: Certificate(x, h, where={h: s}),
        lambda: Solve(s, x, sympy.FiniteSet(0)), lambda: Solve(x, x, s), lambda: Solve(x, s, sympy.FiniteSet(0)),
        lambda: Solve(x, x, sympy.FiniteSet(0), domain=s),
        lambda: Limit(s, x, sympy.oo, 0), lambda: Limit(x, x, s, 0), lambda: Limit(x, x, sympy.oo, s), lambda: Limit(x, s, 0, 0),
        lambda: CertifiedRoot(s, x, q, 1, 1), lambda: CertifiedRoot(x, x, s, 1, 1), lambda: CertifiedRoot(x, x, q, s, 1),
        lambda: CertifiedRoot(x, x, q, 1, s), lambda: CertifiedRoot.near(s, x, 1, 2, 5), lambda: CertifiedRoot.near(x ** 2 - 2, x, s, 2, 5),
        lambda: Enclosure(s, 0, 1), lambda: Enclosure(x, s, 1), lambda: Enclosure(x, 0, s), lambda: Enclosure(x, 0, 1, env={x: (s, 1)}),
        lambda: interval_eval(s, {}), lambda: interval_eval(x, {x: (0, s)}),
        lambda: Induction(s, 0, [Identity(x, x)], [Identity(x, x)]), lambda: Induction(n, s, [Identity(x, x)], [Identity(x, x)]),
        lambda: Given("P", expr=s), lambda: Implies([Identity(x, x)], "P", rule="r", expr=s),
        lambda: Theorem("T", "t", "s", s), lambda: Implies(s, "P", rule="r"),
    ]


@pytest.mark.parametrize("i", range(len(_builders("x"))))
def test_a_hostile_string_is_refused_by_every_step_class(hostile, i):
    payload, _ = hostile
    with pytest.raises(InvalidArgument) as err:
        _builders(payload)[i]()
    assert "__import__" in str(err.value) or "not a" in str(err.value) or "must be" in str(err.value)


def test_latex_text_of_steps_is_escaped(hostile):
    payload, _ = hostile
    thm = Theorem("T", payload, "s", [Identity(x + x, 2 * x, payload, payload)], source=payload)
    tex = thm.latex()
    assert "\\_\\_import\\_\\_" in tex and "__import__" not in tex.replace("\\_", "")


def test_numbers_and_sympy_objects_are_still_accepted():
    assert Identity(2, sympy.Integer(2)).check().ok
    assert Enclosure(sympy.pi, 3, Q(22, 7)).check().ok
    import fractions

    assert Enclosure(sympy.pi, fractions.Fraction(3), fractions.Fraction(22, 7)).check().ok
    with pytest.raises(InvalidArgument, match="exact rational"):
        Enclosure(sympy.pi, 3.0, 4)


def test_a_certificate_hypothesis_cannot_link_to_a_step_that_states_no_inequality():
    h = sympy.Symbol("h", nonnegative=True)
    eq = Identity(x ** 2 - 2 * x + 1, (x - 1) ** 2, "an identity")
    r = Certificate(x ** 2 - 2 * x + 3, h + 2, where={h: x ** 2 - 2 * x + 1}, by={h: eq}).check()
    assert not r.ok and "states no inequality" in r.detail
    with pytest.raises(InvalidArgument, match="another Step"):
        Certificate(x, h, where={h: x}, by={h: "x >= 0"})


def test_exp_minus_one_is_manifest_only_for_a_nonnegative_exponent():
    a, t = sympy.Symbol("a", nonnegative=True), sympy.Symbol("t", positive=True)
    e = sympy.exp
    assert Certificate(e(t) - 1, e(t) - 1, strict=True).check().ok
    assert Certificate(e(a) - 1, e(a) - 1).check().ok
    assert not Certificate(e(a) - 1, e(a) - 1, strict=True).check().ok  # a = 0 gives 0
    assert Certificate(e(a) - Q(1, 2), e(a) - Q(1, 2), strict=True).check().ok
    assert not Certificate(e(x) - 1, e(x) - 1).check().ok  # x real: e^x < 1 for x < 0
    assert not Certificate(e(a) - 2, e(a) - 2).check().ok
    assert not Certificate(e(-t) - 1, e(-t) - 1).check().ok


def test_certified_root_search_generates_no_code_from_names(hostile):
    # lambdify prints symbol and function names into Python source; the search evaluates with SymPy instead.
    payload, _ = hostile
    evil_symbol, evil_function = sympy.Symbol(payload), sympy.Function(payload)
    with pytest.raises(InvalidArgument, match="free symbols"):
        CertifiedRoot.near(x ** 2 - 2 + evil_symbol, x, 1, 2, 5)
    with pytest.raises(ArithmeticError, match="not a real number"):
        CertifiedRoot.near(x ** 2 - 2 + evil_function(x), x, 1, 2, 5)
    assert not CertifiedRoot(x ** 2 - 2 + evil_function(x), x, Q(14142, 10000), Q(14143, 10000), 3).check().ok


@pytest.mark.parametrize("make", [
    lambda t: Identity(x, x, lhs_tex=t), lambda t: Identity(x, x, rhs_tex=t), lambda t: ExactValue(x, x, lhs_tex=t),
    lambda t: Certificate(x ** 2, x ** 2, expr_tex=t), lambda t: Solve(x, x, sympy.FiniteSet(0), eq_tex=t),
    lambda t: Enclosure(sympy.pi, 3, 4, expr_tex=t), lambda t: Given(t), lambda t: Hypothesis(t),
    lambda t: Implies([Identity(x, x)], t, rule="r"), lambda t: Induction(n, 0, [Identity(x, x)], [Identity(x, x)], statement_tex=t),
    lambda t: Theorem("T", "t", t, [Identity(x, x)]),
])
@pytest.mark.parametrize("tex", ["\\input{/etc/hostname}", "\\immediate\\write18{touch pwned}", "\\end{document}", "\\def\\x{1}", "{", "50%"])
def test_caller_latex_that_reads_files_or_breaks_the_document_is_refused(make, tex):
    with pytest.raises(InvalidArgument):
        make(tex)


def test_a_symbol_named_like_a_tex_command_is_printed_as_text():
    evil = sympy.Symbol("\\input{/etc/hostname}")
    body = Identity(evil, evil).latex()
    assert "\\input" not in body and "\\textbackslash{}input" in body


def test_certificate_hypotheses_print_hostile_names_as_text():
    evil = sympy.Symbol("\\input{/etc/hostname}", nonnegative=True)
    thm = Theorem("T", "t", "s", [Certificate(1 - x, evil, where={evil: 1 - x})])
    tex = thm.latex()
    assert "\\input" not in tex and thm.prove().status == "proved assuming 1 given"


@pytest.mark.parametrize("expr", [sympy.atanh(2), sympy.atanh(1 + sympy.Symbol("x", real=True) ** 2), sympy.atanh(sympy.Symbol("p", positive=True))])
def test_atanh_outside_its_real_domain_is_not_manifestly_nonnegative(expr):
    """atanh(2) = 0.549 − 1.571i: the sign rule must not read it as ≥ 0 (it once made a theorem
    of 'atanh(2) > 0' report proved)."""
    from symgrad.proof import engine as theorems

    res = theorems.Theorem("X", "t", "c", [theorems.Certificate(expr, expr, strict=True)]).prove()
    assert res.status != "proved"


def test_atanh_inside_its_domain_keeps_the_sign_of_its_argument():
    from symgrad.proof import engine as theorems

    x = sympy.Rational(1, 2)
    assert theorems.Theorem("X", "t", "c", [theorems.Certificate(sympy.atanh(x), sympy.atanh(x), strict=True)]).prove().status == "proved"
