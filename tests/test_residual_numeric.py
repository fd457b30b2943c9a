"""Residual networks on the numeric side (issue #14): backprop, log space, the rescaled pass, the closed
forms and check_gradients against PyTorch autograd (float64) and against exact references.

A residual layer is ``a_l = a_{l−1} + α_l φ(z_l)``; its transfer is ``1 + α w φ'(z)`` (dense:
``I + α W_lᵀ Σ'(z^l)``) and ``δ_l = α_l φ'(z_l) ∂C/∂a_l``.  Tolerances come from a first-order
running error analysis (:func:`residual_tolerance`), the one of tests/_mpref.py extended by the
skip connection; nothing is fitted to this CPU.
"""

from __future__ import annotations

import math
import os
import zlib

import mpmath
import numpy as np
import pytest
import sympy

import symgrad
from symgrad.errors import InvalidArgument
from symgrad.numeric import backprop, evaluate_gradient, evaluate_gradients, forward, sample
from symgrad.numeric import residual as _res
from symgrad.numeric.inputs import _validate

from ._mpref import C_LOG, C_VAL, ETA, U, _factor_rel, assert_close_to_reference, assert_within

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None
    if os.environ.get("CI"):
        raise ImportError("PyTorch is required for the residual autograd oracle tests in CI: pip install -e '.[test]'")

needs_torch = pytest.mark.skipif(torch is None, reason="!!! PyTorch NOT INSTALLED: the residual oracle tests did NOT run !!!")

ALPHA = sympy.Symbol("alpha", real=True)

ACTS = [
    ("sigmoid", {}), ("tanh", {}), ("relu", {}), ("leaky_relu", {"alpha": 0.1}), ("elu", {"alpha": 0.7}),
    ("softplus", {}), ("silu", {}), ("gelu", {}), ("softsign", {}), ("identity", {}),
]


def _seed(*key) -> int:
    return zlib.crc32(repr(key).encode())


def _torch_act(name, params):
    F = torch.nn.functional
    return {
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
        "leaky_relu": lambda x: F.leaky_relu(x, params.get("alpha", 0.01)),
        "elu": lambda x: F.elu(x, params.get("alpha", 1.0)),
        "softplus": lambda x: F.softplus(x, beta=1.0, threshold=1000.0),
        "silu": F.silu, "gelu": lambda x: F.gelu(x, approximate="none"), "softsign": F.softsign, "identity": lambda x: x,
    }[name]


def _alpha_values(net, p):
    """Each layer's α as a float (None for a plain layer)."""
    return [None if a is None else (float(p[a.name]) if isinstance(a, sympy.Symbol) else float(a)) for a in net.residual]


def _as_dense(net, p):
    """Every parameter as a dense layer with a batch axis: W (n, out, in), b (n, out), a0 (n, n0), y (n, nL)."""
    f = lambda k: np.asarray(p[k], dtype=np.float64)  # noqa: E731
    if isinstance(net, symgrad.symbolic.networks.Chain):
        n = max([np.size(p[k]) for k in ("a0", "y") + net.parameters])
        sh = lambda v, extra: np.broadcast_to(v, (n,)).reshape((n,) + extra)  # noqa: E731
        Ws = [sh(f("w%d" % j), (1, 1)) for j in range(1, net.depth + 1)]
        bs = [sh(f("b%d" % j), (1,)) for j in range(1, net.depth + 1)]
        return Ws, bs, sh(f("a0"), (1,)), sh(f("y"), (1,))
    return ([f("W%d" % l) for l in range(1, net.depth + 1)], [f("b%d" % l) for l in range(1, net.depth + 1)], f("a0"), f("y"))


def _delta_bound(act, z, dz, c, g_M, g_E, torch_like):
    """(M, E, s): the magnitude of δ = c φ'(z) g and its error bound, from g's magnitude g_M and
    error g_E, both scaled by 2^s.  Where φ'(z) underflows (|φ'| < 2^−1022, a residual layer's z of
    −700 or below), δ (and ∂C/∂w = a δ) may still be representable, g and a being large: there the
    products come from log|φ'(z)| and s = 600 (δ itself, and the error bound, may be subnormal),
    as the kernels form them, not from the underflowed φ'(z), which would make the bound 0."""
    gp = np.abs(act.grad(z))
    with np.errstate(all="ignore"):
        lg = act.log_abs_grad(z)
        low = gp < np.finfo(np.float64).tiny
        sc = np.where(low, 600, 0)
        mul = lambda x: np.where(low, np.exp(lg + np.log(x) + 600 * math.log(2.0)), gp * x)  # noqa: E731  2^s |φ'(z)| x
        M = c * mul(g_M)
        rel = _factor_rel(act, z, dz, torch_like)
        E = c * (mul(g_E) + np.where(M == 0, 0.0, mul(g_M) * rel)) + 2 * U * M
    return M, E, sc


