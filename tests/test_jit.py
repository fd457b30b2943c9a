"""The optional compiled kernel (``symgrad[jit]``, numba): its exp, and its agreement with NumPy.

numba is in the ``test`` extra.  Without it these tests skip with a loud reason locally and FAIL
in CI (``CI`` set), like the PyTorch oracle: a fast path nobody tests is a liability.
The kernel's handling of nan/inf inputs, overflow and blocking is tested in test_numeric.py, whose
fast-kernel tests run on both backends.
"""

from __future__ import annotations

import math
import os

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symgrad
from symgrad import InvalidArgument
from symgrad.numeric import compiled as _jit
from symgrad.numeric import backprop, sample

from ._mpref import assert_close_to_reference, assert_within, chain_reference, chain_tolerance

if not _jit.available():  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise ImportError(
            "numba is required for the compiled-kernel tests in CI (%s): install the test extra "
            "(pip install -e '.[test]')" % _jit.import_error()
        )
    pytestmark = pytest.mark.skip(
        reason="!!! numba NOT INSTALLED: the compiled-kernel tests did NOT run. "
        "Install the test extra: pip install -e '.[test]' !!!"
    )


def _exp(u):
    u = np.ascontiguousarray(u, dtype=np.float64)
    out = np.empty_like(u)
    _jit.kernels()["exp_neg_array"](u, out)
    return out


def _ulps_from_exact(u, got):
    """|got − e^u| in units of the last place of e^u, e^u from mpmath at 60 digits."""
    mpmath.mp.dps = 60
    errs = []
    for x, g in zip(u, got):
        exact = mpmath.exp(mpmath.mpf(float(x)))
        ulp = math.ulp(float(exact)) if float(exact) > 0 else 5e-324
        errs.append(float(abs(mpmath.mpf(float(g)) - exact) / ulp))
    return np.array(errs)


def test_exp_is_within_one_ulp_of_the_exact_value_over_its_whole_range():
    rng = np.random.default_rng(0)
    u = np.concatenate([
        -rng.uniform(0, 1, 600), -rng.uniform(0, 40, 600), -rng.uniform(0, 746, 600),
        -rng.uniform(700, 746, 600),  # the subnormal results
        -np.abs(rng.normal(size=200)) * 1e-8,
        [0.0, -0.0, -5e-324, -1e-300, -math.log(2) / 2, -math.log(2), -708.39, -709.0, -744.44, -745.13, -745.14],
    ])
    got = _exp(u)
    ref = np.exp(u)
    assert np.array_equal(got == 0, ref == 0)
    nz = ref > 0
    errs = _ulps_from_exact(u[nz], got[nz])
    assert errs.max() <= 1.0, (errs.max(), u[nz][np.argmax(errs)])
    assert errs.mean() < 0.3  # a correctly rounded exp averages 0.25 ulp from the exact value
    assert _exp(np.array([0.0, -0.0]))[0] == 1.0 and _exp(np.array([-0.0]))[0] == 1.0


def test_exp_polynomial_is_the_documented_chebyshev_fit():
    # The coefficients are not magic numbers: this is how they were made, and what they achieve.
    mpmath.mp.dps = 50
    h = mpmath.log(2) / 2
    poly, err = mpmath.chebyfit(mpmath.exp, [-h, h], 12, error=True)
    assert tuple(float(c) for c in poly) == _jit.EXP_POLY
    assert err < 4e-18
    worst = max(abs(mpmath.polyval([mpmath.mpf(c) for c in _jit.EXP_POLY], x) / mpmath.exp(x) - 1)
                for x in mpmath.linspace(-h, h, 801))
    assert worst < 2e-17  # 0.15 ulp before the evaluation's own roundings


def test_exp_underflows_to_zero_like_libm_and_never_warns():
    u = np.array([-745.2, -746.0, -800.0, -1e300, -np.finfo(float).max])
    assert np.all(_exp(u) == 0.0)


@settings(max_examples=300)
@given(st.floats(min_value=-760.0, max_value=0.0, allow_nan=False))
def test_exp_matches_numpy_to_one_ulp(x):
    got = float(_exp(np.array([x]))[0])
    ref = math.exp(x)
    assert abs(got - ref) <= math.ulp(ref) if ref > 0 else got == 0.0


