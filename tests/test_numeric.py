"""The numeric evaluator: sampling, backprop, closed forms evaluated, log space, checks, robustness."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symgrad
from symgrad import InvalidArgument
from symgrad.testing.gradcheck import check_gradients
from symgrad.numeric import (
    backprop,
    evaluate_gradient,
    forward,
    sample,
)

from ._mpref import U, assert_within, chain_tolerance, dense_tolerance

# The compiled kernel (symgrad[jit], numba) must behave exactly like the NumPy one wherever it
# runs; tests/test_jit.py fails loudly in CI if numba is missing.
BACKENDS = ["numpy"] + (["numba"] if symgrad.numeric.compiled.available() else [])

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
    tol = chain_tolerance(net, p)  # each of the two computations is within it of the exact value
    for name in net.parameters:
        cf = evaluate_gradient(net.gradient(name), p)
        assert_within(res.grads[name], cf, 2 * tol[name], name)
        _assert_log_matches(res.log_abs[name], res.grads[name], tol[name], name)
        assert np.array_equal(res.sign[name], np.sign(res.grads[name]))
    assert res.layer_norms.shape == (16, 4)
    np.testing.assert_array_equal(res.layer_norms, np.abs(np.stack(res.deltas, axis=1)))


def _assert_log_matches(la, g, tol, what):
    """log|g| from log space against the log of the linear value: they differ by the relative
    error of g (≤ tol/|g|) plus the log sum's own roundings (a few u·|log|g||)."""
    nz = g != 0
    la, g, tol = np.asarray(la)[nz], np.abs(np.asarray(g)[nz]), np.asarray(np.broadcast_to(tol, np.shape(nz)))[nz]
    assert_within(la, np.log(g), tol / g + 16 * U * (1 + np.abs(la)), what + " (log)")


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu", "elu"])
@pytest.mark.parametrize("loss", ["quadratic", "cross_entropy"])
def test_dense_backprop_equals_closed_form(act, loss):
    acts = [act, act, "sigmoid"] if loss == "cross_entropy" else act
    net = symgrad.network([3, 4, 5, 2], acts, loss)
    p = sample(net, 7, seed=2)
    res = backprop(net, p, log_space=True)
    tol = dense_tolerance(net, p)
    for name in net.parameters:
        cf = evaluate_gradient(net.gradient(name), p)
        assert_within(res.grads[name], cf, 2 * tol[name], name)
        _assert_log_matches(res.log_abs[name], res.grads[name], tol[name], name)
    # a single entry, as the symbolic layer addresses it
    e = evaluate_gradient(net.gradient("W2[1,3]"), p)
    assert_within(e, res.grads["W2"][:, 1, 3], 2 * tol["W2"][:, 1, 3], "W2[1,3]")
    assert res.layer_norms.shape == (7, 3)
    # two sums of 4 squares, in different orders: each within (n + 2) u of the exact norm
    np.testing.assert_allclose(res.layer_norms[:, 0], np.linalg.norm(res.grads["b1"], axis=1), rtol=2 * 6 * U, atol=0)