def residual_tolerance(net, p, torch_like=False):
    """Absolute error bound of every gradient computed in float64 (symgrad's kernels, its closed
    form, or PyTorch's formulas with ``torch_like``): name → array shaped like the dense gradient
    (chains: (n, 1, 1) and (n, 1)).  The running error analysis of tests/_mpref.py
    (``dense_tolerance``), plus the skip connection:

    * forward: a_l = a_{l−1} + α φ(z_l) carries Δa_{l−1}, |α| Δφ and two roundings u(|αφ| + |a_l|);
    * backward: g_{l−1} = W_lᵀ δ_l + r_l g_l (magnitudes M, errors E through |W|ᵀ; the sum's
      γ_{n+2} and, for the skip, 3u of the magnitude: a chain forms g_{l−1} as fl(fl(fl(c φ' w) + 1) g),
      three roundings); δ_l = c_l φ'(z_l) g_l with φ''s relative error and two roundings.
    """
    Ws, bs, a, y = _as_dense(net, p)
    alphas = _alpha_values(net, p)
    da = np.zeros_like(a)
    As, dAs, Zs, dZ = [a], [da], [], []
    mv = lambda W, v: np.einsum("...ij,...j->...i", W, v)  # noqa: E731
    vm = lambda W, v: np.einsum("...ij,...i->...j", W, v)  # noqa: E731
    with np.errstate(all="ignore"):
        for l, act in enumerate(net.activations, start=1):
            W, b = Ws[l - 1], bs[l - 1]
            z = mv(W, a) + b
            za = mv(np.abs(W), np.abs(a)) + np.abs(b)
            dz = mv(np.abs(W), da) + U * (W.shape[-1] + 2) * za + W.shape[-1] * ETA
            phi = act.value(z)
            dphi = np.abs(act.grad(z)) * dz + C_VAL * U * np.abs(phi) + C_VAL * ETA
            if torch_like:
                dphi = dphi + 8 * U * (1 + np.abs(z))
            al = alphas[l - 1]
            if al is None:
                a, da = phi, dphi
            else:
                a = As[-1] + al * phi
                da = dAs[-1] + abs(al) * dphi + U * (np.abs(al * phi) + np.abs(a)) + 2 * ETA
            Zs.append(z), dZ.append(dz), As.append(a), dAs.append(da)
        out, L = net.activations[-1], net.depth
        g_M = g_E = sc = None
        if alphas[-1] is not None:
            diff = As[-1] - y
            g_M, g_E = np.abs(diff), dAs[-1] + U * np.abs(diff)
            M, E, sc = _delta_bound(out, Zs[-1], dZ[-1], abs(alphas[-1]), g_M, g_E, torch_like)
        elif net.loss.cancels_with(out):
            d = out.value(Zs[-1]) - y
            M = np.abs(d)
            E = np.abs(out.grad(Zs[-1])) * dZ[-1] + C_VAL * U + U * M
        else:
            diff = As[-1] - y
            gp = np.abs(out.grad(Zs[-1]))
            M = gp * np.abs(diff)
            E = gp * (dAs[-1] + U * np.abs(diff)) + np.where(M == 0, 0.0, M * _factor_rel(out, Zs[-1], dZ[-1], torch_like))
        tol = {"aL": dAs[-1]}  # the forward error of a_L
        for l in range(L, 0, -1):
            if sc is None:
                sc = np.zeros(np.shape(M), dtype=int)
            Ms, Es = M, E  # scaled by 2^sc
            M, E = np.ldexp(Ms, -sc), np.ldexp(Es, -sc)
            tol["b%d" % l] = E + 2.0 ** -1074
            ap, dap = np.abs(As[l - 1]), dAs[l - 1]
            tol["W%d" % l] = np.ldexp(Es[..., :, None] * ap[..., None, :] + Ms[..., :, None] * (dap + U * ap)[..., None, :],
                                      -sc[..., :, None]) + 2.0 ** -1074
            if l > 1:
                W = np.abs(Ws[l - 1])
                Mv = vm(W, M)
                Ev = vm(W, E) + U * (W.shape[-2] + 2) * Mv
                if alphas[l - 1] is not None:
                    Mg, Eg = Mv + g_M, Ev + g_E
                    Eg = Eg + 3 * U * Mg
                else:
                    Mg, Eg = Mv, Ev
                g_M, g_E = Mg, Eg
                act = net.activations[l - 2]
                c = 1.0 if alphas[l - 2] is None else abs(alphas[l - 2])
                M, E, sc = _delta_bound(act, Zs[l - 2], dZ[l - 2], c, Mg, Eg, torch_like)
    return tol


def _chain_tol(net, p, torch_like=False):
    """residual_tolerance for a chain, by symgrad name, shape (n,)."""
    t = residual_tolerance(net, p, torch_like)
    out = {}
    for l in range(1, net.depth + 1):
        out["w%d" % l] = t["W%d" % l].reshape(-1)
        out["b%d" % l] = t["b%d" % l].reshape(-1)
    return out


def _torch_chain(net, p, tacts, loss):
    alphas = _alpha_values(net, p)
    leaves = {k: torch.tensor(np.asarray(p[k], dtype=np.float64), requires_grad=True) for k in net.parameters}
    a = torch.tensor(np.asarray(p["a0"], dtype=np.float64))
    for j in range(1, net.depth + 1):
        z = leaves["w%d" % j] * a + leaves["b%d" % j]
        f = tacts[j - 1](z)
        a = f if alphas[j - 1] is None else a + alphas[j - 1] * f
    y = torch.tensor(np.asarray(p["y"], dtype=np.float64))
    if loss == "cross_entropy":
        torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum").backward()
    else:
        (0.5 * (a - y) ** 2).sum().backward()
    return {k: v.grad.numpy() for k, v in leaves.items()}


def _residual_pattern(rng, depth, all_residual):
    if all_residual:
        return float(rng.choice([0.5, -0.8, 1.0, 0.3]))
    pattern = [float(v) if rng.uniform() < 0.6 else None for v in rng.uniform(-1.5, 1.5, size=depth)]
    return pattern


# ---------------------------------------------------------------------------------------------
# PyTorch autograd, float64
# ---------------------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("name,params", ACTS, ids=[a for a, _ in ACTS])
@pytest.mark.parametrize("mixed", [False, True], ids=["all-residual", "mixed"])
def test_residual_chain_matches_torch(name, params, mixed):
    rng = np.random.default_rng(_seed(name, mixed, "residual-chain"))
    depth = int(rng.integers(2, 8))
    act = symgrad.activation(name, **params)
    residual = _residual_pattern(rng, depth, not mixed)
    net = symgrad.chain(depth, act, residual=residual)
    p = sample(net, 64, seed=int(rng.integers(1 << 30)))
    ref = _torch_chain(net, p, [_torch_act(name, params)] * depth, "quadratic")
    res = backprop(net, p)
    tol = _chain_tol(net, p)
    tol = {k: tol[k] + v for k, v in _chain_tol(net, p, torch_like=True).items()}
    for k in net.parameters:
        assert_within(res.grads[k], ref[k], tol[k], k)
    # the closed form, factor by factor, and all of them at once (both within symgrad's own bound twice)
    own = _chain_tol(net, p)
    closed = evaluate_gradients([net.gradient(k) for k in net.parameters], p)
    for k, g in zip(net.parameters, closed):
        assert_within(g, ref[k], tol[k] + own[k], "closed form " + k)
    for k in ("w1", "b1", "b%d" % depth):
        assert_within(evaluate_gradient(net.gradient(k), p), ref[k], tol[k] + own[k], "closed form " + k)


@needs_torch
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu"])
def test_residual_chain_with_a_plain_sigmoid_cross_entropy_output_matches_torch(name):
    rng = np.random.default_rng(_seed(name, "ce"))
    depth = 5
    acts = [name] * (depth - 1) + ["sigmoid"]
    net = symgrad.chain(depth, acts, "cross_entropy", residual=[0.5, None, -0.7, 1.0, None])
    p = sample(net, 64, seed=int(rng.integers(1 << 30)))
    ref = _torch_chain(net, p, [_torch_act(a, {}) for a in acts], "cross_entropy")
    res = backprop(net, p)
    tol = _chain_tol(net, p)
    tol = {k: tol[k] + v for k, v in _chain_tol(net, p, torch_like=True).items()}
    for k in net.parameters:
        assert_within(res.grads[k], ref[k], tol[k], k)