def _samples(fast, ref, net, k=96, seed=0):
    """Which samples to check against mpmath: k at random, plus the k/2 worst conditioned (a_L
    nearest y) and the k/2 where the two kernels differ most."""
    n = len(ref.loss)
    rng = np.random.default_rng(seed)
    pick = set(rng.choice(n, size=min(k, n), replace=False).tolist())
    pick |= set(np.argsort(np.abs(ref.deltas[-1]))[: k // 2].tolist())
    diff = np.max([np.abs(fast.grads[q] - ref.grads[q]) / np.maximum(np.abs(ref.grads[q]), 1e-300) for q in net.parameters], axis=0)
    pick |= set(np.argsort(-diff)[: k // 2].tolist())
    return sorted(pick)


@pytest.mark.parametrize("depth,batch,loss", [(1, 70, "quadratic"), (2, 4097, "quadratic"), (7, 1000, "cross_entropy"),
                                              (50, 20_000, "quadratic"), (50, 3000, "cross_entropy")])
def test_both_kernels_meet_the_forward_error_bound_against_mpmath(depth, batch, loss):
    # No tolerance between the two kernels: each is compared with the exact gradient (mpmath, 40
    # digits) under the first-order forward-error bound of tests/_mpref.py, which grows with the
    # conditioning (a_L ≈ y: the y drawn here do come close to a_L) and with the depth, and
    # holds for any IEEE double arithmetic (FMA or not, AVX-512 or not).
    net = symgrad.chain(depth, "sigmoid", loss)
    p = sample(net, batch, seed=depth)
    fast = backprop(net, p, backend="numba")
    ref = backprop(net, p, backend="numpy")
    idx = _samples(fast, ref, net)
    for i in idx:
        exact, exact_loss, bound = chain_reference(net, p, i)
        for k in net.parameters:
            for res, kind in ((fast, "numba"), (ref, "numpy")):
                assert_close_to_reference(res.grads[k][i], exact[k], bound[k], "%s %s[%d]" % (kind, k, i))
        for res in (fast, ref):
            assert abs(mpmath.mpf(float(res.loss[i])) - exact_loss) <= bound["loss"] + 2 ** -1074, (i, res.loss[i], exact_loss)
            assert res.layer_norms[i, 0] == abs(res.grads["b1"][i])


def test_kernel_saturated_and_tiny_gradients_keep_relative_precision():
    # z far from 0 in both directions: σ'(z) = t·r stays exact where (1 − σ)σ would be 0.
    net = symgrad.chain(3)
    B = 512
    rng = np.random.default_rng(5)
    p = sample(net, B, seed=5)
    p["b1"] = rng.choice([-700.0, -40.0, 40.0, 700.0], B)
    fast = backprop(net, p, backend="numba")
    ref = backprop(net, p, backend="numpy")
    # against the exact gradients: the samples at every b1, plus the worst-agreeing ones
    for i in _samples(fast, ref, net, k=48):
        exact, _, bound = chain_reference(net, p, i)
        for k in net.parameters:
            for res, kind in ((fast, "numba"), (ref, "numpy")):
                assert_close_to_reference(res.grads[k][i], exact[k], bound[k], "%s %s[%d] b1=%g" % (kind, k, i, p["b1"][i]))


def test_kernel_exploding_gradient_is_redone_rescaled_like_numpy():
    L = 400
    net = symgrad.chain(L)
    B = 256
    p = sample(net, B, seed=0)
    for j in range(1, L + 1):
        p["w%d" % j] = np.full(B, 40.0)  # |w σ'(0)| = 10 per layer: δ overflows float64
        p["b%d" % j] = np.full(B, -20.0) if j % 2 else np.zeros(B)
    fast = backprop(net, p, backend="numba")
    ref = backprop(net, p, backend="numpy")
    for k in ("b1", "w1", "b%d" % L):
        np.testing.assert_array_equal(np.isinf(fast.grads[k]), np.isinf(ref.grads[k]))
        assert not np.isnan(fast.grads[k]).any()


def test_kernel_agrees_with_pytorch_autograd():
    torch = pytest.importorskip("torch")
    net = symgrad.chain(20)
    p = sample(net, 5000, seed=9)
    res = backprop(net, p, backend="numba")
    W = [torch.tensor(p["w%d" % j], requires_grad=True) for j in range(1, 21)]
    Bs = [torch.tensor(p["b%d" % j], requires_grad=True) for j in range(1, 21)]
    a = torch.tensor(p["a0"])
    for w, b in zip(W, Bs):
        a = torch.sigmoid(w * a + b)
    (0.5 * (a - torch.tensor(p["y"])) ** 2).sum().backward()
    # Both within the forward-error bound of the exact value; PyTorch's σ' = (1 − σ)σ adds an
    # absolute error of a few u to each σ' (torch_like), which dominates where σ' is small.
    tol, tol_t = chain_tolerance(net, p), chain_tolerance(net, p, torch_like=True)
    for j in range(20):
        for k, t in (("b%d" % (j + 1), Bs[j]), ("w%d" % (j + 1), W[j])):
            assert_within(res.grads[k], t.grad.numpy(), tol[k] + tol_t[k], k)


@pytest.mark.parametrize("net,params,match", [
    (symgrad.chain(3, "tanh"), {}, "all-sigmoid"),
    (symgrad.chain(3), {"dtype": np.float32}, "float64"),
    (symgrad.chain(3), {"unbatched": True}, "batched"),
    (symgrad.chain(3), {"log_space": True}, "linear space"),
    (symgrad.network([2, 3, 1]), {}, "chains only"),
])
def test_backend_numba_refuses_what_it_cannot_compute(net, params, match):
    p = sample(net, 64, seed=0)
    if params.get("dtype"):
        p = {k: v.astype(np.float32) for k, v in p.items()}
    if params.get("unbatched"):
        p["w2"] = 0.5
    with pytest.raises(InvalidArgument, match=match) as exc:
        backprop(net, p, backend="numba", log_space=params.get("log_space", False))
    assert "backend=" in str(exc.value)


def test_backend_argument_and_missing_numba(monkeypatch):
    net = symgrad.chain(2)
    p = sample(net, 100, seed=0)
    with pytest.raises(InvalidArgument, match="backend='cuda'.*'auto', 'numpy', 'numba'"):
        backprop(net, p, backend="cuda")
    monkeypatch.setattr(_jit, "available", lambda: False)
    monkeypatch.setattr(_jit, "import_error", lambda: "ModuleNotFoundError: No module named 'numba'")
    with pytest.raises(InvalidArgument, match="symgrad\\[jit\\]"):
        backprop(net, p, backend="numba")
    assert backprop(net, p).grads["w1"].shape == (100,)  # auto falls back to NumPy


def test_auto_compiles_only_for_large_chains(monkeypatch):
    calls = []
    real = _jit.kernels
    monkeypatch.setattr(_jit, "kernels", lambda: calls.append(1) or real())
    net = symgrad.chain(4)
    backprop(net, sample(net, 1000, seed=0))
    assert calls == []  # 4000 layer-samples: NumPy, no numba start-up
    backprop(net, sample(net, 70_000, seed=0))
    assert calls == [1]