def test_dense_shared_weights_with_batched_inputs_and_total():
    net = symgrad.network([3, 4, 2], "tanh")
    p = sample(net, seed=0)
    rng = np.random.default_rng(0)
    p["a0"], p["y"] = rng.normal(size=(9, 3)), rng.uniform(size=(9, 2))
    res = backprop(net, p)
    assert res.grads["W1"].shape == (9, 4, 3)
    one = [backprop(net, {**p, "a0": p["a0"][i], "y": p["y"][i]}).grads["W1"] for i in range(9)]
    tol = dense_tolerance(net, p)["W1"]  # per sample, for either computation
    # the sum of 9: the per-sample bounds, plus the sum's own (n + 2) u Σ|g|
    bound = 2 * tol.sum(axis=0) + 2 * 11 * U * np.abs(np.asarray(one)).sum(axis=0)
    assert_within(res.total("W1"), np.sum(one, axis=0), bound, "total W1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_sigmoid_kernel_matches_generic_and_blocks_threads(backend):
    net = symgrad.chain(12)
    p = sample(net, 5000, seed=4)
    ref = backprop(net, p, block_size=10**6, threads=1, backend=backend)
    tol = chain_tolerance(net, p)
    # Blocks of other sizes see the same formulas, but a vectorised body and its remainder loop
    # need not round identically on every CPU (AVX-512 tails): each is held to the forward-error
    # bound, which a wrong block offset or a skipped block exceeds by far.
    for bs, th in ((128, 1), (1000, 2), (4096, 2), (333, 3)):
        r = backprop(net, p, block_size=bs, threads=th, backend=backend)
        for k in net.parameters:
            assert_within(r.grads[k], ref.grads[k], 2 * tol[k], k)
        # C = ½(a − y)²: |ΔC| ≤ (|a − y| + Δa)·Δa, where a's forward error Δa is a few roundings per
        # layer (8u) carried forward by factors |w σ'(z)| ≤ amp = max(1, max|w|/4) each.
        amp = max(1.0, max(float(abs(p["w%d" % j]).max()) for j in range(1, 13)) / 4)
        da = 8 * 12 * 2.0 ** -53 * amp ** 12
        assert_within(r.loss, ref.loss, (np.sqrt(2 * ref.loss) + da) * da, "loss")
    # the generic kernel (used for tiny blocks) agrees within the forward-error bound
    g = backprop(net, p, block_size=32, backend="numpy")
    for k in net.parameters:
        assert_within(g.grads[k], ref.grads[k], 2 * tol[k], k)


def test_scalar_and_broadcast_parameters():
    net = symgrad.chain(3, "tanh")
    p = sample(net, seed=0)
    q = dict(p, a0=np.full(4, float(p["a0"])))
    r1, r4 = backprop(net, p), backprop(net, q)
    tol = chain_tolerance(net, p)  # NumPy may round a length-1 and a length-4 tanh differently
    for k in net.parameters:
        assert np.shape(r4.grads[k]) == (4,)
        assert_within(r4.grads[k], np.full(4, float(r1.grads[k])), 2 * tol[k], k)


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
    # a running sum of 2L terms errs by at most 2L·u·Σ|t| (and each term by ~u|t|)
    assert abs(lb1 - exact) <= (2 * L + 2) * U * math.fsum(map(abs, terms))
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
    # a sum of L − 1 equal terms: (L + 1) u relative
    assert float(res.log_abs["b1"]) == pytest.approx((L - 1) * math.log(10.0), rel=(L + 1) * U)
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
    tol = chain_tolerance(net, p)
    for k in net.parameters:
        assert_within(fast.grads[k], generic.grads[k], 2 * tol[k], k)
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
    tol = chain_tolerance(net, p)
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
            _assert_log_matches(np.array([la]), np.array([g]), tol[k], k)
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


# ------------------------------------------------------------------ extremes: exact values (mpmath)
#
# Each example from the issues, with its exact value computed by mpmath at 40 digits from the same
# float64 inputs.  "Correctly rounded to a few ulps" means within 8 u = 8·2^-53 relative (two or
# three stable-kernel roundings, each ≤ 2 u, and the final rounding), or the rounded result itself
# where the exact value is outside the float64 range.

import mpmath  # noqa: E402

from ._mpref import TINY, assert_close_to_reference, chain_reference  # noqa: E402


def _batched(p, n=140):
    return {k: np.full(n, float(v)) for k, v in p.items()}


def _all_paths(net, p, name, log_space=False):
    """(label, value) for every way symgrad computes ∂C/∂name: the scalar path, the batched
    NumPy kernel (batch 140, two blocks of 70 ≥ 64: the in-place sigmoid kernel for sigmoid
    chains), the compiled kernel
    where it applies, and the closed form evaluated factor by factor."""
    out = [("backprop", backprop(net, p).grads[name]),
           ("backprop batch", backprop(net, _batched(p), backend="numpy").grads[name][0]),
           ("evaluate_gradient", evaluate_gradient(net.gradient(name), p)),
           ("evaluate_gradient batch", evaluate_gradient(net.gradient(name), _batched(p))[0])]
    if "numba" in BACKENDS and isinstance(net, symgrad.symbolic.networks.Chain) and all(a.name == "sigmoid" for a in net.activations):
        out.append(("numba", backprop(net, _batched(p), backend="numba").grads[name][0]))
    return out


def test_cross_entropy_delta_is_computed_from_the_logit():
    # σ(40) − 1 = −σ(−40) = −4.248e-18 is representable; a_L − y cancelled it to 0.
    net = symgrad.chain(1, "sigmoid", loss="cross_entropy")
    p = {"a0": 0.0, "y": 1.0, "w1": 1.0, "b1": 40.0}
    p1 = {"a0": 1.0, "y": 1.0, "w1": 1.0, "b1": 39.0}  # a0 ≠ 0: no exact zero anywhere in the block
    mpmath.mp.dps = 40
    exact = -1 / (1 + mpmath.exp(40))
    assert float(exact) == -4.248354255291589e-18
    for label, g in _all_paths(net, p, "b1"):
        assert_close_to_reference(g, exact, 8 * U, label)
    # not zero but 2e-9: a_L − y would keep only 7 of its 16 digits
    for z in (20.0, 23.7, 40.0):
        exact_z = -1 / (1 + mpmath.exp(z))
        for q in (dict(p, b1=z), dict(p1, b1=z - 1.0)):
            for label, g in _all_paths(net, q, "b1"):
                assert_close_to_reference(g, exact_z, 8 * U, "%s (z = %g, a0 = %g)" % (label, z, q["a0"]))
    res = backprop(net, p, log_space=True)
    assert float(res.log_abs["b1"]) == pytest.approx(float(mpmath.log(-exact)), rel=8 * U)
    assert float(res.sign["b1"]) == -1.0
    # further out the linear value underflows, and the log stays exact: log σ(−800) = −800
    far = backprop(net, dict(p, b1=800.0), log_space=True)
    assert float(far.grads["b1"]) == 0.0 and float(far.log_abs["b1"]) == -800.0 and float(far.sign["b1"]) == -1.0
    # the same through a dense network
    dn = symgrad.network([1, 1], "sigmoid", "cross_entropy")
    dp = {"a0": np.array([0.0]), "y": np.array([1.0]), "W1": np.array([[1.0]]), "b1": np.array([40.0])}
    assert_close_to_reference(backprop(dn, dp).grads["b1"][0], exact, 8 * U, "dense")
    assert_close_to_reference(evaluate_gradient(dn.gradient("b1"), dp)[0], exact, 8 * U, "dense closed form")


def test_overflowing_partial_product_times_zero_is_zero_not_nan():
    # Identity chain, L = 400, w = 10, a0 = y = 0: 10^399 overflows and meets a_L − y = 0.
    L = 400
    net = symgrad.chain(L, "identity")
    p = {**{"w%d" % j: 10.0 for j in range(1, L + 1)}, **{"b%d" % j: 0.0 for j in range(1, L + 1)}, "a0": 0.0, "y": 0.0}
    for name in ("b1", "w1", "b200", "w%d" % L):
        assert float(evaluate_gradient(net.gradient(name), p)) == 0.0
        assert float(backprop(net, p).grads[name]) == 0.0
    # y = 1: ∂C/∂b_j = −10^(L−j) exactly: ±inf where that exceeds the range, exact below
    q = dict(p, y=1.0)
    mpmath.mp.dps = 40
    for j in (1, 92, 93, 200, L - 1, L):
        exact = -mpmath.mpf(10) ** (L - j)
        for got in (evaluate_gradient(net.gradient("b%d" % j), q), backprop(net, q).grads["b%d" % j]):
            # L − j products of 10, each rounded once (exact up to 10^22)
            assert_close_to_reference(got, exact, (L - j) * U, "b%d" % j)
    assert float(backprop(net, q).grads["b1"]) == -math.inf and float(backprop(net, q).grads["b%d" % L]) == -1.0


def test_underflowed_factor_does_not_zero_a_representable_gradient():
    # tanh'(400) = 4e-348 underflows; a0 = 1e300 brings the product back to 1.47e-47.
    net = symgrad.chain(2, "tanh")
    p = dict(a0=1e300, w1=0.0, b1=0.0, w2=1.0, b2=400.0, y=0.0)
    exact, _, bound = chain_reference(net, p)
    assert float(exact["w1"]) == pytest.approx(1.47e-47, rel=1e-2)
    assert bound["w1"] < 1e-12  # the tanh'(400) factor is rebuilt from log: ~800 u
    for label, g in _all_paths(net, p, "w1"):
        assert_close_to_reference(g, exact["w1"], bound["w1"], label)
    # the others are below 2^-1075: 0 is their correctly rounded value
    for k in ("b1", "w2", "b2"):
        assert abs(exact[k]) < mpmath.mpf(2) ** -1075 and float(backprop(net, p).grads[k]) == 0.0


def test_saturated_sigmoid_unit_followed_by_a_huge_weight():
    # σ'(−799) = e^-799 underflows (and so does a1 = σ(−799)), but w2 = 1e300 brings ∂C/∂b1 back
    # to 1.2e-48: every sigmoid kernel (scalar, in-place NumPy, compiled) must notice the
    # saturated unit and redo its block, not return 0.
    net = symgrad.chain(2)
    p = dict(a0=1.0, w1=1.0, b1=-800.0, w2=1e300, b2=0.0, y=0.0)
    exact, _, bound = chain_reference(net, p)
    assert 1e-49 < abs(exact["b1"]) < 1e-47 and bound["b1"] < 1e-11
    for k in ("b1", "w1"):
        for label, g in _all_paths(net, p, k):
            assert_close_to_reference(g, exact[k], bound[k], "%s %s" % (label, k))


def test_subnormal_factor_or_partial_product_does_not_lose_digits():
    # A subnormal value carries fewer than 53 bits; where a huge factor follows, the result is
    # normal again and must still be accurate.  (1) σ'(z1) = 4e-322 is subnormal at z1 = 740 (a few bits),
    # and a0 = 1e300 multiplies it back in ∂C/∂w1 (nothing else is subnormal: σ(740) = 1, and
    # w2 = 8, σ'(0)(a2 − y) = 1/8 scale by powers of two, exactly); (2) the same at z1 = −720,
    # w2 = 1e300 following; (3) δ1 ≈ 1e-323 is a subnormal partial product, a0 = 1e300 follows.
    for net, p, keys in (
        (symgrad.chain(2), dict(a0=1e300, w1=7.4e-298, b1=0.0, w2=8.0, b2=-8.0, y=0.0), ("w1",)),
        (symgrad.chain(2), dict(a0=1.0, w1=1.0, b1=-721.0, w2=1e300, b2=0.0, y=0.0), ("b1", "w1")),
        (symgrad.chain(3), dict(a0=1e300, w1=1e-300, b1=0.0, w2=1e-160, b2=0.0, w3=1e-160, b3=0.0, y=0.0), ("w1",)),
    ):
        exact, _, bound = chain_reference(net, p)
        for k in keys:
            assert TINY < abs(exact[k]) and bound[k] < 1e-12
            for label, g in _all_paths(net, p, k):
                assert_close_to_reference(g, exact[k], bound[k], "%s %s" % (label, k))
    # (4) σ'(740) subnormal times w2 = 2^1000: every later product is normal, so only noticing the
    # saturated unit itself saves the digits.  The a-priori bound of _mpref cannot see that
    # w2·a1 = 2^1000·1 is exact, so the bound here is by hand: z1 = fl(w1·a0) is off by ≤ u
    # relative, moving σ'(z1) by ≤ 740 u; z2 = 0 exactly against −4.5e-21, which moves
    # σ'(z2)(σ(z2) − y) by < 1e-20; the remaining products are exact powers of two or one rounding.
    net = symgrad.chain(2)
    p = dict(a0=1e300, w1=7.4e-298, b1=0.0, w2=2.0**1000, b2=-(2.0**1000), y=0.0)
    exact, _, _ = chain_reference(net, p)
    assert 1e278 < abs(exact["w1"]) < 1e280
    for label, g in _all_paths(net, p, "w1"):
        assert_close_to_reference(g, exact["w1"], 800 * U, label + " w1 (w2 = 2^1000)")


def test_z_is_computed_where_only_the_product_w_a_overflows():
    # z = 1e308·2 − 1e308 = 1e308 is representable although w·a = 2e308 is not.
    p = {"a0": 2.0, "w1": 1e308, "b1": -1e308, "y": 0.5}
    assert float(forward(symgrad.chain(1), p)["z1"]) == 1e308
    res = backprop(symgrad.chain(1), p, log_space=True)
    assert float(res.grads["b1"]) == 0.0  # σ'(1e308)·½ = e^-1e308: below the range
    assert float(res.log_abs["b1"]) == pytest.approx(-1e308, rel=1e-15)
    ident = backprop(symgrad.chain(1, "identity"), p)
    assert float(ident.grads["b1"]) == 1e308 - 0.5 == 1e308  # z − y, exact
    assert float(ident.grads["w1"]) == math.inf  # 2e308
    # batched NumPy kernel and compiled kernel: the block is re-done, not refused
    for backend in BACKENDS:
        r = backprop(symgrad.chain(1), _batched(p), backend=backend)
        assert np.all(r.grads["b1"] == 0.0) and np.all(r.grads["w1"] == 0.0)
    # just past the boundary: z itself exceeds the range
    with pytest.raises(InvalidArgument, match="overflows float64 at layer 1"):
        backprop(symgrad.chain(1), dict(p, b1=0.0, a0=1.8))
    # dense: a partial sum overflows, z does not
    dn = symgrad.network([2, 1], "identity")
    dp = {"a0": np.array([2.0, 1.0]), "W1": np.array([[1e308, 1.0]]), "b1": np.array([-1e308]), "y": np.array([0.0])}
    assert backprop(dn, dp).grads["b1"][0] == 1e308 + 1.0
    with pytest.raises(InvalidArgument, match="overflows float64 at layer 1"):
        backprop(dn, dict(dp, b1=np.array([1e308])))


def test_dense_underflowed_factor_and_rescaled_pass_against_mpmath():
    # tanh'(400) underflows; a0 = 1e300 brings ∂C/∂W1 back to 1.47e-47 (the dense twin of the
    # chain example): the linear dense pass must notice and hand over to the rescaled one.
    dn = symgrad.network([1, 1, 1], "tanh")
    dp = {"a0": np.array([1e300]), "W1": np.array([[0.0]]), "b1": np.array([0.0]), "W2": np.array([[1.0]]),
          "b2": np.array([400.0]), "y": np.array([0.0])}
    exact, _, bound = chain_reference(symgrad.chain(2, "tanh"), dict(a0=1e300, w1=0.0, b1=0.0, w2=1.0, b2=400.0, y=0.0))
    for label, g in (("backprop", backprop(dn, dp).grads["W1"][0, 0]),
                     ("evaluate_gradient", evaluate_gradient(dn.gradient("W1"), dp)[0, 0])):
        assert_close_to_reference(g, exact["w1"], bound["w1"], "dense " + label)
    # δ1 = W2ᵀ δ2 = 1e-200 · 1e-200 underflows inside the product W2ᵀ δ2, and a0 = 1e300 brings
    # ∂C/∂W1 back to 1e-100: the linear pass must not be trusted with |δ2| = 1e-200
    dn = symgrad.network([1, 1, 1], "identity")
    dp = {"a0": np.array([1e300]), "W1": np.array([[1e-300]]), "b1": np.array([0.0]), "W2": np.array([[1e-200]]),
          "b2": np.array([0.0]), "y": np.array([0.0])}
    mpmath.mp.dps = 40
    z1 = mpmath.mpf(1e-300) * mpmath.mpf(1e300)
    exact_w1 = mpmath.mpf(1e-200) * (mpmath.mpf(1e-200) * z1) * mpmath.mpf(1e300)
    for label, g in (("backprop", backprop(dn, dp).grads["W1"][0, 0]),
                     ("evaluate_gradient", evaluate_gradient(dn.gradient("W1"), dp)[0, 0])):
        assert_close_to_reference(g, exact_w1, 8 * U, "dense tiny δ " + label)
    # |δ| ≈ 1e300 is beyond the linear pass's safe range: the rescaled pass, against exact values
    # (identity layers: every gradient a polynomial in the inputs, exact in mpmath)
    net = symgrad.network([2, 3, 2], "identity")
    p = sample(net, 3, seed=4)
    p["y"] = np.full((3, 2), -1e300)
    res = backprop(net, p)
    tol = dense_tolerance(net, p)
    mpmath.mp.dps = 40
    for i in range(3):
        M = lambda k: mpmath.matrix(np.asarray(p[k][i]).tolist())  # noqa: E731
        a1 = M("W1") * M("a0") + M("b1")
        a2 = M("W2") * a1 + M("b2")
        d2 = a2 - M("y")
        d1 = M("W2").T * d2
        for name, exact_v in (("b2", d2), ("b1", d1), ("W2", d2 * a1.T), ("W1", d1 * M("a0").T)):
            shape = (exact_v.rows, exact_v.cols)
            got, t = np.reshape(res.grads[name][i], shape), np.reshape(tol[name][i], shape)
            for r in range(exact_v.rows):
                for c in range(exact_v.cols):
                    assert_close_to_reference(got[r, c], exact_v[r, c], t[r, c] / abs(float(exact_v[r, c])),
                                              "%s[%d] (%d,%d)" % (name, i, r, c))


def test_dense_linear_gradients_stay_linear():
    # was 9.999999999999763e299 (sign·exp(log|g|)); 1e300 is exact
    net = symgrad.network([1, 1], "identity")
    p = {"a0": np.array([1.0]), "W1": np.array([[1.0]]), "b1": np.array([1e300]), "y": np.array([0.0])}
    res = backprop(net, p)
    assert res.grads["b1"][0] == 1e300 and res.grads["W1"][0, 0] == 1e300
    assert evaluate_gradient(net.gradient("b1"), p)[0] == 1e300


def test_one_exploding_sample_does_not_degrade_its_block():
    # Sample 5 explodes (w = 40, |w σ'(0)| = 10 per layer); the rest of its block keep their
    # accuracy, and its own representable gradients are exact to the forward-error bound.
    L = 400
    net = symgrad.chain(L)
    B = 64
    p = sample(net, B, seed=11)
    for j in range(1, L + 1):
        p["w%d" % j], p["b%d" % j] = p["w%d" % j].copy(), p["b%d" % j].copy()
        p["w%d" % j][5], p["b%d" % j][5] = 40.0, (-20.0 if j % 2 else 0.0)
    for backend in BACKENDS:
        res = backprop(net, p, backend=backend)
        for i in (0, 5, 6):
            exact, _, bound = chain_reference(net, p, i)
            for k in ("b1", "w1", "b200", "w%d" % L, "b%d" % L):
                assert_close_to_reference(res.grads[k][i], exact[k], bound[k], "%s %s[%d]" % (backend, k, i))


def test_float32_out_of_range_z_is_an_error_naming_it():
    net = symgrad.chain(1)
    p = {k: np.float32(v) for k, v in dict(a0=3.4e38, w1=-104.0, b1=0.0, y=0.5).items()}
    for q in (p, {k: np.full(3, v, dtype=np.float32) for k, v in p.items()}):
        with pytest.raises(InvalidArgument, match=r"overflows float32 at layer 1 \(z1 .* 3.403e\+38\) for batch index 0"):
            backprop(net, q)
    # just inside: z = −3.3e38 fits float32: an answer, not an error (σ'(z) = 0 correctly rounded)
    ok = backprop(net, dict(p, a0=np.float32(3.3e38), w1=np.float32(-1.0)))
    assert ok.grads["b1"].dtype == np.float32 and float(ok.grads["b1"]) == 0.0
    # float32 w·a overflows, z does not: identity chain gives z − y exactly
    ident = symgrad.chain(1, "identity")
    q = {"a0": np.float32(3e38), "w1": np.float32(1.5), "b1": np.float32(-2e38), "y": np.float32(0.0)}
    z = float(np.float32(3e38)) * 1.5 + float(np.float32(-2e38))  # exact in float64
    for qq in (q, {k: np.full(2, v) for k, v in q.items()}):
        g = backprop(ident, qq).grads["b1"]
        # (w/2)·a and its sum with b/2 are each rounded to float32: two roundings of 2^-24
        assert g.dtype == np.float32 and np.all(np.abs(g.astype(np.float64) - z) <= 2 * 2.0**-24 * abs(z))


# Hypothesis: the whole representable range against mpmath.  Every gradient of a depth-2 chain
# must be within the forward-error bound of tests/_mpref.py of the exact value (in u = 2^-53:
# C_GRAD = 20 per factor plus the propagated conditioning), ±inf exactly where the exact value is
# beyond the range, and InvalidArgument exactly where an exact z is beyond the range.

ANY = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e300, -1e300, 1e308, -1e308, 5e-324, 40.0, 800.0, -800.0]),
    st.floats(-50, 50),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(ANY, min_size=6, max_size=6), st.sampled_from(["sigmoid", "tanh", "identity"]),
       st.sampled_from(["quadratic", "cross_entropy"]), st.sampled_from(BACKENDS))