@needs_torch
@pytest.mark.parametrize("name,params", ACTS, ids=[a for a, _ in ACTS])
def test_residual_dense_matches_torch(name, params):
    rng = np.random.default_rng(_seed(name, params, "residual-dense"))
    n = int(rng.integers(2, 6))
    widths = [int(rng.integers(1, 5)), n, n, n, int(rng.integers(1, 4))]
    residual = [None, 0.5, float(rng.uniform(-1.5, 1.5)), None]
    act = symgrad.activation(name, **params)
    net = symgrad.network(widths, act, residual=[None, ALPHA, residual[2], None])
    p = sample(net, seed=int(rng.integers(1 << 30)))
    p["alpha"] = 0.5
    B = 16
    p["a0"] = rng.normal(size=(B, widths[0]))
    p["y"] = rng.uniform(size=(B, widths[-1]))
    tf = _torch_act(name, params)
    leaves = {k: torch.tensor(p[k], requires_grad=True) for k in net.parameters}
    a = torch.tensor(p["a0"])
    zs = []
    for l in range(1, net.depth + 1):
        z = a @ leaves["W%d" % l].T + leaves["b%d" % l]
        z.retain_grad()
        zs.append(z)
        f = tf(z)
        a = f if residual[l - 1] is None else a + residual[l - 1] * f
    (0.5 * (a - torch.tensor(p["y"])) ** 2).sum().backward()
    res = backprop(net, p)
    tol = residual_tolerance(net, p)
    tol = {k: tol[k] + v for k, v in residual_tolerance(net, p, torch_like=True).items()}
    for k in net.parameters:
        # PyTorch sums the per-sample gradients: the bounds add, and so does the sum's rounding
        summed = tol[k].sum(axis=0) + (B + 2) * U * np.abs(res.grads[k]).sum(axis=0)
        assert_within(res.total(k), leaves[k].grad.numpy(), summed, k)
    for l in range(net.depth):
        assert_within(res.deltas[l], zs[l].grad.numpy(), tol["b%d" % (l + 1)], "delta%d" % (l + 1))


@needs_torch
def test_residual_dense_per_sample_weights_and_a_residual_output_match_torch():
    net = symgrad.network([3, 3, 3, 3], ["tanh", "sigmoid", "silu"], residual=[0.5, None, -0.25])
    p = sample(net, 5, seed=3)
    res = backprop(net, p)
    tol = residual_tolerance(net, p)
    tol = {k: tol[k] + v for k, v in residual_tolerance(net, p, torch_like=True).items()}
    acts = [torch.tanh, torch.sigmoid, torch.nn.functional.silu]
    for i in range(5):
        leaves = {k: torch.tensor(p[k][i], requires_grad=True) for k in net.parameters}
        a = torch.tensor(p["a0"][i])
        for l, (f, al) in enumerate(zip(acts, [0.5, None, -0.25]), start=1):
            h = f(leaves["W%d" % l] @ a + leaves["b%d" % l])
            a = h if al is None else a + al * h
        (0.5 * (a - torch.tensor(p["y"][i])) ** 2).sum().backward()
        for k in net.parameters:
            assert_within(res.grads[k][i], leaves[k].grad.numpy(), tol[k][i], "%s[%d]" % (k, i))
    own = residual_tolerance(net, p)
    for k in net.parameters:
        assert_within(evaluate_gradient(net.gradient(k), p), res.grads[k], 2 * own[k], "closed form " + k)


# ---------------------------------------------------------------------------------------------
# Exact references: the factor (1 + α w φ'), δ with α, the forward pass
# ---------------------------------------------------------------------------------------------


def test_a_two_layer_residual_chain_by_hand():
    # a1 = a0 + α tanh(z1), a2 = a1 + α tanh(z2), C = ½ (a2 − y)²
    net = symgrad.chain(2, "tanh", residual=ALPHA)
    v = {"a0": 0.3, "y": -0.2, "w1": 0.7, "b1": 0.1, "w2": -1.3, "b2": 0.4, "alpha": 0.6}
    p = dict(v)
    mp = mpmath.mp
    with mpmath.workdps(40):
        al = mp.mpf(v["alpha"])
        z1 = mp.mpf(v["w1"]) * v["a0"] + v["b1"]
        a1 = v["a0"] + al * mp.tanh(z1)
        z2 = mp.mpf(v["w2"]) * a1 + v["b2"]
        a2 = a1 + al * mp.tanh(z2)
        g2 = a2 - v["y"]
        d2 = al * mp.sech(z2) ** 2 * g2
        g1 = (1 + al * v["w2"] * mp.sech(z2) ** 2) * g2  # the factor 1 + α w φ'
        d1 = al * mp.sech(z1) ** 2 * g1
        exact = {"b1": d1, "b2": d2, "w1": d1 * v["a0"], "w2": d2 * a1}
    res = backprop(net, p)
    loc = forward(net, p)
    assert abs(loc["a2"] - float(a2)) <= 8 * U * abs(float(a2))
    for k, e in exact.items():
        assert abs(float(res.grads[k]) - float(e)) <= 64 * U * abs(float(e)), k
        assert abs(float(evaluate_gradient(net.gradient(k), p)) - float(e)) <= 64 * U * abs(float(e)), k
    lres = backprop(net, p, log_space=True)
    for k, e in exact.items():
        assert abs(float(lres.log_abs[k]) - float(mp.log(abs(e)))) <= 64 * U
        assert float(lres.sign[k]) == float(mp.sign(e))


def test_alpha_zero_makes_a_residual_layer_the_identity_and_its_gradients_zero():
    net = symgrad.chain(3, "tanh", residual=[None, 0, None])
    plain = symgrad.chain(2, "tanh")
    p = sample(net, 8, seed=1)
    q = {"a0": p["a0"], "y": p["y"], "w1": p["w1"], "b1": p["b1"], "w2": p["w3"], "b2": p["b3"]}
    r, s = backprop(net, p), backprop(plain, q)
    assert np.array_equal(r.grads["w2"], np.zeros(8)) and np.array_equal(r.grads["b2"], np.zeros(8))
    np.testing.assert_allclose(r.grads["b1"], s.grads["b1"], rtol=8 * U, atol=0)
    np.testing.assert_allclose(r.grads["w3"], s.grads["w2"], rtol=8 * U, atol=0)
    lr = backprop(net, p, log_space=True)
    assert np.all(lr.log_abs["b2"] == -np.inf) and np.all(lr.sign["b2"] == 0)


def test_a_transfer_factor_of_exactly_zero_and_a_negative_one():
    # identity residual layers: t = 1 + α w; α w = −1 cuts every path below it (exactly 0), −2 flips the sign
    net = symgrad.chain(3, "identity", residual=[1.0, 1.0, 1.0])
    # a1 = 2, z2 = −2, a2 = 0, z3 = 0, a3 = 0, so g3 = a3 − y = −1
    p = sample(net, value={"a0": 1.0, "y": 1.0, "w1": 1.0, "b1": 0.0, "w2": -1.0, "b2": 0.0, "w3": -2.0, "b3": 0.0})
    res = backprop(net, p, log_space=True)
    g3 = float(forward(net, p)["a3"]) - 1.0
    assert float(res.grads["b3"]) == g3
    assert float(res.grads["b2"]) == -g3  # (1 + w3) g3 = −g3: the sign flips
    assert float(res.grads["b1"]) == 0.0  # (1 + w2)(1 + w3) g3 = 0 exactly
    assert float(res.log_abs["b1"]) == -np.inf and float(res.sign["b1"]) == 0.0
    assert float(res.sign["b2"]) == -np.sign(g3) and float(res.log_abs["b2"]) == math.log(abs(g3))


