"""symgrad.testing.strategies: eager argument validation, regimes that hold, finite floats, shrinking."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import Phase, find, given, settings, strategies as st

import symgrad
from symgrad import InvalidArgument
from symgrad.testing import strategies as S
from symgrad.testing.properties import chain_factors

ULP = float(np.finfo(np.float64).eps)
CHAIN = symgrad.chain(3)
RELU_CHAIN = symgrad.chain(3, "relu")
DENSE = symgrad.network([2, 3, 1])

# ---------------------------------------------------------------------------------------------
# One table of invalid calls: each raises InvalidArgument when the strategy is *made*, and the
# message says what to pass instead (the fragment in the third column).
# ---------------------------------------------------------------------------------------------

INVALID = [
    (S.activations, dict(names="sigmoid"), "must be a list"),
    (S.activations, dict(names=["sigmoidal"]), "not a built-in"),
    (S.activations, dict(names=[], custom=[]), "nothing to draw"),
    (S.activations, dict(custom="z*sigmoid(z)"), "must be a list"),
    (S.activations, dict(custom=["__import__('os')"]), "custom activation"),
    (S.chains, dict(min_depth=0), "between 1 and"),
    (S.chains, dict(max_depth=2.0), "must be an int"),
    (S.chains, dict(max_depth=True), "must be an int"),
    (S.chains, dict(max_depth=10**6), "between 1 and"),
    (S.chains, dict(min_depth=5, max_depth=2), "min_depth <= max_depth"),
    (S.chains, dict(activation="sigmoidal"), "is not an activation"),
    (S.chains, dict(activation=["sigmoid", "tanh"]), "activations(names="),
    (S.chains, dict(loss="hinge"), "quadratic"),
    (S.networks, dict(min_width=0), "between 1 and"),
    (S.networks, dict(max_width=1000), "between 1 and"),
    (S.networks, dict(min_width=3, max_width=2), "min_width <= max_width"),
    (S.networks, dict(min_depth=4, max_depth=3), "min_depth <= max_depth"),
    (S.networks, dict(activation=3), "is not an activation"),
    (S.parameters, dict(net="chain"), "must be a symgrad chain"),
    (S.parameters, dict(net=S.chains()), "draw the network first"),
    (S.parameters, dict(net=CHAIN, regime="chaotic"), "'bounded'"),
    (S.parameters, dict(net=CHAIN, max_weight=0), "must be > 0"),
    (S.parameters, dict(net=CHAIN, max_weight=math.inf), "must be finite"),
    (S.parameters, dict(net=CHAIN, max_bias="1"), "real number"),
    (S.parameters, dict(net=CHAIN, max_input=-1.0), "must be > 0"),
    (S.parameters, dict(net=CHAIN, saturation=0.0), "must be > 0"),
    (S.parameters, dict(net=CHAIN, allow_nan=1), "True or False"),
    (S.parameters, dict(net=CHAIN, rate=0.5), "only applies"),
    (S.parameters, dict(net=CHAIN, regime="vanishing", rate=1.0), "0 < rate < 1"),
    (S.parameters, dict(net=CHAIN, regime="vanishing", rate=-0.5), "must be > 0"),
    (S.parameters, dict(net=CHAIN, regime="exploding", rate=0.5), "rate > 1"),
    (S.parameters, dict(net=CHAIN, regime="exploding", rate=26.0), "raise max_weight to at least 104"),
    (S.parameters, dict(net=symgrad.chain(3, "relu"), regime="exploding", rate=2.0, max_weight=1.5), "raise max_weight"),
    (S.parameters, dict(net=DENSE, regime="vanishing"), "defined for chains"),
    (S.parameters, dict(net=DENSE, regime="exploding"), "defined for chains"),
    (S.parameters, dict(net=CHAIN, regime="dead"), "such as relu"),
    (S.activations, dict(names=[3]), "not a built-in"),
    (S.activations, dict(names=("sigmoid", None)), "not a built-in"),
    (S.chains, dict(min_depth=-3), "between 1 and"),
    (S.chains, dict(min_depth="2"), "must be an int"),
    (S.chains, dict(loss=None), "quadratic"),
    (S.networks, dict(max_depth=True), "must be an int"),
    (S.networks, dict(min_width=1.5), "must be an int"),
    (S.networks, dict(loss="hinge"), "quadratic"),
    (S.networks, dict(activation=("relu",)), "activations(names="),
    (S.parameters, dict(net=None), "must be a symgrad chain"),
    (S.parameters, dict(net=CHAIN, regime=None), "'bounded'"),
    (S.parameters, dict(net=CHAIN, max_weight=True), "real number"),
    (S.parameters, dict(net=CHAIN, max_input=math.nan), "must be finite"),
    (S.parameters, dict(net=CHAIN, saturation=-math.inf), "must be finite"),
    (S.parameters, dict(net=CHAIN, allow_infinity="yes"), "True or False"),
    (S.parameters, dict(net=CHAIN, regime="vanishing", rate=True), "real number"),
    (S.parameters, dict(net=CHAIN, regime="exploding", rate=math.inf), "must be finite"),
    (S.parameters, dict(net=CHAIN, regime="saturated", rate=2.0), "only applies"),
    (S.parameters, dict(net=symgrad.chain(3, "relu"), max_bias=1e308), "overflows float64"),
    (S.parameters, dict(net=symgrad.chain(3, "relu"), regime="saturated", saturation=1e307), "overflows float64"),
    (S.parameters, dict(net=symgrad.chain(600, "relu")), "|z498|"),   # 8·4^(l−1) + … passes 1e300 at layer 498
    (S.parameters, dict(net=symgrad.network([64, 64, 64], "identity"), max_weight=1e150), "|z2"),
]


@pytest.mark.parametrize("strategy, kwargs, fix", INVALID, ids=[f"{f.__name__}-{i}" for i, (f, _, _) in enumerate(INVALID)])
def test_invalid_arguments_raise_eagerly_with_a_fix_it_message(strategy, kwargs, fix):
    with pytest.raises(InvalidArgument) as info:
        strategy(**kwargs)  # made, never drawn: the check must not wait for a draw
    msg = str(info.value)
    assert fix in msg
    # ... and it names the value it refuses (the last keyword is the offending one in this table)
    bad = list(kwargs.values())[-1]
    named = [bad] + (list(bad) if isinstance(bad, (list, tuple)) else [])
    assert any(repr(v) in msg or str(v) in msg for v in named), msg


@pytest.mark.parametrize("strategy", [S.activations, S.chains, S.networks, S.parameters])
def test_all_arguments_are_keyword_only(strategy):
    with pytest.raises(TypeError):
        strategy(CHAIN)


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------


@settings(deadline=None)
@given(S.chains())
def test_chains_are_bounded_by_default(net):
    assert isinstance(net, symgrad.symbolic.Chain) and 1 <= net.depth <= 8


@settings(deadline=None)
@given(S.networks())
def test_networks_are_bounded_by_default(net):
    assert isinstance(net, symgrad.symbolic.Network) and 1 <= net.depth <= 3 and all(1 <= n <= 4 for n in net.widths)


@settings(deadline=None)
@given(S.activations(names=["relu"], custom=["z/(1 + z**2)"]))
def test_custom_activations_are_drawn_alongside_builtins(act):
    assert act.name in ("relu", "z/(1 + z**2)")


def test_chains_shrink_to_the_shallowest_sigmoid_chain():
    net = find(S.chains(), lambda n: n.depth >= 3)
    assert (net.depth, net.activation.name) == (3, "sigmoid")


def test_networks_shrink_to_narrow_layers():
    net = find(S.networks(), lambda n: n.depth >= 2)
    assert net.widths == (1, 1, 1)


def test_parameters_shrink_to_a_readable_counterexample():
    p = find(S.parameters(net=CHAIN), lambda p: abs(p["w2"]) > 1)
    assert abs(p["w2"]) <= 2.0 and p["w1"] == p["w3"] == p["b1"] == p["a0"] == 0.0


# ---------------------------------------------------------------------------------------------
# Parameters: valid for backprop, finite, and in the regime asked for
# ---------------------------------------------------------------------------------------------


def _finite(params):
    return all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in params.values())


@settings(deadline=None)
@given(st.data())
def test_parameters_are_finite_and_accepted_by_backprop(data):
    net = data.draw(st.one_of(S.chains(max_depth=5), S.networks()))
    params = data.draw(S.parameters(net=net))
    assert _finite(params) and 0.0 <= float(np.min(params["y"])) <= float(np.max(params["y"])) <= 1.0
    res = symgrad.backprop(net, params)
    assert set(res.grads) == set(net.parameters)


@settings(deadline=None)
@given(st.data())
def test_bounded_regime_respects_the_weight_bound(data):
    bound = data.draw(st.floats(0.1, 10.0))
    net = data.draw(st.one_of(S.chains(), S.networks()))
    params = data.draw(S.parameters(net=net, max_weight=bound))
    weights = [np.abs(np.asarray(params[p])) for p in net.parameters if p[0] in "wW"]
    assert all(np.all(w <= bound) for w in weights)


@settings(deadline=None)
@given(st.data())
def test_vanishing_regime_keeps_every_factor_at_most_rate(data):
    rate = data.draw(st.floats(0.01, 0.99))
    net = data.draw(S.chains(min_depth=2))
    params = data.draw(S.parameters(net=net, regime="vanishing", rate=rate))
    factors = chain_factors(net, params)[0]
    assert np.all(np.abs(factors) <= rate), (factors, rate)


@settings(deadline=None)
@given(st.data())
def test_exploding_regime_keeps_every_factor_at_least_rate(data):
    net = data.draw(S.chains(min_depth=2, activation=S.activations(
        names=["sigmoid", "tanh", "relu", "leaky_relu", "gelu", "silu", "softplus", "softsign", "elu", "identity"])))
    rate = data.draw(st.floats(1.01, 20.0))
    params = data.draw(S.parameters(net=net, regime="exploding", rate=rate))
    factors = chain_factors(net, params)[0]
    assert np.all(np.abs(factors) >= rate), (factors, rate)
    # Structure: every z_j (j < L) is pinned where |φ'| is largest among 0 and 1.
    loc = symgrad.forward(net, params)
    zstar = {"sigmoid": 0.0, "tanh": 0.0, "softsign": 0.0, "elu": 0.0, "identity": 0.0,
             "relu": 1.0, "leaky_relu": 1.0, "gelu": 1.0, "silu": 1.0, "softplus": 1.0}[net.activation.name]
    for j in range(1, net.depth):
        # z = fl(w·a) + fl(z* − fl(w·a)): the rounding of the second term, u·(|w a| + |z*|), and of the sum, u·|z*|
        wa = abs(params["w%d" % j] * (params["a0"] if j == 1 else float(loc["a%d" % (j - 1)])))
        assert abs(float(loc["z%d" % j]) - zstar) <= ULP * (wa + 2 * zstar) / 2 * (1 + 1e-12), (j, loc, zstar)


@settings(deadline=None)
@given(S.parameters(net=symgrad.chain(6), regime="exploding", rate=25.0))
def test_exploding_sigmoid_regime_is_nielsens_construction(params):
    """w = 100 and z_j = 0 for j < L, so every factor is exactly 100 · σ'(0) = 25."""
    net = symgrad.chain(6)
    loc = symgrad.forward(net, params)
    assert all(abs(params["w%d" % j]) == 100.0 for j in range(2, 7))
    assert all(loc["z%d" % j] == 0.0 for j in range(1, 6))
    assert np.all(np.abs(chain_factors(net, params)[0]) == 25.0)