def test_gradients_over_the_whole_range_match_mpmath(vals, act, loss, backend):
    net = symgrad.chain(2, [act, "sigmoid"] if loss == "cross_entropy" else act, loss)
    names = ("a0", "y") + net.parameters
    p = dict(zip(names, map(float, vals)))
    if loss == "cross_entropy":
        p["y"] = min(abs(p["y"]), 1.0)
    mpmath.mp.dps = 40
    a = mpmath.mpf(p["a0"])
    zs = []
    for j, ac in enumerate(net.activations, start=1):
        z = mpmath.mpf(p["w%d" % j]) * a + mpmath.mpf(p["b%d" % j])
        zs.append(z)
        a = z if ac.name == "identity" else (mpmath.tanh(z) if ac.name == "tanh" else 1 / (1 + mpmath.exp(-z)))
    if backend == "numba" and not all(a.name == "sigmoid" for a in net.activations):
        backend = "numpy"  # the compiled kernel is for sigmoid chains: the batched NumPy path then
    # batch 140 runs the in-place NumPy sigmoid kernel (or the compiled one); scalars the generic one
    q = _batched(p) if backend == "numba" or vals[0] < 0 else p
    # the exact z beyond the range ⇔ refused (a computed z within an ulp of the edge may go either way)
    edge = mpmath.mpf(np.finfo(np.float64).max)
    try:
        res = backprop(net, q, backend=backend)
    except InvalidArgument as exc:
        assert "overflows float64" in str(exc) or "(0, 1)" in str(exc)
        if "(0, 1)" in str(exc):  # a custom-activation output outside (0, 1): not reachable here
            raise
        assert max(abs(z) for z in zs) > edge * (1 - 1e-15)
        return
    assert max(abs(z) for z in zs) <= edge * (1 + 1e-15)
    exact, _, bound = chain_reference(net, p)
    for k in net.parameters:
        g = res.grads[k] if q is p else res.grads[k][0]
        assert_close_to_reference(g, exact[k], bound[k], k)