def test_log_space_agrees_with_linear_space_where_representable():
    for net in (symgrad.chain(6, ["tanh", "sigmoid", "relu", "gelu", "tanh", "softplus"], residual=[0.5, None, -1.0, 0.7, None, 2.0]),
                symgrad.network([3, 4, 4, 4, 2], "tanh", residual=[None, 0.5, -0.9, None])):
        p = sample(net, 32, seed=7)
        lin, lg = backprop(net, p), backprop(net, p, log_space=True)
        for k in net.parameters:
            g = lin.grads[k]
            ok = g != 0
            np.testing.assert_allclose(lg.log_abs[k][ok], np.log(np.abs(g[ok])), rtol=0, atol=64 * U * (1 + np.abs(np.log(np.abs(g[ok])))).max())
            assert np.array_equal(lg.sign[k], np.sign(g)), k


def test_a_depth_100000_residual_chain_gives_finite_log_space_results_without_warnings():
    depth = 100_000
    net = symgrad.chain(depth, "tanh", residual=0.5)
    p = sample(net, seed=0)
    res = backprop(net, p, log_space=True)  # warnings are errors in the test run
    logs = np.array([res.log_abs["b%d" % j] for j in range(1, depth + 1)])
    assert np.isfinite(logs).all()
    # the reference: log|∂C/∂b_1| = log|α φ'(z_1)| + Σ_k log|1 + α w_k φ'(z_k)| + log|a_L − y|, each term by
    # mpmath from the same forward pass, summed exactly (math.fsum)
    loc = forward(net, p)
    z = np.array([loc["z%d" % j] for j in range(1, depth + 1)])
    w = np.array([p["w%d" % j] for j in range(1, depth + 1)])
    terms = [math.log(0.5) + float(net.activations[0].log_abs_grad(z[0]))]
    sign = 1.0
    with mpmath.workdps(30):
        for k in range(1, depth):
            t = 1 + mpmath.mpf(0.5) * mpmath.mpf(float(w[k])) * mpmath.sech(mpmath.mpf(float(z[k]))) ** 2
            terms.append(float(mpmath.log(abs(t))))
            sign *= float(mpmath.sign(t))
    gL = float(loc["a%d" % depth]) - float(p["y"])
    terms.append(math.log(abs(gL)))
    sign *= math.copysign(1.0, gL)
    exact = math.fsum(terms)
    # each term within a few u of itself (the kernels' φ' within C_GRAD u), the running sum within
    # depth·u of the sum of magnitudes
    bound = 32 * U * math.fsum(abs(t) for t in terms) + depth * U * math.fsum(abs(t) for t in terms)
    assert abs(float(res.log_abs["b1"]) - exact) <= bound
    assert float(res.sign["b1"]) == sign


def test_the_rescaled_pass_keeps_an_overflowing_and_an_underflowed_factor():
    # overflow: identity residual layers with w = 1e200: g_0 = (1 + w2)(1 + w3)(a3 − y) ≈ 1e400
    net = symgrad.chain(3, "identity", residual=1.0)
    p = sample(net, value={"a0": 1e-300, "y": 0.0, "w1": 1.0, "b1": 0.0, "w2": 1e200, "b2": 0.0, "w3": 1e200, "b3": 0.0})
    res = backprop(net, p, log_space=True)
    loc = forward(net, p)
    with mpmath.workdps(40):
        exact = (1 + mpmath.mpf(1e200)) * (1 + mpmath.mpf(1e200)) * (mpmath.mpf(float(loc["a3"])) - 0)
    assert float(res.grads["b1"]) == math.inf  # the correctly rounded value of a gradient past 1.8e308
    assert abs(float(res.log_abs["b1"]) - float(mpmath.log(exact))) <= 64 * U * float(mpmath.log(exact))
    # underflow: σ'(−800) = 0 in float64, but α σ'(−800) w2 (a2 − y) ≈ 1e243 is representable
    net = symgrad.chain(2, ["sigmoid", "identity"], residual=[1.0, None])
    p = sample(net, value={"a0": 1e-10, "y": 0.0, "w1": 0.0, "b1": -800.0, "w2": 1e300, "b2": 0.0})
    res = backprop(net, p)
    a1 = float(forward(net, p)["a1"])
    with mpmath.workdps(40):
        e = mpmath.exp(-800) / (1 + mpmath.exp(-800)) ** 2 * mpmath.mpf(1e300) * (mpmath.mpf(1e300) * mpmath.mpf(a1))
    # σ'(−800) is rebuilt from its log: off by C_LOG·u·|log σ'| (tests/_mpref.py), plus a few roundings
    rel = (C_LOG * 800 + 64) * U
    assert abs(float(res.grads["b1"]) - float(e)) <= rel * float(e)
    assert abs(float(evaluate_gradient(net.gradient("b1"), p)) - float(e)) <= rel * float(e)


def test_the_linear_and_the_rescaled_kernels_agree():
    net = symgrad.chain(7, ["tanh", "relu", "sigmoid", "elu", "silu", "tanh", "gelu"], residual=[0.5, None, -1.2, 0.8, None, 1.0, -0.3])
    p = sample(net, 100, seed=11)
    inp = _validate(net, p)
    L = net.depth
    D1, A1, D2, A2 = (np.empty((L, 100)) for _ in range(4))
    l1 = _res.chain_block(inp, 0, 100, D1, A1)
    l2 = _res.chain_scaled(inp, 0, 100, D2, A2)
    tol = _chain_tol(net, p)
    for j in range(L):
        assert_within(D1[j], D2[j], 2 * tol["b%d" % (j + 1)], "b%d" % (j + 1))
        assert_within(A1[j], A2[j], 2 * tol["w%d" % (j + 1)], "w%d" % (j + 1))
    np.testing.assert_array_equal(l1, l2)


def test_forward_adds_the_skip():
    net = symgrad.network([2, 2, 2], "tanh", residual=[ALPHA, None])
    p = sample(net, 3, seed=0)
    p["alpha"] = -0.4
    loc = forward(net, p)
    z1 = np.einsum("bij,bj->bi", p["W1"], p["a0"]) + p["b1"]
    np.testing.assert_allclose(loc["a1"], p["a0"] - 0.4 * np.tanh(z1), rtol=4 * U, atol=4 * U)
    np.testing.assert_allclose(loc["a2"], np.tanh(loc["z2"]), rtol=4 * U, atol=0)


# ---------------------------------------------------------------------------------------------
# check_gradients
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [False, True])
def test_check_gradients_passes_on_residual_networks(fast):
    for net in (symgrad.chain(5, ["tanh", "sigmoid", "relu", "tanh", "softplus"], residual=[ALPHA, None, 0.5, ALPHA, None]),
                symgrad.network([3, 3, 3, 2], "tanh", residual=[ALPHA, -0.5, None])):
        p = sample(net, 4, seed=5)
        p["alpha"] = 0.8
        rep = symgrad.check_gradients(net, p, fast=fast)
        assert rep.ok


