"""The numeric evaluator: sampling, backprop, closed forms evaluated, log space, checks, robustness."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symgrad
from symgrad import GradientCheckError, InvalidArgument
from symgrad.gradcheck import check_gradients
from symgrad.numeric import (
    backprop,
    evaluate_gradient,
    forward,
    sample,
)

# The compiled kernel (symgrad[jit], numba) must behave exactly like the NumPy one wherever it
# runs; tests/test_jit.py fails loudly in CI if numba is missing.
BACKENDS = ["numpy"] + (["numba"] if symgrad._jit.available() else [])

ACTS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"]


def _net(act, loss="quadratic", depth=4):
    # Cross-entropy needs a_L in (0, 1): a sigmoid output layer (the cancelling case).
    acts = [act] * (depth - 1) + ["sigmoid"] if loss == "cross_entropy" else act
    return symgrad.chain(depth, acts, loss)


# ------------------------------------------------------------------ sampling


def test_sample_shapes_chain_and_dense():
    net = symgrad.chain(3)
    p = sample(net, 5, seed=0)
    assert set(p) == {"a0", "y"} | set(net.parameters)
    assert all(np.shape(v) == (5,) for v in p.values())
    p1 = sample(net, seed=0)
    assert all(np.ndim(v) == 0 for v in p1.values())
    dn = symgrad.network([3, 4, 2])
    q = sample(dn, 6, seed=0)
    for name in ("a0", "y") + dn.parameters:
        assert q[name].shape == (6,) + dn.shape(name)
        assert q[name].dtype == np.float64


def test_sample_inits_and_seed():
    dn = symgrad.network([400, 300, 10])
    he = sample(dn, init="he", seed=1)
    assert abs(he["W1"].std() - math.sqrt(2 / 400)) < 0.01 * math.sqrt(2 / 400) * 5
    assert np.all(he["b1"] == 0)
    xa = sample(dn, init="xavier", seed=1)
    r = math.sqrt(6 / 700)
    assert np.abs(xa["W1"]).max() <= r and np.abs(xa["W1"]).max() > 0.9 * r
    un = sample(dn, init="uniform", seed=1)
    assert np.abs(un["W1"]).max() <= 1
    a, b = sample(dn, init="normal", seed=3), sample(dn, init="normal", seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.all((a["y"] >= 0) & (a["y"] <= 1))


def test_sample_fixed_values_for_worked_examples():
    net = symgrad.chain(2)
    p = sample(net, 3, value={"w1": 0.5, "a0": 1.0}, seed=0)
    assert np.all(p["w1"] == 0.5) and np.all(p["a0"] == 1.0) and p["w1"].shape == (3,)
    c = sample(net, init="constant", value=0.25)
    assert all(float(c[k]) == 0.25 for k in net.parameters)
    with pytest.raises(InvalidArgument, match="w9"):
        sample(net, value={"w9": 1.0})
    with pytest.raises(InvalidArgument, match="init"):
        sample(net, init="bogus")
    with pytest.raises(InvalidArgument, match="constant"):
        sample(net, init="constant")


# ------------------------------------------------------------------ backprop vs closed form


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("loss", ["quadratic", "cross_entropy"])
def test_chain_backprop_equals_closed_form(act, loss):
    net = _net(act, loss)
    p = sample(net, 16, seed=ACTS.index(act) * 2 + (loss == "quadratic"))
    res = backprop(net, p, log_space=True)
    for name in net.parameters:
        cf = evaluate_gradient(net.gradient(name), p)
        np.testing.assert_allclose(res.grads[name], cf, rtol=1e-12, atol=1e-300)
        nz = res.grads[name] != 0
        np.testing.assert_allclose(res.log_abs[name][nz], np.log(np.abs(res.grads[name][nz])), rtol=1e-12, atol=1e-12)
        assert np.array_equal(res.sign[name], np.sign(res.grads[name]))
    assert res.layer_norms.shape == (16, 4)
    np.testing.assert_allclose(res.layer_norms, np.abs(np.stack(res.deltas, axis=1)))


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu", "elu"])
@pytest.mark.parametrize("loss", ["quadratic", "cross_entropy"])
def test_dense_backprop_equals_closed_form(act, loss):
    acts = [act, act, "sigmoid"] if loss == "cross_entropy" else act
    net = symgrad.network([3, 4, 5, 2], acts, loss)
    p = sample(net, 7, seed=2)
    res = backprop(net, p, log_space=True)
    for name in net.parameters:
        cf = evaluate_gradient(net.gradient(name), p)
        np.testing.assert_allclose(res.grads[name], cf, rtol=1e-10, atol=1e-300)
        nz = res.grads[name] != 0
        np.testing.assert_allclose(res.log_abs[name][nz], np.log(np.abs(res.grads[name][nz])), rtol=1e-10, atol=1e-12)
    # a single entry, as the symbolic layer addresses it
    e = evaluate_gradient(net.gradient("W2[1,3]"), p)
    np.testing.assert_allclose(e, res.grads["W2"][:, 1, 3], rtol=1e-10)
    assert res.layer_norms.shape == (7, 3)
    np.testing.assert_allclose(res.layer_norms[:, 0], np.linalg.norm(res.grads["b1"], axis=1), rtol=1e-12)


def test_dense_shared_weights_with_batched_inputs_and_total():
    net = symgrad.network([3, 4, 2], "tanh")
    p = sample(net, seed=0)
    rng = np.random.default_rng(0)
    p["a0"], p["y"] = rng.normal(size=(9, 3)), rng.uniform(size=(9, 2))
    res = backprop(net, p)
    assert res.grads["W1"].shape == (9, 4, 3)
    one = [backprop(net, {**p, "a0": p["a0"][i], "y": p["y"][i]}).grads["W1"] for i in range(9)]
    np.testing.assert_allclose(res.total("W1"), np.sum(one, axis=0), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_sigmoid_kernel_matches_generic_and_blocks_threads(backend):
    net = symgrad.chain(12)
    p = sample(net, 5000, seed=4)
    ref = backprop(net, p, block_size=10**6, threads=1, backend=backend)
    for bs, th in ((128, 1), (1000, 2), (4096, 2), (333, 3)):
        r = backprop(net, p, block_size=bs, threads=th, backend=backend)
        for k in net.parameters:
            np.testing.assert_array_equal(r.grads[k], ref.grads[k])
        np.testing.assert_array_equal(r.loss, ref.loss)
    # the generic kernel (used for tiny blocks) agrees to rounding
    g = backprop(net, p, block_size=32, backend="numpy")
    for k in net.parameters:
        np.testing.assert_allclose(g.grads[k], ref.grads[k], rtol=1e-11, atol=1e-300)


def test_scalar_and_broadcast_parameters():
    net = symgrad.chain(3, "tanh")
    p = sample(net, seed=0)
    q = dict(p, a0=np.full(4, float(p["a0"])))
    r1, r4 = backprop(net, p), backprop(net, q)
    for k in net.parameters:
        assert np.shape(r4.grads[k]) == (4,)
        np.testing.assert_allclose(r4.grads[k], float(r1.grads[k]), rtol=1e-14)


def test_forward_values():
    net = symgrad.chain(2, "identity")
    p = sample(net, value={"w1": 2.0, "b1": 1.0, "w2": 3.0, "b2": -1.0, "a0": 0.5, "y": 0.0})
    loc = forward(net, p)
    assert float(loc["z1"]) == 2.0 and float(loc["a2"]) == 5.0 and float(loc["loss"]) == 12.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrt_keeps_memory_bounded(backend):
    net = symgrad.chain(200)
    p = sample(net, 60_000, seed=0)
    full_intermediates = 2 * 200 * 60_000 * 8
    backprop(net, sample(net, 64, seed=0), backend=backend)  # compile (numba) outside the window
    tracemalloc.start()
    try:
        res = backprop(net, p, wrt=["w1", "b200"], block_size=4096, threads=1, backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(res.grads) == {"w1", "b200"} and res.deltas is None
    assert peak < full_intermediates / 8, peak
    ref = backprop(net, p, backend=backend)
    np.testing.assert_array_equal(res.grads["w1"], ref.grads["w1"])
    with pytest.raises(InvalidArgument, match="wrt"):
        res.layer_norms


# ------------------------------------------------------------------ log space


def test_depth_100000_log_space_is_finite_and_exact():
    L = 100_000
    net = symgrad.chain(L)
    p = sample(net, seed=7)
    res = backprop(net, p, log_space=True, wrt=None)
    # plain float64: the product underflows to exactly 0
    assert float(res.grads["b1"]) == 0.0
    lb1 = float(res.log_abs["b1"])
    assert math.isfinite(lb1)
    # independent reference: Σ log|φ'(z_j)| + Σ log|w_{j+1}| + log|a_L − y| with math.fsum
    loc = forward(net, p)
    z = np.array([float(loc["z%d" % j]) for j in range(1, L + 1)])
    terms = list(net.activations[0].log_abs_grad(z))
    terms += [math.log(abs(float(p["w%d" % j]))) for j in range(2, L + 1)]
    terms.append(math.log(abs(float(loc["a%d" % L]) - float(p["y"]))))
    exact = math.fsum(terms)
    assert lb1 == pytest.approx(exact, rel=1e-10)
    assert exact / L < math.log(0.25)  # the decay rate: each layer at most σ' ≤ 1/4 times |w|
    assert all(math.isfinite(float(res.log_abs[k])) for k in ("w1", "b1", "w%d" % L, "b%d" % L))


def test_plain_float64_underflows_near_depth_500():
    assert np.prod(np.full(540, 0.25)) == 0.0
    net = symgrad.chain(600)
    p = sample(net, init="constant", value={**{k: 0.0 for k in net.parameters}, **{"w%d" % j: 1.0 for j in range(1, 601)}, "a0": 0.0, "y": 0.0})
    res = backprop(net, p, log_space=True)
    assert float(res.grads["b1"]) == 0.0
    assert math.isfinite(float(res.log_abs["b1"]))


def test_log_space_minus_inf_only_for_exact_zeros():
    net = symgrad.chain(3, "relu")
    p = sample(net, value={"w1": 1.0, "b1": -5.0, "w2": 1.0, "b2": 0.5, "w3": 1.0, "b3": 0.1, "a0": 1.0, "y": 0.0})
    res = backprop(net, p, log_space=True)
    assert float(res.grads["b1"]) == 0.0 and float(res.log_abs["b1"]) == -math.inf  # dead ReLU
    assert float(res.log_abs["w2"]) == -math.inf  # a1 = 0
    assert math.isfinite(float(res.log_abs["b2"]))


def test_exploding_gradient_is_inf_in_linear_space_finite_in_log_space():
    L = 400
    net = symgrad.chain(L, "identity")
    p = sample(net, value={**{"w%d" % j: 10.0 for j in range(1, L + 1)}, **{"b%d" % j: 0.0 for j in range(1, L + 1)}, "a0": 0.0, "y": 1.0})
    res = backprop(net, p, log_space=True)
    assert float(res.grads["b1"]) == -math.inf
    assert float(res.log_abs["b1"]) == pytest.approx((L - 1) * math.log(10.0))
    assert not np.isnan(float(res.grads["w1"]))  # a0 = 0 times an overflowed product is 0, not nan
    assert float(res.grads["w1"]) == 0.0


# ------------------------------------------------------------------ bad inputs


def _bad_cases():
    chain = symgrad.chain(2)
    dense = symgrad.network([3, 2])
    c = sample(chain, 4, seed=0)
    d = sample(dense, 4, seed=0)
    return [
        (chain, dict(c, w1=np.array([1.0, np.nan, 0, 0])), "w1", "()"),
        (chain, dict(c, b2=np.array([np.inf, 0, 0, 0])), "b2", "()"),
        (chain, dict(c, y=-np.inf), "y", "()"),
        (chain, {k: v for k, v in c.items() if k != "b1"}, "b1", "()"),
        (chain, dict(c, w7=1.0), "w7", "w1..w2"),
        (chain, dict(c, w1=np.arange(4)), "w1", "()"),
        (chain, dict(c, w1=3), "w1", "()"),
        (chain, dict(c, a0=np.ones(4, dtype=bool)), "a0", "()"),
        (chain, dict(c, w2=np.ones(5)), "w2", "()"),
        (chain, dict(c, w2=np.ones((4, 1))), "w2", "()"),
        (chain, dict(c, a0=np.ones(4, dtype=complex)), "a0", "()"),
        (dense, dict(d, W1=np.ones((4, 3, 2))), "W1", "(2, 3)"),
        (dense, dict(d, a0=np.ones(2)), "a0", "(3,)"),
        (dense, dict(d, b1=np.ones((5, 2))), "b1", "(2,)"),
        (dense, dict(d, W1=np.ones((2, 3), dtype=np.int32)), "W1", "(2, 3)"),
        (dense, dict(d, W1=np.full((2, 3), np.nan)), "W1", "(2, 3)"),
    ]


@pytest.mark.parametrize("net,params,name,shape", _bad_cases())
def test_bad_inputs_raise_invalid_argument(net, params, name, shape):
    for fn in (backprop, forward, check_gradients):
        with pytest.raises(InvalidArgument) as exc:
            fn(net, params)
        assert repr(name) in str(exc.value) or name in str(exc.value)
        assert shape in str(exc.value)


@pytest.mark.parametrize(
    "name,index,value",
    [("w1", 0, np.nan), ("b1", 4999, np.inf), ("w7", 2600, -np.inf), ("b12", 1234, np.nan), ("w12", 4100, np.inf)],
)
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_kernel_finds_non_finite_inputs_it_did_not_prescan(name, index, value, threads, backend):
    # The sigmoid kernel checks batched w/b as it reads them (Σ z_j), not in a separate pass:
    # every position and layer, and both signs of inf, must still be named exactly.
    net = symgrad.chain(12)
    p = sample(net, 5000, seed=3)
    p[name] = p[name].copy()
    p[name][index] = value
    with pytest.raises(InvalidArgument) as exc:
        backprop(net, p, block_size=1024, threads=threads, backend=backend)
    msg = str(exc.value)
    assert repr(name) in msg and "index (%d,)" % index in msg and repr(float(value)) in msg


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_kernel_inf_times_zero_and_opposite_infinities(backend):
    net = symgrad.chain(3)
    p = sample(net, 256, seed=0)
    p["b1"], p["w2"] = p["b1"].copy(), p["w2"].copy()
    p["b1"][7], p["w2"][7] = -np.inf, np.inf  # a1 = σ(−inf) = 0, then inf·0
    # Reported in parameter order (w1..wL, b1..bL), as the up-front check does.
    with pytest.raises(InvalidArgument, match="'w2'.*inf at index \\(7,\\)"):
        backprop(net, p, backend=backend)
    q = sample(net, 256, seed=0)
    q["b1"], q["b2"] = q["b1"].copy(), q["b2"].copy()
    q["b1"][9], q["b2"][9] = np.inf, -np.inf  # Σ z_j meets inf + (−inf)
    with pytest.raises(InvalidArgument, match="'b1'.*inf at index \\(9,\\)"):
        backprop(net, q, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_kernel_overflow_and_huge_but_finite_sums(backend):
    net = symgrad.chain(4)
    p = sample(net, 300, seed=1)
    p["b2"] = p["b2"].copy()
    p["b2"][5] = 1.7e308
    p["w2"] = p["w2"].copy()
    p["w2"][5] = 0.5
    # z2 = 0.5 a1 + 1.7e308 is finite, and so is every z, but the running Σ z_j overflows when
    # b3 adds another 1.7e308: the block is recomputed exactly, not rejected.
    p["b3"] = p["b3"].copy()
    p["b3"][5] = 1.7e308
    fast = backprop(net, p, block_size=300, threads=1, backend=backend)
    generic = backprop(net, p, block_size=32, threads=1)
    for k in net.parameters:
        np.testing.assert_allclose(fast.grads[k], generic.grads[k], rtol=1e-12, atol=0)
    p["w3"] = p["w3"].copy()
    p["w3"][5], p["b3"][5] = 1e308, 1e308  # z3 = 1e308·a2 + 1e308 with a2 = 1 overflows
    with pytest.raises(InvalidArgument, match="overflows float64 at layer 3.*batch index 5"):
        backprop(net, p, block_size=300, threads=1, backend=backend)


def test_not_a_mapping_and_forward_overflow():
    net = symgrad.chain(2, "identity")
    with pytest.raises(InvalidArgument, match="mapping"):
        backprop(net, [1.0, 2.0])
    p = sample(net, value={"w1": 1e300, "b1": 0.0, "w2": 1e300, "b2": 0.0, "a0": 1e300, "y": 0.0})
    with pytest.raises(InvalidArgument, match="overflows float64 at layer 1"):
        backprop(net, p)


def test_cross_entropy_target_outside_unit_interval():
    net = symgrad.chain(2, "sigmoid", "cross_entropy")
    with pytest.raises(InvalidArgument, match="'y'.*\\[0, 1\\]"):
        backprop(net, sample(net, value={"y": 2.0}, seed=0))


def test_cross_entropy_output_outside_unit_interval():
    net = symgrad.chain(2, "tanh", "cross_entropy")
    p = sample(net, value={"w1": 1.0, "b1": 0.0, "w2": -1.0, "b2": 0.0, "a0": 1.0, "y": 1.0})
    with pytest.raises(InvalidArgument, match=r"\(0, 1\)"):
        backprop(net, p)


# ------------------------------------------------------------------ Hypothesis: extremes

EXTREME = st.one_of(
    st.sampled_from([0.0, -0.0, 1e300, -1e300, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 1.0, -1.0, 745.0, -745.0, 40.0, -40.0]),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(EXTREME, min_size=8, max_size=8), st.sampled_from(ACTS))
def test_activation_kernels_finite_for_every_finite_input(xs, act):
    a = symgrad.activation(act)
    x = np.array(xs)
    v, g, lg = a.value(x), a.grad(x), a.log_abs_grad(x)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    assert not np.any(np.isnan(lg)) and not np.any(lg == np.inf)
    assert np.all(np.isfinite(lg[g != 0]))


@settings(max_examples=100, deadline=None)
@given(st.lists(EXTREME, min_size=8, max_size=8), st.sampled_from(ACTS), st.sampled_from(["quadratic", "cross_entropy"]))
def test_networks_no_warning_no_nan_for_extreme_inputs(vals, act, loss):
    net = _net(act, loss, depth=3)
    names = ("a0", "y") + net.parameters
    p = {k: float(v) for k, v in zip(names, vals)}
    try:
        res = backprop(net, p, log_space=True)
    except InvalidArgument as exc:  # only an overflowing forward pass may refuse
        assert "overflows float64" in str(exc) or ("'y'" in str(exc) and loss == "cross_entropy")
        return
    assert math.isfinite(float(res.loss)) or loss == "quadratic"  # ½(a − y)² may exceed 1.8e308
    loc = forward(net, p)
    moderate = max(map(abs, vals)) <= 30.0
    for k in net.parameters:
        g, la, sg = float(res.grads[k]), float(res.log_abs[k]), float(res.sign[k])
        assert not math.isnan(g) and not math.isnan(la) and la != math.inf
        if la == -math.inf:
            # an exact zero (sign 0), or a log-magnitude below −1.8e308 (sign kept), which needs a
            # pre-activation beyond 1e150 (GELU's log φ' ≈ −z²/2; σ', tanh' need |z| ~ 1e308)
            zmax = max(abs(float(loc["z%d" % j])) for j in range(1, net.depth + 1))
            assert g == 0.0 and (sg == 0.0 or zmax > 1e150)
        # Else a partial product may be subnormal (|factors| ≤ 30 at depth 3 keep them normal
        # while |g| > 1e-290): linear space then loses digits that log space keeps.
        if abs(g) > 1e-290 and moderate:
            assert la == pytest.approx(math.log(abs(g)), rel=1e-9, abs=1e-9)
            assert sg == math.copysign(1.0, g)


def test_gelu_log_abs_grad_far_left_tail():
    """Below z ≈ −1.9e154, log|φ'| < −1.8e308: −inf correctly rounded, silently (was −inf − (−inf))."""
    out = symgrad.activation("gelu").log_abs_grad(np.array([-1e300]))
    assert out[0] == -np.inf