# ------------------------------------------------------------------ cross-entropy without cancellation


def _mp_loss(widths, p, i):
    """C for one sample of a dense network with φ(z) = σ(2z) and cross-entropy, in mpmath."""
    L = len(widths) - 1
    get = lambda k: np.asarray(p[k])[i]  # noqa: E731  (every entry is batched here)

    def C(**theta):
        a = [mpmath.mpf(float(v)) for v in get("a0")]
        for l in range(1, L + 1):
            W, b = theta["W%d" % l], theta["b%d" % l]
            a = [1 / (1 + mpmath.exp(-2 * (mpmath.fsum(W[r][c] * a[c] for c in range(len(a))) + b[r]))) for r in range(len(b))]
        y = [mpmath.mpf(float(v)) for v in get("y")]
        return -mpmath.fsum(yk * mpmath.log(ak) + (1 - yk) * mpmath.log(1 - ak) for ak, yk in zip(a, y))

    theta = {k: [[mpmath.mpf(float(x)) for x in row] for row in get(k)] if k[0] == "W" else [mpmath.mpf(float(x)) for x in get(k)]
             for k in p if k not in ("a0", "y")}
    return C, theta


def _mp_grad(C, theta, name, idx):
    """∂C/∂theta[name][idx] by mpmath's numerical differentiation at 40 digits (independent of
    any closed form: it only evaluates C)."""
    def f(x):
        t = {k: [list(r) for r in v] if k[0] == "W" else list(v) for k, v in theta.items()}
        if len(idx) == 2:
            t[name][idx[0]][idx[1]] = x
        else:
            t[name][idx[0]] = x
        return C(**t)
    x0 = theta[name][idx[0]][idx[1]] if len(idx) == 2 else theta[name][idx[0]]
    return mpmath.diff(f, x0)