def test_check_gradients_catches_a_grad_fn_that_forgets_the_skip():
    net = symgrad.chain(3, "tanh", residual=0.5)
    p = sample(net, 4, seed=2)
    plain = symgrad.chain(3, "tanh")

    def wrong(params):  # the gradients of the network without its skip connections
        q = {k: v for k, v in params.items()}
        return backprop(plain, q).grads

    rep = symgrad.check_gradients(net, p, grad_fn=wrong, raise_on_failure=False)
    assert not rep.ok and rep.census["grad_fn"][0] > 0


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,pattern", [
    (None, r"no value for it.*params\['alpha'\] = 0.5"),
    (float("nan"), r"params\['alpha'\].*must be finite"),
    (float("inf"), r"params\['alpha'\].*must be finite"),
    (1, r"params\['alpha'\].*one float"),
    (np.ones(4), r"params\['alpha'\].*one float"),
    ("0.5", r"params\['alpha'\].*one float"),
])
def test_a_symbolic_alpha_needs_a_finite_float_in_params(value, pattern):
    for net in (symgrad.chain(2, "tanh", residual=ALPHA), symgrad.network([2, 2], "tanh", residual=ALPHA)):
        p = sample(net, 4, seed=0)
        if value is not None:
            p["alpha"] = value
        for call in (lambda: backprop(net, p), lambda: forward(net, p), lambda: evaluate_gradient(net.gradient(net.parameters[0]), p),
                     lambda: symgrad.check_gradients(net, p)):
            with pytest.raises(InvalidArgument, match=pattern):
                call()


def test_an_alpha_for_a_network_without_one_is_an_unknown_parameter():
    net = symgrad.chain(2, "tanh", residual=0.5)
    p = sample(net, seed=0)
    p["alpha"] = 0.5
    with pytest.raises(InvalidArgument, match="unknown parameter 'alpha'"):
        backprop(net, p)


def test_a_residual_sum_that_overflows_is_refused_naming_the_layer():
    net = symgrad.chain(2, "identity", residual=1.0)
    p = sample(net, 3, value={"a0": 1e308, "y": 0.0, "w1": 1.0, "b1": 0.0, "w2": 1.0, "b2": 0.0})
    with pytest.raises(InvalidArgument, match=r"residual layer 1 .*batch index 0"):
        backprop(net, p)
    net = symgrad.network([2, 2], "identity", residual=1.0)
    p = sample(net, value={"a0": [1e308, 0.0], "y": [0.0, 0.0], "W1": [[1.0, 0.0], [0.0, 1.0]], "b1": [0.0, 0.0]})
    with pytest.raises(InvalidArgument, match=r"residual layer 1"):
        backprop(net, p)


def test_float32_residual_networks_run_in_float32():
    net = symgrad.chain(4, "tanh", residual=[0.5, None, ALPHA, 0.5])
    p = sample(net, 16, seed=0, dtype=np.float32)
    p["alpha"] = np.float32(0.25)
    res = backprop(net, p)
    assert res.grads["w1"].dtype == np.float32
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}
    ref = backprop(net, p64)
    # the same inputs exactly in float64: the float32 run's bound is the float64 one at float32's
    # unit roundoff (every term scales with u: 2^−24 / 2^−53 = 2^29), and the float64 run's own
    tol = _chain_tol(net, p64)
    for k in net.parameters:
        assert_within(res.grads[k], ref.grads[k], (2.0 ** 29 + 1) * tol[k], k)


# ---------------------------------------------------------------------------------------------
# The compiled kernel (generated from each activation's printed form)
# ---------------------------------------------------------------------------------------------

numba_only = pytest.mark.skipif(not symgrad.numeric.compiled.available(), reason="numba not installed")


@numba_only
@pytest.mark.parametrize("name,params", ACTS, ids=[a for a, _ in ACTS])
def test_the_compiled_residual_kernel_agrees_with_numpy(name, params):
    rng = np.random.default_rng(_seed(name, "jit"))
    act = symgrad.activation(name, **params)
    residual = [0.5, None, -1.1, 0.8, None, 1.0]
    acts = [act, "tanh", act, act, "sigmoid", act]
    net = symgrad.chain(6, acts, residual=residual)
    p = sample(net, 300, seed=int(rng.integers(1 << 30)))
    a, b = backprop(net, p, backend="numba", block_size=128), backprop(net, p, backend="numpy")
    tol = _chain_tol(net, p)
    for k in net.parameters:
        assert_within(a.grads[k], b.grads[k], 2 * tol[k], k)
    # each loss ½ d² (d = a_L − y) is off by |d| Δa_L + Δa_L²/2 and three roundings
    da = residual_tolerance(net, p)["aL"].reshape(-1)
    d = np.abs(b.loss * 2) ** 0.5
    assert_within(a.loss, b.loss, 2 * (d * da + da * da / 2 + 3 * U * b.loss), "loss")


@numba_only
def test_the_compiled_kernel_redoes_flagged_samples_and_diagnoses_bad_input():
    net = symgrad.chain(2, ["sigmoid", "identity"], residual=[1.0, None])
    p = sample(net, 64, seed=0)
    # samples 5 and 40: σ'(−800) underflows, the gradient does not (test above)
    for i in (5, 40):
        p["a0"][i], p["w1"][i], p["b1"][i], p["w2"][i], p["y"][i] = 1e-10, 0.0, -800.0, 1e300, 0.0
    a, b = backprop(net, p, backend="numba"), backprop(net, p, backend="numpy")
    for k in net.parameters:
        np.testing.assert_array_equal(a.grads[k][[5, 40]], b.grads[k][[5, 40]])
        assert_within(a.grads[k], b.grads[k], 2 * _chain_tol(net, p)[k], k)
    assert a.grads["b1"][5] > 1e240
    p["w2"][7] = np.nan
    with pytest.raises(InvalidArgument, match=r"parameter 'w2'.*nan at index \(7,\)"):
        backprop(net, p, backend="numba")
    q = sample(net, 64, seed=0, value={"a0": 1e308, "w1": 0.0, "b1": 0.0, "w2": 1.0, "b2": 0.0, "y": 0.0})
    q["b1"] = np.full(64, 800.0)  # a1 = a0 + σ(800) = 1e308 + 1: fine; then z2 = 1e308
    backprop(net, q, backend="numba")
    q["a0"] = np.full(64, 1.7e308)
    q["w1"] = np.full(64, 0.0)
    q2 = dict(q)
    net2 = symgrad.chain(2, "identity", residual=1.0)
    q2["b1"] = np.full(64, 1.7e308)  # a1 = a0 + z1 = 3.4e308: the residual sum overflows
    with pytest.raises(InvalidArgument, match=r"residual layer 1"):
        backprop(net2, q2, backend="numba")