def test_networks_guard_the_gelu_tail():
    net = symgrad.chain(2, "gelu")
    p = sample(net, value={"w1": 1.0, "b1": -1e300, "w2": 1.0, "b2": 0.0, "a0": 0.0, "y": 0.0})
    res = backprop(net, p, log_space=True)
    assert float(res.log_abs["b1"]) == -np.inf and float(res.grads["b1"]) == 0.0


def test_tanh_grad_huge_input():
    """−2|z| overflowed (with a warning) for |z| > 8.9e307; the kernel now clamps first."""
    assert symgrad.activation("tanh").grad(np.array([8.98846567431158e307]))[0] == 0.0


def test_networks_guard_the_tanh_overflow():
    net = symgrad.chain(2, "tanh")
    p = sample(net, value={"w1": 1.0, "b1": 0.0, "w2": 1.0, "b2": 8.98846567431158e307, "a0": 0.0, "y": 0.0})
    res = backprop(net, p, log_space=True)
    assert float(res.grads["b2"]) == 0.0 and float(res.log_abs["b2"]) == -np.inf


@pytest.mark.parametrize("kw", [{"block_size": 0}, {"block_size": -5}, {"block_size": 2.5}, {"block_size": "64"},
                                {"block_size": True}, {"threads": 0}, {"threads": -1}, {"threads": 1.5},
                                {"backend": "gpu"}, {"backend": None}])
def test_backprop_options_are_validated(kw):
    net = symgrad.chain(3)
    p = sample(net, 100, seed=0)
    with pytest.raises(InvalidArgument) as exc:
        backprop(net, p, **kw)
    name, value = next(iter(kw.items()))
    assert name in str(exc.value) and repr(value) in str(exc.value)