@settings(deadline=None)
@given(st.data())
def test_saturated_regime_puts_every_preactivation_beyond_the_threshold(data):
    net = data.draw(st.one_of(S.chains(), S.networks()))
    sat = data.draw(st.floats(0.5, 10.0))
    params = data.draw(S.parameters(net=net, regime="saturated", saturation=sat))
    loc = symgrad.forward(net, params)
    zs = np.concatenate([np.atleast_1d(loc["z%d" % l]) for l in range(1, net.depth + 1)])
    assert np.all(np.abs(zs) > sat), (zs, sat)


@settings(deadline=None)
@given(st.data())
def test_dead_regime_has_a_dead_relu_unit(data):
    net = data.draw(st.one_of(S.chains(activation="relu"), S.networks(activation="relu")))
    params = data.draw(S.parameters(net=net, regime="dead"))
    loc = symgrad.forward(net, params)
    zs = np.concatenate([np.atleast_1d(loc["z%d" % l]) for l in range(1, net.depth + 1)])
    assert np.any(zs <= 0.0) and np.any(net.activation.grad(zs) == 0.0)


@settings(deadline=None)
@given(S.parameters(net=RELU_CHAIN, regime="dead"))
def test_a_dead_relu_layer_zeroes_every_earlier_bias_gradient(params):
    loc = symgrad.forward(RELU_CHAIN, params)
    dead = min(j for j in range(1, 4) if loc["z%d" % j] <= 0)
    res = symgrad.backprop(RELU_CHAIN, params)
    assert all(res.grads["b%d" % j] == 0.0 for j in range(1, dead + 1))


