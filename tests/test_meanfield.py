"""Mean-field signal propagation: exact where a closed form exists, quadrature with an honest
error elsewhere, checked against independent mpmath integrals and by simulation."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy

import symgrad
from symgrad.theory import meanfield as mf

# ---------------------------------------------------------------------------------------------
# Known exact values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w2", [sympy.Rational(1, 2), 1, sympy.Rational(3, 2), 2])
def test_relu_chi1_is_half_sigma_w2(w2):
    assert mf.chi1("relu", w2, 0).exact == sympy.nsimplify(w2) / 2


def test_relu_is_critical_at_two_zero():
    assert mf.critical_sigma_w2("relu").exact == 2
    assert mf.phase("relu", 2, 0) == "critical"
    assert mf.phase("relu", 1.5, 0) == "ordered"


@pytest.mark.parametrize("alpha", [sympy.Rational(1, 100), sympy.Rational(1, 10), sympy.Rational(1, 2)])
def test_leaky_relu_chi1_and_critical_point(alpha):
    act = symgrad.activation("leaky_relu", alpha=alpha)
    assert mf.chi1(act, 1, 0).exact == (1 + alpha ** 2) / 2
    assert mf.critical_sigma_w2(act).exact == 2 / (1 + alpha ** 2)


def test_identity_chi1_is_sigma_w2_and_q_star_is_geometric():
    assert mf.chi1("identity", sympy.Rational(1, 2), 1).exact == sympy.Rational(1, 2)
    assert mf.q_star("identity", sympy.Rational(1, 2), 1).q.exact == 2  # σ_b²/(1 − σ_w²)
    assert mf.critical_sigma_w2("identity").exact == 1


def test_tanh_at_zero_bias_is_critical_at_one_with_q_star_zero():
    assert mf.critical_sigma_w2("tanh").exact == 1
    fp = mf.q_star("tanh", 0.5, 0)
    assert fp.q.exact == 0 and fp.stable
    assert mf.chi1("tanh", 0.5, 0).exact == sympy.Rational(1, 2)
    assert mf.phase("tanh", 1, 0) == "critical"


def test_erf_closed_form_moments_and_critical_point():
    assert mf.critical_sigma_w2("erf(z)").exact == sympy.pi / 4
    # At q* = 0 (σ_b² = 0, σ_w² < π/4): χ₁ = σ_w² · 4/π.
    assert mf.chi1("erf(z)", sympy.Rational(1, 2), 0).exact == 2 / sympy.pi
    # The closed-form second moment equals the quadrature one within its stated error.
    act = symgrad.activation("erf(z)")
    for q in (0.1, 1.0, 7.0):
        exact = float(2 / sympy.pi * sympy.asin(sympy.Float(2 * q) / (1 + 2 * q)))
        m, e = mf._second_moment(act, q)
        assert abs(m[0] - exact) <= e[0] + 4 * 2.0 ** -53 * exact


# ---------------------------------------------------------------------------------------------
# Fixed points: the cases careless code gets wrong
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w2, b2", [(2.5, 0), (3, 1), (2, 0.5)])
def test_relu_without_a_finite_fixed_point_is_refused(w2, b2):
    with pytest.raises(symgrad.InvalidArgument, match="no finite fixed point"):
        mf.q_star("relu", w2, b2)


def test_relu_at_two_keeps_every_q():
    for q0 in (0.5, 1, 3):
        fp = mf.q_star("relu", 2, 0, q0=q0)
        assert fp.neutral and fp.q.exact == sympy.nsimplify(q0)
    assert mf.depth_scales("relu", 2, 0).xi_q.value == math.inf


@pytest.mark.parametrize("act", ["tanh", "gelu", "silu", "erf(z)", "softsign"])
def test_q_star_is_zero_through_the_origin_without_bias(act):
    fp = mf.q_star(act, 0.5, 0)
    assert fp.q.exact == 0 and fp.q.value == 0.0 and fp.stable


def test_tanh_above_one_has_two_fixed_points_and_the_stable_one_is_reported():
    fp = mf.q_star("tanh", 2, 0)
    assert fp.q.value > 0.5 and fp.stable and fp.slope.value < 1
    assert 0.0 in fp.others  # q = 0 is a fixed point too, but unstable (slope σ_w² = 2)
    # The reported q* really is fixed: one step of the length map returns it.
    assert abs(mf.length_map("tanh", 2, 0, fp.q.value).value - fp.q.value) <= 1e-12


# ---------------------------------------------------------------------------------------------
# Quadrature: split at kinks, errors that hold against an independent 30-digit integral
# ---------------------------------------------------------------------------------------------


def _mp_expect(fn, q, kinks=(0,)):
    with mpmath.workdps(30):
        s = mpmath.sqrt(q)
        pts = [-mpmath.inf] + [mpmath.mpf(k) / s for k in kinks] + [mpmath.inf]
        return mpmath.quad(lambda t: fn(s * t) * mpmath.npdf(t), pts)


_MP = {
    "tanh": (lambda x: mpmath.tanh(x), lambda x: 1 - mpmath.tanh(x) ** 2),
    "sigmoid": (lambda x: 1 / (1 + mpmath.exp(-x)), lambda x: mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2),
    "relu": (lambda x: max(x, 0), lambda x: 1 if x > 0 else 0),
    "elu": (lambda x: x if x > 0 else mpmath.expm1(x), lambda x: 1 if x > 0 else mpmath.exp(x)),
    "softplus": (lambda x: mpmath.log1p(mpmath.exp(x)), lambda x: 1 / (1 + mpmath.exp(-x))),
    "gelu": (lambda x: x * mpmath.ncdf(x), lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x)),
    "softsign": (lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2),
}


@pytest.mark.parametrize("name", sorted(_MP))
@pytest.mark.parametrize("q", [0.05, 1.0, 20.0])
def test_quadrature_error_bounds_hold_against_mpmath(name, q):
    act = symgrad.activation(name)
    phi, dphi = _MP[name]
    for ours, ref in ((mf._second_moment(act, q), _mp_expect(lambda x: phi(x) ** 2, q)),
                      (mf._prime2_moment(act, q), _mp_expect(lambda x: dphi(x) ** 2, q))):
        (v,), (e,) = ours
        assert e < 1e-10 * max(1.0, abs(v))  # the stated error is small enough to mean something
        assert abs(v - float(ref)) <= e, (name, q, v, float(ref), e)


def test_stated_error_still_bounds_the_true_error_at_a_coarse_resolution(monkeypatch):
    """With 3 and 6 nodes a piece the rule is far from converged: the stated error must grow
    with the true one (it is the difference of the two resolutions), not stay at rounding size."""
    monkeypatch.setattr(mf, "_N_NODES", 3)
    for name, q in (("tanh", 2.0), ("elu", 5.0), ("gelu", 9.0)):
        act = symgrad.activation(name)
        phi, _ = _MP[name]
        (v,), (e,) = mf._second_moment(act, q)
        ref = float(_mp_expect(lambda x: phi(x) ** 2, q))
        assert abs(v - ref) <= e, (name, v, ref, e)


def test_chi1_at_q_zero_averages_the_one_sided_slopes():
    """At q = 0, E[φ'(√q Z)²] → (φ'(0⁺)² + φ'(0⁻)²)/2: ReLU gives 1/2, not θ(0)² = 0."""
    (v,), (e,) = mf._prime2_moment(symgrad.activation("relu"), 0.0)
    assert v == 0.5 and e == 0.0
    (v,), _ = mf._prime2_moment(symgrad.activation("leaky_relu", alpha=0.5), 0.0)
    assert v == (1 + 0.25) / 2


def test_gauss_hermite_across_relus_kink_is_wrong_and_the_split_rule_is_not():
    """301-node Gauss–Hermite puts E[θ(Z)²] at 0.464 (7% low); splitting at the kink gives 1/2."""
    x, w = np.polynomial.hermite.hermgauss(301)
    naive = float(np.sum(w * (np.sqrt(2) * x > 0)) / math.sqrt(math.pi))
    assert abs(naive - 0.5) > 0.03
    (v,), (e,) = mf._prime2_moment(symgrad.activation("relu"), 1.0)
    assert abs(v - 0.5) <= e and e < 1e-12


# ---------------------------------------------------------------------------------------------
# The critical line, against an independent mpmath solution
# ---------------------------------------------------------------------------------------------


def _mp_tanh_critical(b2):
    """σ_w² on the critical line by mpmath alone: q solves E[tanh²]/E[tanh'²] + σ_b² = q."""
    with mpmath.workdps(25):
        m = lambda q: _mp_expect(lambda x: mpmath.tanh(x) ** 2, q, kinks=())  # noqa: E731
        p = lambda q: _mp_expect(lambda x: (1 - mpmath.tanh(x) ** 2) ** 2, q, kinks=())  # noqa: E731
        q = mpmath.findroot(lambda q: m(q) / p(q) + b2 - q, 0.2)
        return float(1 / p(q))


@pytest.mark.parametrize("b2", [0.05, 0.5])
def test_tanh_critical_line_matches_an_independent_mpmath_solution(b2):
    ours = mf.critical_sigma_w2("tanh", b2)
    ref = _mp_tanh_critical(b2)
    assert abs(ours.value - ref) <= ours.error + 1e-12 * ref, (ours, ref)
    assert mf.phase("tanh", ours.value * 0.97, b2) == "ordered"
    assert mf.phase("tanh", ours.value * 1.03, b2) == "chaotic"


def test_critical_line_agrees_with_pointwise_critical_values():
    b2s = [0.0, 0.05, 0.3, 1.0]
    line = mf.critical_line("tanh", b2s)
    for b2, v in zip(b2s, line):
        assert abs(v.value - mf.critical_sigma_w2("tanh", b2).value) <= 2 * v.error + 1e-14


def test_chi1_on_the_critical_line_is_one():
    w2 = mf.critical_sigma_w2("tanh", 0.3)
    c = mf.chi1("tanh", w2.value, 0.3)
    assert abs(c.value - 1) <= c.error + 1e-10


# ---------------------------------------------------------------------------------------------
# Depth scales and the predicted gradient ratio
# ---------------------------------------------------------------------------------------------


def test_depth_scales_in_each_phase():
    ordered = mf.depth_scales("relu", 1, 1)
    assert ordered.xi_grad.exact == 1 / sympy.log(2) and ordered.c_star.value == 1.0
    critical = mf.depth_scales("tanh", 1, 0)
    assert critical.xi_grad.value == math.inf
    chaotic = mf.depth_scales("tanh", 2.5, 0.05)
    assert 0 < chaotic.c_star.value < 1
    c1 = mf.chi1("tanh", 2.5, 0.05)
    assert abs(chaotic.xi_grad.value - 1 / math.log(c1.value)) <= chaotic.xi_grad.error + 1e-12


def test_predicted_gradient_ratio_is_chi1_to_the_depth():
    r = mf.predicted_gradient_ratio("relu", 1, 0, 11)
    assert r.exact == sympy.Rational(1, 2) ** 10
    deep = mf.predicted_gradient_ratio("relu", 1, 0, 5000)
    assert deep.value == 0.0 and deep.exact == sympy.Rational(1, 2) ** 4999


# ---------------------------------------------------------------------------------------------
# Simulation: a wide random network follows the length map
# ---------------------------------------------------------------------------------------------


def test_a_wide_random_tanh_network_follows_the_length_map():
    """Width 1000, depth 12, batch 8: the empirical second moment of the pre-activations tracks
    the length-map iterates.  Its relative sampling error is about √(2/(n·B)) ≈ 1.6% per layer;
    5σ, plus 5σ of the accumulated error along the depth, gives the tolerance below."""
    rng = np.random.default_rng(0)
    n, depth, batch, w2, b2 = 1000, 12, 8, 1.8, 0.05
    x = rng.standard_normal((n, batch))
    a, q = x, 1.0
    for layer in range(1, depth + 1):
        W = rng.standard_normal((n, n)) * math.sqrt(w2 / n)
        b = rng.standard_normal((n, 1)) * math.sqrt(b2)
        zz = W @ a + b
        q = mf.length_map("tanh", w2, b2, q).value if layer > 1 else w2 * float(np.mean(x ** 2)) + b2
        emp = float(np.mean(zz ** 2))
        assert abs(emp - q) <= 5 * math.sqrt(2 / (n * batch)) * q * math.sqrt(layer) + 5 * b2 / math.sqrt(n), (layer, emp, q)
        a = np.tanh(zz)
    fp = mf.q_star("tanh", w2, b2)
    assert abs(q - fp.q.value) < 1e-3  # twelve layers from q = 1.8 reach q*


# ---------------------------------------------------------------------------------------------
# Chains: the growth rate
# ---------------------------------------------------------------------------------------------


def test_identity_chain_growth_rate_is_expected_log_abs_weight():
    """φ' = 1, so λ = E log|w| = ln σ_w − (γ + ln 2)/2 exactly; the Monte-Carlo term is 0."""
    r = mf.growth_rate("identity", (4.0, 1.0), samples=200, layers=5, seed=3)
    exact = 0.5 * math.log(4.0) - (0.5772156649015329 + math.log(2)) / 2
    assert abs(r.rate - exact) < 1e-12 and r.ci[0] <= exact <= r.ci[1]


def test_sigmoid_chain_typical_rate_is_below_nielsens_bound():
    r = mf.growth_rate("sigmoid", samples=2000, layers=100, seed=0)
    assert r.ci[0] < r.rate < r.ci[1] < r.worst_case  # typically smaller than the 1/4 bound
    # log(1/4) + E log|w| is the worst case; the typical factor is e^{λ} ≈ 0.1.
    assert abs(r.worst_case - (math.log(0.25) + r.log_abs_w)) < 1e-15



def test_growth_rate_interval_covers_the_long_run_rate():
    """Twenty small runs: a 99% interval covers the long-run rate in (nearly) all of them; an
    interval ten times too narrow would cover it in about 2 of 20."""
    ref = mf.growth_rate("tanh", samples=20000, layers=100, seed=99)
    covered = 0
    for seed in range(20):
        r = mf.growth_rate("tanh", samples=200, layers=40, seed=seed)
        covered += r.ci[0] - (ref.ci[1] - ref.rate) <= ref.rate <= r.ci[1] + (ref.ci[1] - ref.rate)
    assert covered >= 16


def test_relu_chain_dies():
    r = mf.growth_rate("relu", samples=100, layers=50, seed=0)
    assert r.rate == -math.inf and "dies" in r.note


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda: mf.chi1("tanh", -1, 0), "sigma_w2=-1 must be a finite number"),
    (lambda: mf.chi1("tanh", float("nan"), 0), "sigma_w2=nan"),
    (lambda: mf.chi1("tanh", 1, float("inf")), "sigma_b2=inf"),
    (lambda: mf.chi1("tanh", True, 0), "must be a real number"),
    (lambda: mf.chi1("tanh", "1", 0), "must be a real number"),
    (lambda: mf.chi1("tanh", "__import__('os')", 0), "must be a real number"),
    (lambda: mf.chi1("tanh", 1e9, 0), "above"),
    (lambda: mf.q_star("tanh", 1, 0, q0=-1), "q0=-1"),
    (lambda: mf.chi1("exp(z**2)", 1, 0), "Gaussian moments"),
    (lambda: mf.chi1("nosuch", 1, 0), "unknown activation"),
    (lambda: mf.predicted_gradient_ratio("relu", 1, 0, 0), "depth=0 must be a positive int"),
    (lambda: mf.predicted_gradient_ratio("relu", 1, 0, 2.5), "depth=2.5"),
    (lambda: mf.growth_rate("sigmoid", "xavier"), "init='xavier'"),
    (lambda: mf.growth_rate("sigmoid", (0, 1)), "sigma_w2=0"),
    (lambda: mf.growth_rate("sigmoid", samples=1), "samples=1"),
    (lambda: mf.growth_rate("sigmoid", samples=10**6, layers=10**3), "exceeds"),
    (lambda: mf.critical_sigma_w2("softplus", 0.3), "no critical"),
    (lambda: mf.critical_line("tanh", None), "must be a list of variances"),
    (lambda: mf.critical_line("tanh", "0.1"), "must be a list of variances"),
    (lambda: mf.critical_line("tanh", [0.1, -1]), "sigma_b2=-1"),
    # GELU's attracting branch ends in a saddle-node with χ₁ ≈ 0.75: χ₁ = 1 only at unstable q.
    (lambda: mf.critical_sigma_w2("gelu", 0.05), "no critical"),
])
def test_bad_input_is_refused_naming_the_value(call, match):
    with pytest.raises(symgrad.InvalidArgument, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# symgrad.meanfield, one-sided slopes, critical gain beside torch.nn.init.calculate_gain
# ---------------------------------------------------------------------------------------------


def test_meanfield_is_reachable_from_the_top_level():
    assert symgrad.meanfield is mf
    from symgrad import meanfield

    assert meanfield is mf and symgrad.meanfield.chi1("relu", 2, 0).exact == 1


def test_selu_one_sided_slopes_at_zero_are_lambda_and_lambda_alpha():
    """SymPy's limit of SELU's Piecewise derivative at 0⁺ once took the z ≤ 0 branch (λα)."""
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    plus, minus = mf._one_sided_slopes(mf._act("selu"))
    assert float(plus) == pytest.approx(lam, rel=1e-15) and float(minus) == pytest.approx(lam * alpha, rel=1e-15)
    # q* = 0 at σ_b = 0 below criticality: χ₁ is the length map's slope at 0, σ_w² (λ² + λ²α²)/2.
    assert mf.chi1("selu", sympy.Rational(3, 10), 0).value == pytest.approx(0.3 * (lam ** 2 + (lam * alpha) ** 2) / 2, rel=1e-14)


def _mp_gauss(f):
    return mpmath.quad(lambda x: f(x) * mpmath.npdf(x), [-mpmath.inf, 0, mpmath.inf])


@pytest.mark.parametrize("name, exact", [
    ("identity", sympy.Integer(1)), ("relu", sympy.sqrt(2)), ("tanh", sympy.Integer(1)),
    ("leaky_relu", sympy.sqrt(sympy.Rational(2) / (1 + sympy.Rational(1, 100) ** 2))), ("elu", sympy.Integer(1)),
])
def test_critical_gain_exact_values(name, exact):
    cg = mf.critical_gain(name)
    assert sympy.simplify(cg.gain.exact - exact) == 0 and cg.sigma_b2.exact == 0 and cg.gain.error == 0
    assert sympy.simplify(cg.sigma_w2.exact - exact ** 2) == 0
    assert mf.phase(name, cg.sigma_w2.exact, 0) == "critical"


def test_selu_critical_gain_is_two_over_the_sum_of_squared_slopes():
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    cg = mf.critical_gain("selu")
    assert cg.gain.exact is not None and cg.gain.value == pytest.approx(math.sqrt(2 / (lam ** 2 * (1 + alpha ** 2))), rel=1e-14)


def test_sigmoid_critical_gain_at_zero_bias_checked_by_mpmath():
    cg = mf.critical_gain("sigmoid")
    assert cg.sigma_b2.exact == 0 and cg.gain.exact is None and 0 < cg.gain.error < 1e-9
    # Independent check: at σ_w² = gain², iterate the length map with mpmath and evaluate χ₁.
    # (From the library's q*, checked to be a fixed point in mpmath: iterating 200 times from q = 1
    # in mpmath reaches the same point but took 20 s.)
    w2 = mpmath.mpf(cg.sigma_w2.value)
    q = mpmath.mpf(mf.q_star("sigmoid", cg.sigma_w2.value, 0).q.value)
    assert abs(w2 * _mp_gauss(lambda x: mpmath.sigmoid(mpmath.sqrt(q) * x) ** 2) - q) < 1e-9 * q
    d = lambda u: mpmath.sigmoid(u) * (1 - mpmath.sigmoid(u))  # noqa: E731
    chi = w2 * _mp_gauss(lambda x: d(mpmath.sqrt(q) * x) ** 2)
    assert abs(float(chi) - 1) < 1e-9


def test_gelu_needs_a_positive_bias_variance_for_criticality():
    cg = mf.critical_gain("gelu")
    b2 = cg.sigma_b2
    assert b2.exact is None and 0.1 < b2.value < 0.3 and b2.error <= 1e-5 * b2.value
    assert mf.critical_line("gelu", [b2.value - 2 * b2.error])[0] is None
    assert mf.critical_line("gelu", [b2.value])[0] is not None
    assert "smallest σ_b²" in cg.explanation


def test_gain_table_against_pytorchs_constants():
    rows = {r.activation: r for r in mf.gain_table()}
    # torch/nn/init.py calculate_gain, hard-coded (PyTorch issue 24991).
    assert rows["relu"].torch_gain == sympy.sqrt(2) and rows["tanh"].torch_gain == sympy.Rational(5, 3)
    assert rows["sigmoid"].torch_gain == 1 and rows["selu"].torch_gain == sympy.Rational(3, 4)
    assert rows["identity"].torch_gain == 1
    assert float(rows["leaky_relu"].torch_gain) == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)), rel=1e-15)
    assert {k: r.phase_at_torch for k, r in rows.items()} == {
        "identity": "critical", "relu": "critical", "leaky_relu": "critical", "tanh": "chaotic", "sigmoid": "ordered", "selu": "chaotic"}
    # tanh at 5/3 (σ_w² = 25/9): q* > 0 and χ₁ ≈ 1.2098, against an mpmath evaluation.
    c = rows["tanh"].chi1_at_torch
    # (From the library's q*, checked to be a fixed point in mpmath, rather than 300 mpmath iterations.)
    q = mpmath.mpf(mf.q_star("tanh", 25 / 9, 0).q.value)
    assert abs(mpmath.mpf(25) / 9 * _mp_gauss(lambda x: mpmath.tanh(mpmath.sqrt(q) * x) ** 2) - q) < 1e-10 * q
    chi = mpmath.mpf(25) / 9 * _mp_gauss(lambda x: mpmath.sech(mpmath.sqrt(q) * x) ** 4)
    assert abs(c.value - float(chi)) <= c.error + 1e-12 and 1.2 < c.value < 1.22
    assert rows["tanh"].critical.gain.exact == 1 and "chaotic" in rows["tanh"].note


def test_softplus_has_no_critical_gain():
    with pytest.raises(symgrad.InvalidArgument, match="no critical initialisation for softplus"):
        mf.critical_gain("softplus")