@numba_only
@pytest.mark.parametrize("name", ["softplus", "gelu", "silu", "elu", "sigmoid", "tanh"])
def test_certified_underflow_in_residual_layers_needs_no_redo(name, monkeypatch):
    # a_l = a_{l−1} + ½φ(z_l) with |a| ~ 1e4: z_l reaches ±1e4, so φ'(z_l) (and for some φ itself)
    # underflows in most samples.  The kernel's log-bounds certify δ_l = ∂C/∂w_l = 0 and
    # a_l = a_{l−1} there without the rescaled redo; the values agree with the NumPy kernels.
    net = symgrad.chain(8, name, residual=0.5)
    p = sample(net, 3000, seed=_seed(name, "certified"))
    rng = np.random.default_rng(_seed(name, "a0"))
    p["a0"] = rng.normal(0.0, 1e4, 3000)
    redone = []
    orig = _res.scaled_samples
    monkeypatch.setattr(_res, "scaled_samples", lambda inp, idx, *a: (redone.append(len(idx)), orig(inp, idx, *a))[1])
    a = backprop(net, p, backend="numba", threads=1)
    monkeypatch.setattr(_res, "scaled_samples", orig)
    b = backprop(net, p, backend="numpy")
    tol = _chain_tol(net, p)
    for k in net.parameters:
        assert_within(a.grads[k], b.grads[k], 2 * tol[k], k)
    act = net.activations[0]
    zs = np.array([forward(net, p)["z%d" % j] for j in range(1, 9)])
    with np.errstate(under="ignore"):
        under = (np.abs(act.grad(zs)) < np.finfo(float).tiny).any(axis=0).sum()
    assert under > 1000  # the case this is about
    assert sum(redone) < under / 10


@numba_only
def test_an_underflowed_phi_is_dropped_only_beside_a_large_activation(monkeypatch):
    # α = 1e−10 and a_L = y, so δ_1 = α σ(−720) g_1 is certified 0 in both samples.  But
    # α softplus(−720) ≈ 2.2e−323 is a1 itself beside a0 = 0 (sample 0: redone rescaled), while
    # beside a0 = 1 it is far below half an ulp and a1 = a0 exactly (sample 1: no redo).
    net = symgrad.chain(2, "softplus", residual=1e-10)
    p = sample(net, 64, seed=1)
    p["a0"][:2], p["w1"][:2], p["b1"][:2], p["w2"][:2], p["b2"][:2] = [0.0, 1.0], 1.0, -720.0, 1.0, 0.0
    p["y"] = forward(net, p)["a2"]
    redone = []
    orig = _res.scaled_samples
    monkeypatch.setattr(_res, "scaled_samples", lambda inp, idx, *a: (redone.extend(idx.tolist()), orig(inp, idx, *a))[1])
    a = backprop(net, p, backend="numba")
    assert 0 in redone and 1 not in redone
    b = backprop(net, p, backend="numpy")
    for k in net.parameters:
        np.testing.assert_array_equal(a.grads[k][:2], b.grads[k][:2], err_msg=k)


def _mp_act(name):
    """(φ, φ') of a built-in activation in mpmath, at the working precision."""
    sg = lambda z: 1 / (1 + mpmath.exp(-z))  # noqa: E731
    npdf = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
    return {
        "softplus": (lambda z: mpmath.log1p(mpmath.exp(z)), sg),
        "sigmoid": (sg, lambda z: mpmath.exp(-abs(z)) / (1 + mpmath.exp(-abs(z))) ** 2),
        "tanh": (mpmath.tanh, lambda z: mpmath.sech(z) ** 2),
        "silu": (lambda z: z * sg(z), lambda z: sg(z) * (1 + z * (1 - sg(z)))),
        "elu": (lambda z: mpmath.expm1(z) if z < 0 else z, lambda z: mpmath.exp(z) if z < 0 else mpmath.mpf(1)),
        "gelu": (lambda z: z * mpmath.ncdf(z), lambda z: mpmath.ncdf(z) + z * npdf(z)),
    }[name]


@numba_only
@pytest.mark.parametrize("name", ["softplus", "sigmoid", "tanh", "silu", "elu", "gelu"])
def test_band_entries_of_a_residual_chain_are_exact_without_a_redo(name, monkeypatch):
    # The band: in residual layer 1, φ'(z_1) underflows (log|φ'| = −720 … −800), so 1 + α w φ'(z_1)
    # rounds to 1, yet g_1 ≈ 1e15 and a_0 = 1e15 make δ_1 = α φ'(z_1) g_1 normal or subnormal and
    # ∂C/∂w_1 = a_0 δ_1 representable.  The compiled kernel leaves these entries to a fix from
    # log|φ'(z_1)| (``residual.fix_band``): exact to the log's rounding, C_LOG u |log φ'| (plus
    # a few roundings), with no sample redone; at log|φ'| = −800 δ_1 is 0 but ∂C/∂w_1 is subnormal.
    act = symgrad.activation(name)
    phi, dphi = _mp_act(name)
    net = symgrad.chain(2, name, residual=0.5)
    levels = [-712.0, -720.0, -735.0, -744.0, -760.0, -800.0]
    n = 64
    p = sample(net, n, seed=_seed(name, "band"))
    at = 37 + np.arange(len(levels) + 1)  # samples in the third block of 16 (below)
    for i, lv in enumerate(levels):
        lo, hi = -2000.0, 0.0  # log|φ'(z)| = lv, by bisection, on a grid of 1/8 (z_1 is exact)
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if act.log_abs_grad(np.array([mid]))[0] < lv else (lo, mid)
        p["a0"][at[i]], p["w1"][at[i]], p["b1"][at[i]] = 1e15, 1.0, -1e15 + round(hi * 8) / 8
        p["w2"][at[i]], p["b2"][at[i]], p["y"][at[i]] = 1.0, -1e15, 0.0
    # one more sample with a band entry in layer 1 and a subnormal z_2 = 1e-323·a_1 (flagged: the whole
    # sample is redone rescaled, after the band fix, which must not then overwrite it)
    both = len(levels)
    for k in ("a0", "w1", "b1", "y"):
        p[k][at[both]] = p[k][at[2]]
    p["w2"][at[both]], p["b2"][at[both]] = 1e-323, 0.0
    redone = []
    orig = _res.scaled_samples
    monkeypatch.setattr(_res, "scaled_samples", lambda inp, idx, *a: (redone.extend(idx.tolist()), orig(inp, idx, *a))[1])
    got = backprop(net, p, backend="numba", threads=1)
    assert not set(redone) & set(at[:both].tolist()) and at[both] in redone, redone
    # the same per block of 16, with the outputs' rows copied (wrt: each block fixes its own entries)
    per_block = backprop(net, p, backend="numba", threads=1, block_size=16, wrt=["b1", "w1", "w2"])
    tol = _chain_tol(net, p)  # (the same bits on this machine; the error analysis on any CPU)
    for k in ("b1", "w1", "w2"):
        assert_within(per_block.grads[k], got.grads[k], 2 * tol[k], k)
    mpmath.mp.dps = 60
    for i in range(len(levels) + 1):
        a0, w1, b1, w2, b2, y = (mpmath.mpf(float(p[k][at[i]])) for k in ("a0", "w1", "b1", "w2", "b2", "y"))
        z1 = w1 * a0 + b1
        a1 = a0 + phi(z1) / 2
        z2 = w2 * a1 + b2
        a2 = a1 + phi(z2) / 2
        g2 = a2 - y
        g1 = g2 * (1 + w2 * dphi(z2) / 2)
        d1 = dphi(z1) / 2 * g1
        rel = C_LOG * U * float(abs(mpmath.log(abs(dphi(z1))))) + 40 * U
        what = "%s sample %d" % (name, i)
        assert_close_to_reference(got.grads["b1"][at[i]], d1, rel, what + " b1")
        assert_close_to_reference(got.grads["w1"][at[i]], d1 * a0, rel, what + " w1")
    assert got.grads["w1"][at[len(levels) - 1]] != 0  # the subnormal ∂C/∂w_1 beside a zero δ_1