def test_cross_entropy_with_a_custom_sigmoid_like_output_matches_mpmath():
    # φ(z) = σ(2z): cross-entropy does not cancel φ', so ∂C/∂a = (a − y)/(a(1 − a)) is evaluated
    # numerically (backprop and the closed form's CostGradient).  Reference: mpmath.diff of C.
    # Bound: with |W| ≤ 1 (xavier) and a ∈ (0, 1), |z_2| ≤ 3, so 1 − a_2 ≥ σ(−6) ≈ 0.0025 carries
    # at most u/0.0025 = 400 u; with y ∈ {0, 1} the factor a − y does not cancel; the rest is a
    # few dozen roundings, each ≤ 2 u, times conditioning ≤ 2 per layer: 2000 u in all.
    mpmath.mp.dps = 40
    net = symgrad.network([2, 2, 1], "sigmoid(2*z)", "cross_entropy")
    p = sample(net, 4, init="xavier", seed=5)
    p["y"] = np.array([[0.0], [1.0], [1.0], [0.0]])
    res = backprop(net, p)
    chain_net = symgrad.chain(2, "sigmoid(2*z)", "cross_entropy")
    for i in range(4):
        C, theta = _mp_loss(net.widths, p, i)
        for name, idx in (("b2", (0,)), ("W2", (0, 1)), ("b1", (1,)), ("W1", (1, 0)), ("W1", (0, 1))):
            exact = _mp_grad(C, theta, name, idx)
            entry = "%s[%s]" % (name, ",".join(map(str, idx)))
            for label, got in (("backprop", res.grads[name][(i,) + idx]),
                               ("evaluate_gradient", evaluate_gradient(net.gradient(entry), p)[i])):
                assert_close_to_reference(got, exact, 2000 * U, "%s %s sample %d" % (label, entry, i))
    # and a chain with the same output (its own numeric path)
    cp = {"a0": 0.7, "y": 1.0, "w1": 0.8, "b1": -0.3, "w2": -0.9, "b2": 0.4}
    for name in chain_net.parameters:
        theta = {k: mpmath.mpf(v) for k, v in cp.items()}

        def Cc(x, name=name):
            t = dict(theta, **{name: x})
            a1 = 1 / (1 + mpmath.exp(-2 * (t["w1"] * t["a0"] + t["b1"])))
            a2 = 1 / (1 + mpmath.exp(-2 * (t["w2"] * a1 + t["b2"])))
            return -(t["y"] * mpmath.log(a2) + (1 - t["y"]) * mpmath.log(1 - a2))
        exact = mpmath.diff(Cc, theta[name])
        for label, got in (("backprop", backprop(chain_net, cp).grads[name]),
                           ("backprop batch", backprop(chain_net, _batched(cp)).grads[name][0]),
                           ("evaluate_gradient", evaluate_gradient(chain_net.gradient(name), cp))):
            assert_close_to_reference(got, exact, 2000 * U, "chain %s %s" % (label, name))