def test_nan_and_inf_only_when_asked():
    p = find(S.parameters(net=CHAIN, allow_nan=True), lambda p: math.isnan(p["a0"]))
    assert math.isnan(p["a0"])
    p = find(S.parameters(net=DENSE, allow_infinity=True), lambda p: bool(np.isinf(p["a0"]).any()))
    with pytest.raises(InvalidArgument, match="must be finite"):
        symgrad.backprop(DENSE, p)


@settings(deadline=None)
@given(S.parameters(net=DENSE))
def test_dense_parameters_have_the_network_shapes(params):
    for name in ("a0", "y") + DENSE.parameters:
        assert np.shape(params[name]) == DENSE.shape(name)


# ---------------------------------------------------------------------------------------------
# Each regime reaches its boundary (it is not vacuous) and differs from the default draw
# ---------------------------------------------------------------------------------------------

# Generation only: the first example found is enough (shrinking it would take seconds, and the
# assertions below hold for any example the condition accepts).
SETTINGS = settings(deadline=None, max_examples=2000, database=None, phases=[Phase.generate])


def _max_factor(net, p):
    return float(np.max(np.abs(chain_factors(net, p)[0])))


def test_vanishing_regime_reaches_its_rate_and_bounded_draws_exceed_it():
    net = symgrad.chain(3, "tanh")
    p = find(S.parameters(net=net, regime="vanishing", rate=0.5), lambda p: _max_factor(net, p) >= 0.5 * 0.99, settings=SETTINGS)
    assert 0.5 * 0.99 <= _max_factor(net, p) <= 0.5
    p = find(S.parameters(net=net), lambda p: _max_factor(net, p) > 0.5, settings=SETTINGS)
    assert _max_factor(net, p) > 0.5   # so "vanishing" is a restriction, not the default