@numba_only
@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"])
@pytest.mark.parametrize("share", [0.01, 0.5], ids=["few-odd", "many-odd"])
def test_the_fast_pass_and_the_exact_pass_give_the_same_values(name, share, monkeypatch):
    # The residual kernel's fast pass flags samples (a superset of the exact pass's conditions) and
    # ``res_redo`` sends them, gathered, through the exact pass; above a sixteenth of a block flagged,
    # the block goes whole.  Either way the same samples must reach the rescaled redo, and every value
    # must be the exact pass's, in all-residual and mixed (plain and residual) chains; a share of
    # samples with a_0 ~ 1e4 makes z reach ±1e4 there (φ' underflows, certified zeros and band entries).
    rng = np.random.default_rng(_seed(name, "fast-exact", share))
    redone = []
    orig_scaled = _res.scaled_samples
    monkeypatch.setattr(_res, "scaled_samples", lambda inp, idx, *a: (redone.extend(idx.tolist()), orig_scaled(inp, idx, *a))[1])
    for residual in (0.5, [0.5, None, -0.8, None, 1.0, 0.3]):
        net = symgrad.chain(6, name, residual=residual)
        p = sample(net, 3000, seed=int(rng.integers(1 << 30)))
        odd = rng.uniform(size=3000) < share
        p["a0"] = np.where(odd, rng.normal(0.0, 1e4, 3000), p["a0"])
        del redone[:]
        got = backprop(net, p, backend="numba", threads=1)
        via_fast = sorted(redone)
        orig = _res.jit_kernel
        monkeypatch.setattr(_res, "jit_kernel", lambda inp: orig(inp)[:4] + ({"exact": True},))
        del redone[:]
        ref = backprop(net, p, backend="numba", threads=1)
        monkeypatch.setattr(_res, "jit_kernel", orig)
        assert via_fast == sorted(redone), (residual, via_fast[:10], sorted(redone)[:10])
        # (the same bits on this machine; held to the error analysis, so that a CPU whose compiler
        # fuses a multiply-add differently in the two loops does not fail: a missed mark or fix
        # is far outside it)
        tol = _chain_tol(net, p)
        for k in net.parameters:
            assert_within(got.grads[k], ref.grads[k], 2 * tol[k], "%s %r" % (k, residual))
        da = residual_tolerance(net, p)["aL"].reshape(-1)
        d = np.abs(ref.loss * 2) ** 0.5
        assert_within(got.loss, ref.loss, 2 * (d * da + da * da / 2 + 3 * U * ref.loss), "loss")


def _spy_passes(monkeypatch):
    """Record each call of the residual kernel's redo ("redo") and whole-block exact pass ("exact")."""
    calls = []
    orig = _res.jit_kernel

    def spy(inp):
        (fast, redo, exact), *rest = orig(inp)
        return ((fast, lambda *a: calls.append("redo") or redo(*a), lambda *a: calls.append("exact") or exact(*a)), *rest)

    monkeypatch.setattr(_res, "jit_kernel", spy)
    return calls


@numba_only
@pytest.mark.parametrize("case", ["z subnormal", "phi underflows alone", "alpha phi' underflows", "a delta underflows",
                                  "w delta underflows", "z overflows", "g overflows above a mark"])
def test_each_condition_of_the_fast_pass_hands_the_sample_to_the_exact_pass(case, monkeypatch):
    # One sample (of 64) per condition of the exact pass that the fast pass must not miss, alone (no
    # other condition holds in that sample); the others are ordinary.  The exact pass then flags it
    # for the rescaled redo, certifies or fixes it, or diagnoses it.
    act, alpha = "sigmoid", 0.5
    if case == "phi underflows alone":  # in a plain layer: φ(1e-160) = 1e-320, φ' = 2e-160
        act, alpha = symgrad.custom_activation("z**2", name="square"), [None, 0.5, 0.5]
    elif case in ("a delta underflows", "w delta underflows"):
        act, alpha = "identity", [0.5, None, 0.5]
    elif case == "alpha phi' underflows":
        alpha = 1e-300
    elif case == "z overflows":
        act = "relu"  # z_1 = −inf: φ = φ' = 0, nothing after it is odd
    elif case == "g overflows above a mark":
        alpha = 1.0
    net = symgrad.chain(2 if case == "g overflows above a mark" else 3, act, residual=alpha)
    p = sample(net, 64, seed=5)
    for k in net.parameters:
        p[k] = np.clip(p[k], -0.9, 0.9)
    i = 17
    if case == "z subnormal":
        p["a0"][i], p["w1"][i], p["b1"][i] = 1e-160, 1e-160, 0.0
    elif case == "phi underflows alone":  # g ~ 1e150: ∂C/∂w_2 = a_1 δ_2 ~ 1e-170 is normal, a_1 is not
        p["a0"][i], p["w1"][i], p["b1"][i], p["y"][i] = 0.0, 1.0, 1e-160, -1e150
    elif case == "alpha phi' underflows":
        p["a0"][i], p["w1"][i], p["b1"][i], p["y"][i] = 1.0, 1.0, -23.0, 1e10  # α σ'(−22) ~ 1e-310, g ~ 1e10
    elif case == "a delta underflows":
        p["a0"][i], p["y"][i] = 1e-200, 0.0  # δ_1 ~ g ~ a_L ~ 1e-200, ∂C/∂w_1 = a_0 δ_1 ~ 1e-400
        for j in (1, 2, 3):
            p["w%d" % j][i], p["b%d" % j][i] = 1.0, 0.0
    elif case == "w delta underflows":
        # plain layer 2 with w_2 = 1e-200: a_L ~ 1e-150, so g_1 = w_2 δ_2 ~ 1e-350 underflows, while
        # ∂C/∂w_1 = a_0 α g_1 ~ 1e-300 (a_0 = 1e50) does not
        for j in (1, 2, 3):
            p["w%d" % j][i], p["b%d" % j][i] = 1.0, 0.0
        p["a0"][i], p["w2"][i], p["y"][i] = 1e50, 1e-200, 0.0
    elif case == "z overflows":
        p["a0"][i], p["w1"][i] = 1e300, -1e300
    else:
        # g_2 = a_2 − y ~ 1.7e308 and g_1 = g_2 + 2.5 δ_2 = (1 + 2.5 σ'(0)) g_2 overflows (each term
        # finite), while layer 1's σ'(−800) underflows (a mark): δ_1 = σ'(−800) g_1 ~ 1e-39, only
        # through the rescaled redo
        p["a0"][i], p["w1"][i], p["b1"][i], p["w2"][i], p["b2"][i], p["y"][i] = 1.0, 1.0, -801.0, 2.5, -2.5, -1.7e308
    calls = _spy_passes(monkeypatch)
    redone = []
    orig = _res.scaled_samples
    monkeypatch.setattr(_res, "scaled_samples", lambda inp, idx, *a: (redone.extend(idx.tolist()), orig(inp, idx, *a))[1])
    if case == "z overflows":
        with pytest.raises(InvalidArgument, match=r"overflows float64 at layer 1 .* batch index 17"):
            backprop(net, p, backend="numba", threads=1)
        assert calls == ["redo"], calls
        return
    got = backprop(net, p, backend="numba", threads=1)
    assert calls == ["redo"], calls
    # the exact pass then flags it for the rescaled redo, except the mark, which it certifies or fixes
    assert redone == ([] if case == "alpha phi' underflows" else [i]), redone
    monkeypatch.undo()
    ref = backprop(net, p, backend="numpy")
    if case == "g overflows above a mark":
        assert 1e-40 < got.grads["b1"][i] == ref.grads["b1"][i] < 1e-38
    tol = _chain_tol(net, p)
    for k in net.parameters:
        assert_within(got.grads[k], ref.grads[k], 2 * tol[k], k)