# ------------------------------------------------------------------ memory, estimated before allocating


def test_huge_requests_are_refused_with_the_estimate_before_allocating(monkeypatch):
    from symgrad.numeric import inputs as numeric

    with pytest.raises(InvalidArgument, match=r"needs about 74.5 GiB .*smaller widths, a smaller batch"):
        sample(symgrad.network([100000, 100000, 1]), 1)
    # the boundary, with the available memory pinned: exactly the estimate passes, one byte less refuses
    net = symgrad.chain(20)
    p = sample(net, 5000, seed=0)
    inp = numeric._validate(net, p)
    need = numeric._backprop_bytes(inp, False, None, numeric.DEFAULT_BLOCK, 1)
    monkeypatch.setattr(numeric, "_available_memory", lambda: math.ceil(need / numeric.MEMORY_FRACTION))
    backprop(net, p, threads=1, backend="numpy")
    monkeypatch.setattr(numeric, "_available_memory", lambda: math.ceil(need / numeric.MEMORY_FRACTION) - 2)
    with pytest.raises(InvalidArgument, match=r"backprop\(.*batch=5000\) needs about .* MiB.*smaller batch"):
        backprop(net, p, threads=1, backend="numpy")
    dn = symgrad.network([50, 40, 3])
    dp = sample(dn, 100, seed=0)
    dneed = numeric._backprop_bytes(numeric._validate(dn, dp), False, None, 0, 1)
    monkeypatch.setattr(numeric, "_available_memory", lambda: math.ceil(dneed / numeric.MEMORY_FRACTION) - 2)
    with pytest.raises(InvalidArgument, match="needs about"):
        backprop(dn, dp)
    sneed = numeric._sample_bytes(dn, 100, np.float64)
    monkeypatch.setattr(numeric, "_available_memory", lambda: math.ceil(sneed / numeric.MEMORY_FRACTION) - 2)
    with pytest.raises(InvalidArgument, match="needs about"):
        sample(dn, 100)
    monkeypatch.setattr(numeric, "_available_memory", lambda: None)  # unknown: no refusal
    assert sample(dn, 100)["W1"].shape == (100, 40, 50)


def test_memory_estimates_cover_what_is_allocated():
    # The estimate is neither below what is allocated nor a wild over-guess: between the traced
    # peak of the most demanding run (a chain whose every block is redone rescaled) and 1.5× it.
    from symgrad.numeric import inputs as numeric

    L, B = 30, 4000
    net = symgrad.chain(L)
    tracemalloc.start()
    try:
        p = sample(net, B, seed=0)
        _, peak_s = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    est_s = numeric._sample_bytes(net, B, np.float64)
    assert peak_s <= est_s <= 1.5 * peak_s
    for j in range(1, L + 1):  # |w σ'(0)| = 10 per layer: every block overflows and is redone
        p["w%d" % j], p["b%d" % j] = np.full(B, 40.0), np.full(B, -20.0 if j % 2 else 0.0)
    dn = symgrad.network([30, 20, 4])
    dp = sample(dn, 300, seed=0)
    dp["y"] = np.full((300, 4), 1e200)  # |δ| beyond 2^500: the rescaled dense pass, the larger one
    for net_, p_, block in ((net, p, numeric.DEFAULT_BLOCK), (dn, dp, 0)):
        inp = numeric._validate(net_, p_)
        tracemalloc.start()
        try:
            backprop(net_, p_, threads=1, backend="numpy")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        est = numeric._backprop_bytes(inp, False, None, block, 1)
        assert peak <= est <= 1.5 * peak, (net_, peak, est)


def test_the_comparison_helpers_reject_just_past_their_bound():
    # The helpers every float comparison above goes through: a value at the bound passes, one
    # ulp-sized step past it fails (a no-op helper would make every comparison vacuous).
    from ._mpref import assert_close_to_reference

    step = 2.0 ** -40  # exactly representable, and so is 1 + step
    assert_within(np.array([1.0 + step]), np.array([1.0]), np.array([step]))
    with pytest.raises(AssertionError):
        assert_within(np.array([1.0 + step]), np.array([1.0]), np.array([step * (1 - 2.0 ** -20)]))
    mpmath.mp.dps = 40
    exact = mpmath.mpf(1) / 3
    got = float(exact)
    err = abs(mpmath.mpf(got) - exact)
    assert_close_to_reference(got, exact, float(err / exact) * 1.01)
    with pytest.raises(AssertionError):
        assert_close_to_reference(got, exact, float(err / exact) * 0.5)
    with pytest.raises(AssertionError):
        assert_close_to_reference(0.0, mpmath.mpf(2) ** -1070, 0.1)  # representable, not 0
    with pytest.raises(AssertionError):
        assert_close_to_reference(1e308, mpmath.mpf("2e308"), 0.1)  # beyond the range: ±inf
    assert_close_to_reference(math.inf, mpmath.mpf("2e308"), 0.1)
    # the bound itself grows with the conditioning: a_L next to y makes ∂C/∂b1 ill-conditioned
    net = symgrad.chain(2)
    p = dict(a0=0.3, w1=0.7, b1=0.1, w2=-0.4, b2=0.2, y=0.0)
    a2 = float(forward(net, p)["a2"])
    far, near = chain_tolerance(net, p)["b1"], chain_tolerance(net, dict(p, y=a2 * (1 - 1e-9)))["b1"]
    g_far, g_near = abs(float(backprop(net, p).grads["b1"])), abs(float(backprop(net, dict(p, y=a2 * (1 - 1e-9))).grads["b1"]))
    assert far / g_far < 1e-13 and near / g_near > 1e-8