def test_exploding_regime_reaches_its_rate_and_bounded_draws_fall_below_it():
    net = symgrad.chain(3, "sigmoid")
    low = lambda p: float(np.min(np.abs(chain_factors(net, p)[0])))  # noqa: E731
    p = find(S.parameters(net=net, regime="exploding", rate=2.0), lambda p: low(p) <= 2.0 * 1.01, settings=SETTINGS)
    assert 2.0 <= low(p) <= 2.0 * 1.01
    p = find(S.parameters(net=net), lambda p: low(p) < 2.0, settings=SETTINGS)
    assert low(p) < 2.0


def _min_abs_z(net, p):
    loc = symgrad.forward(net, p)
    return float(min(np.min(np.abs(np.atleast_1d(loc["z%d" % l]))) for l in range(1, net.depth + 1)))


def test_saturated_regime_reaches_its_threshold_and_bounded_draws_do_not_saturate():
    net = symgrad.chain(3)
    p = find(S.parameters(net=net, regime="saturated", saturation=2.0), lambda p: _min_abs_z(net, p) <= 2.01, settings=SETTINGS)
    assert 2.0 < _min_abs_z(net, p) <= 2.01
    p = find(S.parameters(net=net), lambda p: _min_abs_z(net, p) < 2.0, settings=SETTINGS)
    assert _min_abs_z(net, p) < 2.0


def test_bounded_regime_reaches_its_weight_bound():
    net = symgrad.network([2, 2, 1])
    big = lambda p: max(float(np.max(np.abs(p[k]))) for k in ("W1", "W2"))  # noqa: E731
    p = find(S.parameters(net=net, max_weight=1.5), lambda p: big(p) >= 1.5 * 0.99, settings=SETTINGS)
    assert 1.5 * 0.99 <= big(p) <= 1.5