@numba_only
def test_a_moderate_residual_chain_never_leaves_the_fast_pass(monkeypatch):
    # the design's premise: a typical draw (z of a few units) raises no flag, so the exact pass and
    # its bounds do not run at all; one sample with a_0 = 1e4 is redone alone
    net = symgrad.chain(8, ["tanh", "sigmoid"] * 4, residual=[0.5, None] * 4)
    p = sample(net, 5000, seed=3)
    calls = _spy_passes(monkeypatch)
    backprop(net, p, backend="numba", threads=1)
    assert calls == []
    p["a0"][1234], p["w1"][1234] = 1e4, 1.0
    backprop(net, p, backend="numba", threads=1)
    assert calls == ["redo"]


# ---------------------------------------------------------------------------------------------
# Shared weights (backprop_shared: the gradient-flow report and the Monte-Carlo check use it)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("widths,acts,residual", [
    ([3, 4, 4, 4, 2], "tanh", [None, ALPHA, -0.5, None]),
    ([3, 3, 3], ["identity", "sigmoid"], [0.5, 1.0]),
    ([2, 5, 5, 5, 5, 1], ["relu", "gelu", "silu", "tanh", "identity"], [None, 0.7, ALPHA, -1.2, None]),
])
def test_backprop_shared_with_residual_layers_sums_the_per_sample_gradients(widths, acts, residual):
    from symgrad.numeric.shared import backprop_shared, gamma

    net = symgrad.network(widths, acts, residual=residual)
    p = sample(net, seed=4)
    rng = np.random.default_rng(5)
    B = 9
    p["a0"], p["y"] = rng.normal(size=(B, widths[0])), rng.normal(size=(B, widths[-1]))
    if ALPHA in residual:
        p["alpha"] = 0.4
    r = backprop_shared(net, p)
    per = backprop(net, p)
    tol = residual_tolerance(net, p)
    for k in net.parameters:
        # both within their bounds of the exact per-sample gradients, summed with γ_B each
        summed = 2 * tol[k].sum(axis=0) + 2 * gamma(B + 2) * np.abs(per.grads[k]).sum(axis=0)
        assert_within(r.grads[k], per.total(k), summed, k)
    for l in range(net.depth):
        t = tol["b%d" % (l + 1)]
        n = t.shape[-1]
        bound = 2 * (2 * np.linalg.norm(t, axis=1) * per.layer_norms[:, l] + np.sum(t * t, axis=1)) + 4 * (n + 2) * U * per.layer_norms[:, l] ** 2
        assert_within(r.delta_sq[:, l], per.layer_norms[:, l] ** 2, bound, "delta_sq%d" % (l + 1))


def test_backprop_shared_refuses_delta_out_with_a_residual_output_and_a_missing_alpha():
    from symgrad.numeric.shared import backprop_shared

    net = symgrad.network([2, 2, 2], "tanh", residual=[None, 0.5])
    p = {"a0": np.ones((3, 2)), "W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    with pytest.raises(InvalidArgument, match="residual.*∂C/∂a"):
        backprop_shared(net, p, delta_out=np.ones((3, 2)))
    net = symgrad.network([2, 2, 2], "tanh", residual=[ALPHA, None])
    p["y"] = np.zeros((3, 2))
    with pytest.raises(InvalidArgument, match=r"params\['alpha'\]"):
        backprop_shared(net, p)


def test_a_dense_residual_network_through_the_rescaled_pass():
    # layer 1 residual with σ(−800): σ' underflows to 0 and g^1 = W2ᵀ δ^2 ≈ 1e590 overflows, yet
    # δ^1 = α σ'(−800) g^1 ≈ 1e243 is representable; the rescaled pass carries both as m·2^k
    net = symgrad.network([2, 2, 2], ["sigmoid", "identity"], residual=[ALPHA, None])
    p = {"a0": np.array([1e-10, -2e-10]), "y": np.zeros(2), "W1": np.zeros((2, 2)), "b1": np.full(2, -800.0),
         "W2": np.array([[1e300, 0.0], [0.0, 1e300]]), "b2": np.zeros(2), "alpha": 0.75}
    res = backprop(net, p, log_space=True)
    a1 = forward(net, p)["a1"]
    with mpmath.workdps(40):
        s = mpmath.exp(-800) / (1 + mpmath.exp(-800)) ** 2
        exact = [0.75 * s * mpmath.mpf(1e300) * (mpmath.mpf(1e300) * mpmath.mpf(float(a1[i]))) for i in range(2)]
    rel = (C_LOG * 800 + 64) * U
    for i in range(2):
        assert abs(res.grads["b1"][i] - float(exact[i])) <= rel * abs(float(exact[i]))
        assert abs(res.log_abs["b1"][i] - float(mpmath.log(abs(exact[i])))) <= rel
        assert res.sign["b1"][i] == float(mpmath.sign(exact[i]))
    cf = evaluate_gradient(net.gradient("b1"), p)
    assert np.all(np.abs(cf - np.array([float(e) for e in exact])) <= rel * np.abs(np.array([float(e) for e in exact])))


def test_backprop_shared_compiled_and_numpy_residual_paths_agree(monkeypatch):
    from symgrad.numeric.shared import backprop_shared

    net = symgrad.network([3, 4, 4, 4, 2], ["tanh", "gelu", "relu", "sigmoid"], residual=[None, 0.5, ALPHA, None])
    p = sample(net, seed=8)
    rng = np.random.default_rng(9)
    p["a0"], p["y"], p["alpha"] = rng.normal(size=(6, 3)), rng.normal(size=(6, 2)), -0.7
    from symgrad.numeric import _shared_kernels

    if symgrad.numeric.compiled.available():
        assert _shared_kernels.kernels(net, np.float64) is not None  # the first pass is the compiled one
    compiled = backprop_shared(net, p)
    monkeypatch.setattr(_shared_kernels, "kernels", lambda net, dt: None)
    plain = backprop_shared(net, p)
    tol = residual_tolerance(net, p)
    for k in net.parameters:
        assert_within(compiled.grads[k], plain.grads[k], 2 * tol[k].sum(axis=0) + 4 * 8 * U * np.abs(plain.grads[k]), k)