# ------------------------------------------------------------------ out=: memory the caller owns


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_reuses_the_callers_memory_and_refuses_a_mismatch(backend):
    net = symgrad.chain(6)
    p, q = sample(net, 3000, seed=0), sample(net, 3000, seed=1)
    first = backprop(net, p, backend=backend)
    ref_q = backprop(net, q, backend=backend)
    again = backprop(net, q, out=first, backend=backend)
    for k in net.parameters:
        np.testing.assert_array_equal(again.grads[k], ref_q.grads[k])  # same kernel, same inputs
        assert np.shares_memory(again.grads[k], first.grads[k])
    np.testing.assert_array_equal(again.layer_norms, ref_q.layer_norms)
    # just past each boundary: one sample fewer, one layer fewer, wrt=, float32, not a result, dense
    bad = [(net, sample(net, 2999, seed=0), {}), (symgrad.chain(5), sample(symgrad.chain(5), 3000, seed=0), {}),
           (net, q, {"wrt": ["w1"]}), (net, {k: v.astype(np.float32) for k, v in q.items()}, {})]
    for net_, p_, kw in bad:
        with pytest.raises(InvalidArgument, match="out="):
            backprop(net_, p_, out=first, **kw)
    with pytest.raises(InvalidArgument, match="out="):
        backprop(net, q, out="first")
    dn = symgrad.network([2, 2, 1])
    with pytest.raises(InvalidArgument, match="out="):
        backprop(dn, sample(dn, 4, seed=0), out=first)


@pytest.mark.parametrize("act, loss", [("sigmoid", "quadratic"), ("tanh", "quadratic"), ("sigmoid", "cross_entropy"),
                                       ("relu", "quadratic"), ("gelu", "quadratic")])
def test_evaluate_gradients_equals_one_at_a_time_and_evaluates_each_factor_once(act, loss, monkeypatch):
    """All closed forms of a chain in one pass share the suffix products of the factor sequence:
    the same values as evaluate_gradient (products reordered: within 2L roundings), and each
    distinct factor evaluated once, so the cost is O(L), not O(L²)."""
    import symgrad.numeric.closed_form as nm

    L = 12
    net = symgrad.chain(L, act, loss)
    p = sample(net, 6, seed=4)
    p["w3"] = p["w3"] * 1e-200  # a partial product that underflows in linear space
    names = list(net.parameters) + ["a0"]
    grads = [net.gradient(n) for n in names]
    calls = []
    real = nm._split_factor
    monkeypatch.setattr(nm, "_split_factor", lambda *a: calls.append(1) or real(*a))
    together = nm.evaluate_gradients(grads, p)
    # The 2L factors of the sequence once each, the L leading a_{j−1} of the w_j, and w_1 of a0.
    assert len(calls) <= 3 * L + 1
    monkeypatch.setattr(nm, "_split_factor", real)
    for g, v in zip(grads, together):
        one = nm.evaluate_gradient(g, p)
        tol = 4 * L * np.finfo(np.float64).eps * np.abs(one)
        assert np.all(np.abs(v - one) <= tol), g.wrt
        assert np.array_equal(v == 0, one == 0)


def test_evaluate_gradients_refuses_mixed_networks():
    a, b = symgrad.chain(2), symgrad.chain(2)
    with pytest.raises(symgrad.InvalidArgument, match="same network"):
        symgrad.numeric.evaluate_gradients([a.gradient("b1"), b.gradient("b1")], sample(a, 2, seed=0))


@pytest.mark.parametrize("act", ["z**2", "exp(z)", "cosh(z)", "sinh(z)", "z**3"])
def test_an_activation_value_beyond_float64_is_refused_by_name_not_carried_into_nan(act):
    """z1 = 1e200 is finite, φ(z1) is not: the forward pass names the layer instead of
    returning nan gradients (backprop and the closed form alike)."""
    net = symgrad.chain(2, act)
    p = {"a0": 1.0, "w1": 1e200, "b1": 0.0, "w2": 1.0, "b2": 0.0, "y": 0.0}
    with pytest.raises(InvalidArgument, match=r"φ\(z1\) of .* overflows float64 at layer 1 for batch index 0"):
        backprop(net, p)
    with pytest.raises(InvalidArgument, match="overflows float64 at layer 1"):
        evaluate_gradient(net.gradient("b1"), p)


@pytest.mark.parametrize("act, b1, y, match", [
    ("tanh", 18.0, 0.0, "1 − a_L keeps fewer than half its digits"),      # 1 + tanh(18) came back as 2.089
    ("softsign", 1e9, 0.0, "1 − a_L keeps fewer than half its digits"),
    ("softplus", -740.0, 1.0, r"∂C/∂a_L = \(a_L − y\)/\(a_L\(1 − a_L\)\) overflows"),  # came back as −inf
])
def test_cross_entropy_behind_a_non_sigmoid_output_refuses_where_it_would_answer_wrongly(act, b1, y, match):
    """Without the logit form, ∂C/∂a_L = (a_L − y)/(a_L(1 − a_L)) loses its digits where 1 − a_L
    cancels and overflows where a_L is tiny: refused by name (backprop, closed form, check)."""
    net = symgrad.chain(1, act, "cross_entropy")
    p = {"a0": 0.0 if act != "softplus" else 1.0, "w1": 0.0, "b1": b1, "y": y}
    for call in (lambda: backprop(net, p), lambda: evaluate_gradient(net.gradient("b1"), p), lambda: check_gradients(net, p)):
        with pytest.raises(InvalidArgument, match=match):
            call()


def test_cross_entropy_behind_tanh_away_from_saturation_is_answered_exactly():
    """At z = 2 nothing cancels: ∂C/∂b1 = tanh'(2)/(1 − tanh 2) = 1 + tanh(2) for y = 0."""
    net = symgrad.chain(1, "tanh", "cross_entropy")
    g = backprop(net, {"a0": 0.0, "w1": 0.0, "b1": 2.0, "y": 0.0}).grads["b1"]
    assert abs(g - (1 + math.tanh(2.0))) <= 8 * 2.0 ** -53 * 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("b1, y", [(40.0, 1.0), (-40.0, 0.0), (37.5, 1.0), (20.0, 1.0)])
def test_quadratic_loss_behind_a_saturated_sigmoid_keeps_sigma_minus_y(backend, b1, y):
    """½(σ(z) − y)²: σ(40) − 1 = −σ(−40) = −4.2e-18 is representable although fl(σ(40)) = 1, so
    ∂C/∂b1 = σ'(40)(σ(40) − 1) = −1.8e-35, not 0 (every path: batched kernels, closed form,
    log space, dense)."""
    import mpmath

    with mpmath.workdps(60):
        s = 1 / (1 + mpmath.exp(-mpmath.mpf(b1)))
        exact = float(s * (1 - s) * (s - y))
    net = symgrad.chain(1, "sigmoid")
    p = {"a0": 0.0, "w1": 0.0, "b1": b1, "y": y}
    batched = {k: np.full(300, v) for k, v in p.items()}
    got = [backprop(net, batched, backend=backend).grads["b1"][0], backprop(net, p).grads["b1"],
           evaluate_gradient(net.gradient("b1"), p), backprop(net, p, log_space=True).grads["b1"],
           backprop(symgrad.network([1, 1], "sigmoid"), {"a0": [0.0], "W1": [[0.0]], "b1": [b1], "y": [y]}).grads["b1"][0]]
    for g in got:
        assert g != 0 and abs(g - exact) <= 16 * 2.0 ** -53 * abs(exact), (g, exact)