def test_dead_regime_is_not_the_default_draw():
    def alive(p):
        loc = symgrad.forward(RELU_CHAIN, p)
        return all(loc["z%d" % j] > 0 for j in range(1, 4))

    p = find(S.parameters(net=RELU_CHAIN), alive, settings=SETTINGS)
    assert alive(p)   # a bounded relu draw can have no dead unit; the "dead" regime always has one (above)


@pytest.mark.parametrize("name, zstar", [("leaky_relu", 1.0), ("relu", 1.0), ("silu", 1.0), ("sigmoid", 0.0), ("elu", 0.0)])
def test_exploding_pins_z_where_the_derivative_is_largest_of_zero_and_one(name, zstar):
    """Leaky ReLU's φ'(0) = α = 0.01 (left derivative): pinning z = 0 would need |w| ≥ 100·rate."""
    net = symgrad.chain(3, name)
    p = find(S.parameters(net=net, regime="exploding", rate=1.5), lambda p: True)
    loc = symgrad.forward(net, p)
    for j in (1, 2):   # the same rounding allowance as above
        wa = abs(p["w%d" % j] * (p["a0"] if j == 1 else float(loc["a%d" % (j - 1)])))
        assert abs(float(loc["z%d" % j]) - zstar) <= ULP * (wa + 2 * zstar) / 2 * (1 + 1e-12)


@settings(deadline=None, max_examples=200)
@given(st.data())
def test_saturated_and_dead_regimes_hold_exactly_even_where_w_a_is_huge(data):
    """With |w·a| up to 4e9, b = target − w·a misses the target by up to ε·4e9 ≈ 1e-6: the regime
    must still hold for the z the forward pass computes (it did not: z1 = 0.5 = saturation)."""
    net = data.draw(st.sampled_from([symgrad.chain(3, "relu"), symgrad.chain(3, "tanh"), symgrad.chain(4, "sigmoid"),
                                     symgrad.network([3, 3, 2], "relu"), symgrad.network([2, 3, 2], "sigmoid")]))
    dead = net.activation.name == "relu" and data.draw(st.booleans())
    if dead:
        params = data.draw(S.parameters(net=net, regime="dead", max_weight=1e9))
    else:
        params = data.draw(S.parameters(net=net, regime="saturated", saturation=0.5, max_weight=1e9))
    loc = symgrad.forward(net, params)
    zs = np.concatenate([np.atleast_1d(loc["z%d" % l]) for l in range(1, net.depth + 1)])
    if dead:
        assert np.any(zs < 0), zs
    else:
        assert np.all(np.abs(zs) > 0.5), zs



@settings(deadline=None, max_examples=200)
@given(st.data())
def test_exploding_regime_holds_where_the_pinned_z_rounds(data):
    """With |w·a| ~ 1e8, z = z* + δ with δ up to ~1e-8, and φ'(1 + δ) of GELU, SiLU, softplus moves
    by ~1e-9 relative: the weights must be chosen from the φ' actually reached, not from φ'(z*)."""
    net = data.draw(S.chains(min_depth=2, max_depth=5, activation=S.activations(names=["gelu", "silu", "softplus", "tanh"])))
    rate = data.draw(st.floats(1e7, 1e8))
    params = data.draw(S.parameters(net=net, regime="exploding", rate=rate, max_weight=1e9))
    factors = chain_factors(net, params)[0]
    assert np.all(np.abs(factors) >= rate), (factors, rate)


# ---------------------------------------------------------------------------------------------
# meanfield_params: (σ_w², σ_b²) in a mean-field phase
# ---------------------------------------------------------------------------------------------

from fractions import Fraction  # noqa: E402

from symgrad.theory import meanfield  # noqa: E402