@pytest.mark.parametrize("act, exact", [("identity", 1.0), ("relu", 1.0), ("silu", 0.5)])
def test_cross_entropy_with_a_subnormal_output_is_finite(act, exact):
    """a_L = 1e-310 (subnormal): 1/(a_L(1 − a_L)) is formed as a scaled number, so ∂C/∂b1 =
    φ'(z)·a_L/(a_L(1 − a_L)) comes back near 1 (backprop gave inf).  The subnormal a_L keeps
    about 13 of its 16 digits, and the rescaled path rebuilds it from its log: 1e-12 relative."""
    net = symgrad.chain(1, act, "cross_entropy")
    p = {"a0": 1.0, "w1": 0.0, "b1": 1e-310, "y": 0.0}
    for g in (backprop(net, p).grads["b1"], evaluate_gradient(net.gradient("b1"), p)):
        assert np.isfinite(g) and abs(g - exact) <= 1e-12 * exact


@pytest.mark.parametrize("act, vals", [
    ("elu", dict(a0=1, w1=1, b1=-120, y=3e38)),
    ("softplus", dict(a0=1, w1=1, b1=-160, w2=-1, b2=0, y=-3e38)),
])
def test_float32_factor_that_underflows_does_not_zero_a_representable_gradient(act, vals):
    """φ'(−120) = e^−120 is below float32's range but φ'·(a − y) ≈ −6e-14 is not: the block is
    redone scaled (NumPy compares float32 arrays with a Python float in float32, where float64's
    smallest normal is 0: the underflow went unseen and backprop returned −0.0)."""
    import mpmath

    depth = 1 if "w2" not in vals else 2
    net = symgrad.chain(depth, act)
    p = {k: np.float32(v) for k, v in vals.items()}
    got = backprop(net, p).grads["b1"]
    ref = evaluate_gradient(net.gradient("b1"), p)
    assert got.dtype == np.float32 and got != 0 and got == ref
    if act == "elu":
        with mpmath.workdps(40):
            z = mpmath.mpf(float(p["w1"])) * 1 + mpmath.mpf(float(p["b1"]))
            exact = mpmath.exp(z) * (mpmath.expm1(z) - mpmath.mpf(float(p["y"])))
        assert abs(float(got) - float(exact)) <= 4 * 2.0 ** -24 * abs(float(exact))


def test_an_ill_conditioned_z_is_not_held_to_a_bound_that_says_nothing():
    """w2 = 3e18 times the rounded tanh(−19) moves z2 by hundreds: the exact ∂C/∂w2 is 1.2e-324
    and float64 honestly gives 1.0, with a first-order relative bound of 1e147.  The reference
    check accepts it (the bound says nothing), where it once demanded 0 (found by Hypothesis)."""
    from ._mpref import assert_close_to_reference, chain_reference

    net = symgrad.chain(2, "tanh")
    p = {"a0": 19.0, "y": 1.0, "w1": -1.0, "w2": 2.9781545468495186e18, "b1": 0.0, "b2": 2.9781545468495186e18}
    exact, _, bound = chain_reference(net, p)
    assert bound["w2"] > 1
    assert_close_to_reference(backprop(net, p).grads["w2"], exact["w2"], bound["w2"], "w2")
    with pytest.raises(AssertionError):  # a bound below 1 still binds
        assert_close_to_reference(1.0, exact["w2"], 0.5, "w2")


def test_lambdify_cache_is_bounded():
    """More distinct factor expressions than the cache holds: it stays at its bound (LRU), and a
    bad name is refused without being cached."""
    import sympy

    from symgrad.numeric import closed_form as cf

    assert cf._lambdified.cache_info().maxsize == cf.LAMBDA_CACHE_SIZE
    x = sympy.Symbol("x")
    for k in range(cf.LAMBDA_CACHE_SIZE + 20):
        syms, fn = cf._lambdified(x + k)
        assert fn(1.0) == 1.0 + k
        assert cf._lambdified.cache_info().currsize <= cf.LAMBDA_CACHE_SIZE
    assert cf._lambdified.cache_info().currsize == cf.LAMBDA_CACHE_SIZE


def test_log_space_results_come_as_sign_then_log_abs():
    """(sign, log_abs) in numpy.linalg.slogdet order, everywhere: backprop's signlog, and
    evaluate_gradient(log_space=True) for chains and dense networks."""
    from symgrad.numeric.result import SignLog

    net = symgrad.chain(3)
    p = sample(net, 4, seed=3)
    res = backprop(net, p, log_space=True)
    for name in net.parameters:
        s = res.signlog(name)
        assert isinstance(s, SignLog) and s.sign is res.sign[name] and s.log_abs is res.log_abs[name]
        sign, log_abs = s
        assert set(np.unique(sign)) <= {-1.0, 0.0, 1.0}
        np.testing.assert_allclose(sign * np.exp(log_abs), res.grads[name], rtol=1e-13, atol=0)
        value, sl = evaluate_gradient(net.gradient(name), p, log_space=True)
        assert isinstance(sl, SignLog)
        np.testing.assert_array_equal(sl.sign, np.sign(value))
        np.testing.assert_allclose(sl.sign * np.exp(sl.log_abs), value, rtol=1e-13, atol=0)
    dn = symgrad.network([2, 3, 1])
    dp = sample(dn, 2, seed=1)
    for name in ("W1", "b2", "W2[0,1]"):
        value, (sign, log_abs) = evaluate_gradient(dn.gradient(name), dp, log_space=True)
        np.testing.assert_array_equal(sign, np.sign(value))
        np.testing.assert_allclose(sign * np.exp(log_abs), value, rtol=1e-13, atol=0)
    with pytest.raises(InvalidArgument, match="log_space=True"):
        backprop(net, p).signlog("b1")
    with pytest.raises(InvalidArgument, match="'b9'"):
        res.signlog("b9")