MEANFIELD_INVALID = [
    (("tanh", "frozen"), {}, "'ordered', 'critical', 'chaotic'"),
    (("tanh", None), {}, "phase=None is unknown"),
    (("tanhh", "ordered"), {}, "is not an activation"),
    ((S.activations(), "ordered"), {}, "one activation"),
    ((["relu", "tanh"], "ordered"), {}, "one activation"),
    (("tanh", "ordered"), dict(margin=0), "must be > 0"),
    (("tanh", "ordered"), dict(margin=0.9), "(0, 0.5]"),
    (("tanh", "ordered"), dict(sigma_b2=-1.0), "between 0 and 1e6"),
    (("tanh", "ordered"), dict(sigma_b2=math.nan), "must be finite"),
    (("tanh", "ordered"), dict(sigma_b2="0.1"), "real number"),
    (("relu", "chaotic"), {}, "no chaotic phase"),
    (("relu", "critical"), dict(sigma_b2=0.5), "no finite fixed point at the critical"),
    (("gelu", "critical"), dict(sigma_b2=0.0), "try sigma_b2 in ["),
    (("erf(z)", "critical"), dict(sigma_b2=0.0), "irrational"),
]


@pytest.mark.parametrize("args, kwargs, fix", MEANFIELD_INVALID, ids=[str(i) for i in range(len(MEANFIELD_INVALID))])
def test_meanfield_params_refuse_bad_arguments_when_made(args, kwargs, fix):
    with pytest.raises(InvalidArgument, match="meanfield_params") as exc:
        S.meanfield_params(*args, **kwargs)
    assert fix in str(exc.value)


MEANFIELD_CASES = [(a, p) for a in ("relu", "tanh", "erf(z)", "sigmoid") for p in S.PHASES if (a, p) != ("relu", "chaotic")]


@pytest.mark.parametrize("act, phase", MEANFIELD_CASES)
def test_meanfield_params_lie_in_the_requested_phase(act, phase):
    @settings(max_examples=6, deadline=None)  # each meanfield.phase call runs SymPy or quadrature
    @given(S.meanfield_params(act, phase))
    def prop(params):
        sigma_w2, sigma_b2 = params
        assert sigma_b2 in S.MEANFIELD_SIGMA_B2
        assert meanfield.phase(act, sigma_w2, sigma_b2) == phase
        meanfield.q_star(act, sigma_w2, sigma_b2)  # a finite fixed point: raises otherwise

    prop()


@settings(max_examples=6, deadline=None)
@given(S.meanfield_params("tanh", "chaotic", sigma_b2=0.3, margin=0.2))
def test_meanfield_params_keep_their_margin_from_the_critical_line(params):
    sigma_w2, sigma_b2 = params
    crit = meanfield.critical_sigma_w2("tanh", 0.3).value
    assert sigma_b2 == 0.3 and 1.2 * crit <= sigma_w2 <= 4 * crit


def test_meanfield_params_are_exact_on_an_exact_critical_line():
    # leaky ReLU's line 20000/10001 is no float: the draw is that Fraction, and chi1 is exactly 1
    w, b = find(S.meanfield_params("leaky_relu", "critical"), lambda p: True)
    assert (w, b) == (Fraction(20000, 10001), 0.0) and meanfield.chi1("leaky_relu", w, b).exact == 1
    assert find(S.meanfield_params("relu", "critical"), lambda p: True) == (2.0, 0.0)
    assert find(S.meanfield_params("tanh", "critical", sigma_b2=0), lambda p: True) == (1.0, 0.0)
    # erf(z): irrational at σ_b² = 0, so the critical draws come from σ_b² > 0, on the line within the quadrature error
    w, b = find(S.meanfield_params("erf(z)", "critical"), lambda p: True)
    assert b == 0.05 and meanfield.phase("erf(z)", w, b) == "critical"


def test_meanfield_params_shrink_towards_zero_bias_and_sigmoid_has_a_line_there():
    w, b = find(S.meanfield_params("tanh", "ordered"), lambda p: True)
    assert b == 0.0 and 0.25 <= w <= 0.9
    w, b = find(S.meanfield_params("sigmoid", "chaotic"), lambda p: True)
    assert b == 0.0 and w > 100  # sigmoid's critical σ_w² at σ_b² = 0 is about 103


def test_meanfield_params_cache_is_bounded():
    S.meanfield_params("tanh", "ordered", sigma_b2=0.1)
    assert S._phase_range.cache_info().maxsize == 256 and S._critical.cache_info().maxsize == 128
