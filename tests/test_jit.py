"""The optional compiled kernel (``symgrad[jit]``, numba): its exp, and its agreement with NumPy.

numba is in the ``test`` extra.  Without it these tests skip with a loud reason locally and FAIL
in CI (``CI`` set), like the PyTorch oracle: a fast path nobody tests is a liability.
The kernel's handling of nan/inf inputs, overflow and blocking is tested in test_numeric.py, whose
fast-kernel tests run on both backends.
"""

from __future__ import annotations

import functools
import math
import os
import re

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
    return _elementary("exp_neg", u)


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


def test_the_flushing_exp_and_erfc_of_the_chain_kernels_are_exact_or_zero_never_subnormal():
    # The chain kernels' variants (compiled.elementary(flush=True)) return the unflushed value
    # bit for bit wherever it is at least 2^−1022 (up to the few arguments just above the cut,
    # ln 2^−1022 = −708.396 … _FLUSH_EXP, which give 0), and 0 below: no subnormal result.
    tiny = float(np.finfo(np.float64).tiny)
    rng = np.random.default_rng(7)
    u = np.concatenate([-rng.uniform(0, 746, 3000), -rng.uniform(700, 760, 3000), -rng.uniform(0, 1e6, 500),
                        [0.0, -0.0, -708.3, -708.39, np.nextafter(-708.39, 0), -708.3964, -709.0, -745.2, -1e300]])
    got, ref = _elementary("exp_neg", u, flush=True), _elementary("exp_neg", u)
    keep = u >= _jit._FLUSH_EXP
    assert np.array_equal(got[keep], ref[keep]) and np.all(got[~keep] == 0.0)
    assert np.all(ref[u < _jit._FLUSH_EXP] < tiny * 1.007)  # only values at or below 2^−1022·e^0.0064 are flushed
    x = np.concatenate([rng.uniform(-30, 30, 3000), rng.uniform(25, 28, 3000), [26.5, 26.6, 27.0, 27.2, 27.3, 28.0, 1e6, -1e6]])
    got, ref = _elementary("erfc_", x, flush=True), _elementary("erfc_", x)
    assert not np.any((got != 0) & (np.abs(got) < tiny))
    same = got == ref
    assert np.all(same | (got == 0.0)), x[~same][:5]
    assert np.all(ref[~same] < 32 * tiny * 1.007)  # flushed: m·e^u with m ≥ 1/32 below 2^−1022·32


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
    (symgrad.chain(3, "sin(z)"), {}, "whitelist"),
    (symgrad.chain(3, "tanh", "cross_entropy"), {}, "sigmoid output"),
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
    from symgrad.numeric import _codegen

    calls = []
    real = _codegen.chain_kernel
    monkeypatch.setattr(_codegen, "chain_kernel", lambda forms: calls.append(1) or real(forms))
    net = symgrad.chain(4)
    backprop(net, sample(net, 1000, seed=0))
    assert calls == []  # 4000 layer-samples: NumPy, no numba start-up
    backprop(net, sample(net, 70_000, seed=0))
    assert calls == [1]


# ---------------------------------------------------------------------------------------------
# The generated kernels (symgrad.numeric._codegen): every built-in activation, mixed and custom chains.
# ---------------------------------------------------------------------------------------------

from symgrad.numeric import _codegen  # noqa: E402


def _ulps(xs, got, exact):
    mpmath.mp.dps = 60
    out = []
    for x, g in zip(xs, got):
        ex = exact(mpmath.mpf(float(x)))
        ulp = math.ulp(float(ex)) if float(ex) != 0 else 5e-324
        out.append(float(abs(mpmath.mpf(float(g)) - ex) / ulp))
    return np.array(out)


@functools.lru_cache(maxsize=16)
def _elementary_loop(name, flush=False):
    """One compiled loop per elementary function (compiling one per call made a 300-example
    Hypothesis test take a minute)."""
    import numba

    f = _jit.elementary(flush)[name]

    @numba.njit(error_model="numpy")
    def loop(u, out):
        for i in range(u.size):
            out[i] = f(u[i])

    return loop


def _elementary(name, xs, flush=False):
    xs = np.ascontiguousarray(xs, dtype=np.float64)
    out = np.empty_like(xs)
    _elementary_loop(name, flush)(xs, out)
    return out


# Bounds from the algorithms, not from this CPU: expm1 = (2^k − 1) + 2^k p(r) (series error 0.11 ulp,
# two roundings); log1p = 2 atanh(x/(2 + x)) (three roundings, doubled by at most a factor 2 where
# log 2 is added); tanh = −m/(2 + m) (m within 2 ulp, a sum and a quotient).
@pytest.mark.parametrize("name,xs,exact,bound", [
    ("expm1_neg", np.concatenate([-np.random.default_rng(1).uniform(0, 1, 1500), -np.random.default_rng(2).uniform(0, 60, 1500),
                                  -10 ** np.random.default_rng(3).uniform(-300, 0, 600), [0.0, -5e-324, -0.3466, -0.3467, -60.0, -800.0]]),
     mpmath.expm1, 2.0),
    ("log1p_unit", np.concatenate([np.random.default_rng(4).uniform(0, 1, 2000), 10 ** np.random.default_rng(5).uniform(-320, 0, 600),
                                   [0.0, 1.0, 0.41421356237309503, 0.4142135623730951, 5e-324]]),
     mpmath.log1p, 4.0),
    ("tanh_", np.concatenate([np.random.default_rng(6).normal(size=1500), np.random.default_rng(7).uniform(-25, 25, 1500),
                              10 ** np.random.default_rng(8).uniform(-300, 2, 500), -10 ** np.random.default_rng(9).uniform(-300, 2, 500),
                              [0.0, 20.0, -20.0, 1e300, -1e300]]),
     mpmath.tanh, 5.0),
])
def test_branch_free_elementary_functions_against_mpmath(name, xs, exact, bound):
    got = _elementary(name, xs)
    errs = _ulps(xs, got, exact)
    assert errs.max() <= bound, (name, errs.max(), xs[np.argmax(errs)])


def _erfc_grid():
    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.uniform(-1.5, 1.5, 1500), rng.uniform(-7.0, 7.0, 1500), rng.uniform(-40.0, 40.0, 800),
                         rng.uniform(25.0, 28.5, 300),  # erfc subnormal (x > 26.55) and 0
                         10 ** rng.uniform(-320, 0, 300), -10 ** rng.uniform(-320, 0, 300),
                         [0.0, -0.0, 0.25, 5e-324, -5e-324, 1e300, -1e300, np.inf, -np.inf]])
    edges = np.array(_jit.ERFC_BREAKS + (1 / 0.35,))  # the interval boundaries of s_erf.c, both signs
    edges = np.concatenate([edges, -edges, [0.25]])
    return np.concatenate([xs, edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])


def test_branch_free_erfc_against_mpmath():
    # Bound from the algorithm (fdlibm s_erf.c), not from this CPU.  Its rational approximations
    # are within 2^−57.9 (|x| < 0.84375), 2^−59.06, 2^−62.57 and 2^−61.52 of their targets (≤ 0.03
    # ulp); their Horner evaluation and the one quotient add at most 1 ulp of the result (y enters
    # as x·y ≤ 0.13x, or as the exponent's R/S with |R/S| < 0.22); in the tails exp_split adds
    # exp's 1 ulp and the scaling by 1/x one rounding of 1/x and one of the product, and 2 − erfc(|x|)
    # one more: 3 ulp.  Where erfc is subnormal the last rounding is to a multiple of 2^−1074, and
    # the relative error (3·2^−52 of a value below 2^−1022) adds far less than one: 1 · 2^−1074.
    xs = _erfc_grid()
    got = _elementary("erfc_", xs)
    mpmath.mp.dps = 60
    tiny = float(np.finfo(np.float64).tiny)
    for x, g in zip(xs, got):
        # beyond |x| = 40 erfc is below 1e-697 (or that close to 2): 0 or 2 within any ulp
        ex = mpmath.erfc(mpmath.mpf(float(x))) if abs(x) <= 40 else mpmath.mpf(0 if x > 0 else 2)
        err = abs(mpmath.mpf(float(g)) - ex)
        if float(ex) >= tiny:
            assert err <= 3 * math.ulp(float(ex)), (x, g, float(err / math.ulp(float(ex))))
        else:
            assert err <= 2.0 ** -1074, (x, g, float(err / 2.0 ** -1074))
    assert math.copysign(1.0, _elementary("erfc_", [-0.0])[0]) == 1.0 and _elementary("erfc_", [0.0])[0] == 1.0


def test_gelu_prints_the_branch_free_erfc_which_vectorises(monkeypatch):
    gelu = symgrad.chain(1, "gelu").activations[0]
    assert "erfc_(" in _codegen.form_of(gelu) and "math.erfc" not in _codegen.form_of(gelu)
    monkeypatch.setattr(_codegen, "LIBM", True)
    _codegen.form_of.cache_clear()
    try:
        assert "math.erfc(" in _codegen.form_of(gelu)
    finally:
        monkeypatch.setattr(_codegen, "LIBM", False)
        _codegen.form_of.cache_clear()
    import numba

    f = _jit.elementary()["erfc_"]

    @numba.njit(fastmath={"contract"}, error_model="numpy")
    def loop(u, out):
        for i in range(u.size):
            out[i] = f(u[i])

    loop(np.zeros(8), np.zeros(8))
    asm = next(iter(loop.inspect_asm().values()))
    # no libm call left in the loop (math.erfc compiles to `movabsq $erfc, …; call`), which is
    # what lets LLVM vectorise it
    assert not re.search(r"\berfc\b", asm)


def test_redo_gathered_per_thread_falls_back_to_runs_with_true_indices(monkeypatch):
    # Flagged samples in several compiled blocks are redone in one call per thread; should that
    # call refuse, runs of JIT_SPLIT samples are redone in place: the same values either way.
    from symgrad.numeric import evaluator

    net = symgrad.chain(4, "gelu")
    B = 9000  # three blocks of JIT_BLOCK
    p = sample(net, B, seed=5)
    flagged = [3, 4100, 4101, 8999]
    p["b1"][flagged] = -60.0  # φ'(z1) below the smallest normal: flagged for the redo
    one = backprop(net, p, backend="numba", threads=1)
    two = backprop(net, p, backend="numba", threads=2)
    for k in net.parameters:
        np.testing.assert_array_equal(one.grads[k], two.grads[k], err_msg=k)
    check = flagged + [0, 4200, 8000]
    _check_against_mpmath(net, p, check)
    calls = []

    def refuse(inp, idx, *args):
        calls.append(len(idx))
        raise InvalidArgument("refused")

    monkeypatch.setattr(evaluator, "_scaled_samples", refuse)
    _check_against_mpmath(net, p, check)
    assert sum(calls) == len(flagged) and len(calls) <= 2  # one call per thread


def test_fast_pass_redoes_each_flagged_sub_block_and_only_those(monkeypatch):
    # The fast pass keeps one flag per sub-block of _codegen.SUB samples; every flagged sub-block of
    # a block (here the first, a middle and the last of one 4096-sample block, one flagged in the
    # forward pass and one only in the backward one) is redone by the exact pass at its own offset,
    # and the others keep the fast pass's values.
    assert _codegen.SUB < 2048
    net = symgrad.chain(4, "gelu")
    p = sample(net, 4096, seed=11)
    fwd = [3, 2 * _codegen.SUB + 5]
    p["b1"][fwd] = -60.0  # φ'(z1) below the smallest normal: flagged in the forward pass
    back = 4095  # each c = φ'(z)·w normal, their product subnormal: flagged in the backward pass only
    for j in (2, 3, 4):
        p["w%d" % j][back] = 1e-110
    calls = []
    kernel = _codegen.chain_kernel((_codegen.form_of(net.activations[0]),))
    exact = kernel.exact

    class Spy:
        def __call__(self, *args):
            calls.append((args[5], args[6]))
            return exact(*args)

    from symgrad.numeric import evaluator

    orig = evaluator._jit_kernel
    monkeypatch.setattr(evaluator, "_jit_kernel", lambda net: (_codegen.ChainKernel(kernel.fast, Spy()), orig(net)[1]))
    _check_against_mpmath(net, p, fwd + [back, 0, 1000, 2 * _codegen.SUB + 6, 3000])
    S = _codegen.SUB
    assert sorted(calls) == [(0, S), (2 * S, 3 * S), (4096 - S, 4096)]


def test_branch_free_series_are_the_documented_exact_coefficients():
    from fractions import Fraction

    assert _jit.EXPM1_TAYLOR == tuple(float(Fraction(1, math.factorial(n))) for n in range(13, 1, -1))
    assert _jit.LOG1P_ATANH == tuple(float(Fraction(1, 2 * k + 1)) for k in range(11, 0, -1))


def _mp_act(name):
    """φ and the left-limit φ' in mpmath, written independently of symgrad's forms."""
    mp = mpmath
    sig = lambda t: 1 / (1 + mp.exp(-t))  # noqa: E731
    Phi = lambda t: mp.erfc(-t / mp.sqrt(2)) / 2  # noqa: E731
    table = {
        "sigmoid": (sig, lambda t: sig(t) * sig(-t)),
        "tanh": (mp.tanh, lambda t: mp.sech(t) ** 2),
        "relu": (lambda t: max(t, 0), lambda t: mp.mpf(1 if t > 0 else 0)),
        "leaky_relu": (lambda t: t if t > 0 else t / 100, lambda t: mp.mpf(1) if t > 0 else mp.mpf(1) / 100),
        "elu": (lambda t: t if t > 0 else mp.expm1(t), lambda t: mp.mpf(1) if t > 0 else mp.exp(t)),
        "softplus": (lambda t: mp.log1p(mp.exp(t)), sig),
        "silu": (lambda t: t * sig(t), lambda t: sig(t) * (1 + t * sig(-t))),
        "gelu": (lambda t: t * Phi(t), lambda t: Phi(t) + t * mp.exp(-t * t / 2) / mp.sqrt(2 * mp.pi)),
        "softsign": (lambda t: t / (1 + abs(t)), lambda t: 1 / (1 + abs(t)) ** 2),
        "identity": (lambda t: t, lambda t: mp.mpf(1)),
        "z*sigmoid(z)": (lambda t: t * sig(t), lambda t: sig(t) * (1 + t * sig(-t))),
        "max(0.1*z, z)": (lambda t: max(t / 10, t), lambda t: mp.mpf(1) if t > 0 else mp.mpf(1) / 10),
    }
    return table[name]


def _mp_chain(net, p, i):
    """Exact loss and gradients of sample i (mpmath, 50 digits) from the float64 inputs."""
    mpmath.mp.dps = 50
    L = net.depth
    get = lambda k: mpmath.mpf(float(np.asarray(p[k]).reshape(-1)[i] if np.ndim(p[k]) else p[k]))  # noqa: E731
    fs = [_mp_act(a.name) for a in net.activations]
    a, zs, As = get("a0"), [], []
    for j in range(L):
        As.append(a)
        zj = get("w%d" % (j + 1)) * a + get("b%d" % (j + 1))
        zs.append(zj)
        a = fs[j][0](zj)
    y = get("y")
    if net.loss.cancels_with(net.activations[-1]):
        d = 1 / (1 + mpmath.exp(-zs[-1])) - y
        loss = mpmath.log1p(mpmath.exp(-abs(zs[-1]))) + max(zs[-1], 0) - y * zs[-1]
    else:
        d = fs[-1][1](zs[-1]) * (a - y)
        loss = (a - y) ** 2 / 2
    g = {}
    for j in range(L - 1, -1, -1):
        if j < L - 1:
            d = d * get("w%d" % (j + 2)) * fs[j][1](zs[j])
        g["b%d" % (j + 1)] = d
        g["w%d" % (j + 1)] = d * As[j]
    return g, loss


_ALL = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"]


def _check_against_mpmath(net, p, samples):
    res = backprop(net, p, backend="numba")
    tol = chain_tolerance(net, p)
    for i in samples:
        exact, _ = _mp_chain(net, p, i)
        for k in net.parameters:
            assert_within(res.grads[k][i:i + 1], np.array([float(exact[k])]), tol[k][i:i + 1], "%s %s[%d]" % (net, k, i))
    return res


@pytest.mark.parametrize("acts,loss", [([name], "quadratic") for name in _ALL + ["z*sigmoid(z)", "max(0.1*z, z)"]]
                         + [(["tanh", "relu"], "quadratic"), (["gelu", "silu", "softplus", "elu"], "quadratic"),
                            (["relu"] * 5 + ["sigmoid"], "cross_entropy")])
def test_generated_kernel_meets_the_forward_error_bound_against_mpmath(acts, loss):
    # Each activation compiled from its one definition, within the running-error bound of
    # tests/_mpref.py of the exact gradient (never compared bitwise with the NumPy kernel).
    L = 6
    net = symgrad.chain(L, [acts[j % len(acts)] for j in range(L)], loss)
    p = sample(net, 3000, seed=len(acts) * 7 + L)
    rng = np.random.default_rng(0)
    _check_against_mpmath(net, p, sorted(rng.choice(3000, 40, replace=False).tolist()))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu", "softplus", "silu", "gelu", "softsign", "z*sigmoid(z)"])
def test_generated_kernel_saturating_units_match_the_exact_gradient(name):
    # |z| up to 1e3 (φ' below the smallest normal double, e^{−2|z|} = 0): the kernel flags those
    # samples and they are redone rescaled, as on the NumPy path; the rest stay compiled.
    net = symgrad.chain(3, name)
    B = 600
    p = sample(net, B, seed=3)
    rng = np.random.default_rng(3)
    p["b1"] = rng.choice([-1000.0, -400.0, -40.0, 0.5, 40.0, 400.0, 1000.0], B)
    _check_against_mpmath(net, p, list(range(0, B, 15)))


@pytest.mark.parametrize("name,left", [("relu", 0.0), ("leaky_relu", 0.01), ("abs(z)", -1.0), ("max(0.1*z, z)", 0.1),
                                       ("z*heaviside(z)", 0.0), ("elu", 1.0), ("softsign", 1.0)])
def test_generated_kernel_takes_the_left_derivative_at_a_kink(name, left):
    act = symgrad.activation(name)
    assert _codegen.scalar_kernel(act)(0.0)[1] == left
    assert _codegen.scalar_kernel(act)(-0.0)[1] == left
    # and through a chain: z1 = 0 exactly, so ∂C/∂b1 = φ'(0⁻) w2 δ2
    net = symgrad.chain(2, name)
    p = sample(net, 5000, seed=1)
    p["a0"] = np.zeros(5000)
    p["b1"] = np.zeros(5000)
    res = backprop(net, p, backend="numba")
    expected = left * p["w2"] * res.grads["b2"]
    assert np.array_equal(res.grads["b1"], expected) if left in (0.0, 1.0, -1.0) else np.allclose(res.grads["b1"], expected, rtol=4e-16, atol=0)
    assert not np.isnan(res.grads["w1"]).any()


def test_elu_alpha_two_takes_the_left_slope_at_zero():
    act = symgrad.activation("elu", alpha=2)
    assert _codegen.scalar_kernel(act)(0.0)[1] == 2.0
    assert _codegen.scalar_kernel(act)(1e-300)[1] == 1.0


def _diagnosis(net, p, backend):
    with pytest.raises(InvalidArgument) as exc:
        backprop(net, p, backend=backend)
    return str(exc.value)


@pytest.mark.parametrize("name", ["relu", "tanh", "gelu", "z*sigmoid(z)"])
def test_generated_kernel_gives_numpys_diagnoses(name):
    net = symgrad.chain(3, name)
    p = sample(net, 5000, seed=2)
    bad = dict(p)
    bad["w2"] = p["w2"].copy()
    bad["w2"][4321] = np.nan
    assert _diagnosis(net, bad, "numba") == _diagnosis(net, bad, "numpy")
    over = dict(p)
    over["a0"] = np.full(5000, 1e308)
    over["w1"] = np.full(5000, 1e10)
    msg = _diagnosis(net, over, "numba")
    assert msg == _diagnosis(net, over, "numpy") and "overflow" in msg


def test_generated_kernel_refuses_an_overflowing_custom_phi_like_numpy():
    net = symgrad.chain(2, "z**2")
    p = sample(net, 5000, seed=0)
    p["b1"] = np.full(5000, 1e200)
    assert _diagnosis(net, p, "numba") == _diagnosis(net, p, "numpy")


def test_generated_kernel_status_protocol():
    from symgrad.numeric.chain import _jit_kernel

    net = symgrad.chain(4, ["tanh", "relu"] * 2)
    B = 256
    p = sample(net, B, seed=0)
    (kernel, kinds) = _jit_kernel(net)
    rows = lambda q: (_jit.typed_rows([np.ascontiguousarray(q["w%d" % j]) for j in range(1, 5)]),  # noqa: E731
                      _jit.typed_rows([np.ascontiguousarray(q["b%d" % j]) for j in range(1, 5)]))

    def call(q):
        D, A, loss, fl = np.empty((4, B)), np.empty((4, B)), np.empty(B), np.zeros(B, dtype=np.bool_)
        W, Bs = rows(q)
        st = kernel(W, Bs, kinds, q["a0"], q["y"], 0, B, A, 0, D, 0, False, False, loss, fl)
        return st, fl

    st, fl = call(p)
    assert st == 0 and not fl.any()
    q = dict(p)
    q["b3"] = p["b3"].copy()
    q["b3"][17] = np.inf
    assert call(q)[0] == 3  # z3 is not finite: j + 1
    q = dict(p)
    q["b1"] = p["b1"].copy()
    q["b1"][5] = -400.0  # tanh'(−400) = 4e^{−800}: underflows, flagged, only there
    q["w2"] = p["w2"].copy()
    q["w2"][9] = 1e-320  # a subnormal factor
    st, fl = call(q)
    assert st == -1 and set(np.flatnonzero(fl).tolist()) == {5, 9}
    q = dict(p)
    q["a0"], q["b1"] = np.zeros(B), np.full(B, -3.0)  # relu(tanh(−3) w2 + b2) may be an exact 0: no flag
    q["w2"], q["b2"] = np.ones(B), np.zeros(B)
    st, fl = call(q)
    assert st == 0 and not fl.any()


def test_generated_source_holds_no_user_text():
    import re

    hostile = symgrad.custom_activation("z*sigmoid(z)", name="__import__('os').system('x')")
    src = _codegen.kernel_source((_codegen.form_of(hostile),))
    assert "import" not in src and "os" not in re.findall(r"[A-Za-z_]+", src)
    vocab = {"def", "phi", "return", "z", "t", "math", "exp_neg", "expm1_neg", "log1p_unit", "tanh_", "abs", "min", "max",
             "if", "else", "TINY", "HUGE", "True", "False", "np", "empty", "for", "in", "range", "len", "shape", "forward",
             "backward", "chain_block", "_lost", "W", "B", "kinds", "a", "s", "e", "A", "oA", "D", "oD", "aL", "zL", "fl", "L",
             "m", "i", "j", "w", "b", "arow", "bad", "prev", "ai", "wi", "zi", "pi", "ci", "drow", "k", "di", "ufi", "x", "p", "q",
             "d", "li", "gi", "cancel", "y", "cross_entropy", "sig_out", "loss", "status", "dL", "yi", "ei", "r", "exp", "log1p",
             "erfc", "erf", "copysign", "sqrt", "log", "expm1", "and", "_lost2", "REDO_EXACT", "output", "forward_exact", "backward_exact",
             "chain_block_exact", "SUB", "c", "uint"}
    words = set(re.findall(r"[A-Za-z_]+", re.sub(r"\bt\d+\b", "t", src)))
    assert words <= vocab, words - vocab


def test_unprintable_activation_runs_on_numpy_under_auto():
    net = symgrad.chain(4, "sin(z)")
    p = sample(net, 70_000, seed=0)
    res = backprop(net, p)  # auto: NumPy, no error
    assert res.grads["w1"].shape == (70_000,)
    with pytest.raises(InvalidArgument, match="sin.*whitelist"):
        backprop(net, p, backend="numba")


@pytest.mark.parametrize("name,b1", [("sigmoid", -800.0), ("tanh", -400.0), ("elu", -800.0), ("softplus", -800.0),
                                     ("silu", -800.0), ("gelu", -40.0), ("z*sigmoid(z)", -800.0)])
def test_an_underflowed_factor_times_a_huge_weight_is_recovered(name, b1):
    # φ'(z1) is below 1e-300 (0 in float64) but w2 = 1e150 and δ2 = a2 − y ≈ −1e150 bring
    # ∂C/∂b1 back to a normal number: the kernel must flag the underflow, not return 0.
    net = symgrad.chain(2, [name, "identity"])
    B = 200
    p = sample(net, B, seed=4)
    p["b1"] = np.where(np.arange(B) % 2 == 0, b1, p["b1"])
    p["w2"] = np.where(np.arange(B) % 2 == 0, 1e150, p["w2"])
    p["b2"] = np.where(np.arange(B) % 2 == 0, 5.0, p["b2"])  # a2 − y far from 0: a well-conditioned output
    p["y"] = np.where(np.arange(B) % 2 == 0, 0.0, p["y"])
    from ._mpref import U, _from_log, _sensitivity

    res = backprop(net, p, backend="numba")
    phi = _mp_act(name)
    for i in range(0, B, 2):
        exact, _ = _mp_chain(net, p, i)
        z1 = mpmath.mpf(float(p["w1"][i])) * mpmath.mpf(float(p["a0"][i])) + mpmath.mpf(float(p["b1"][i]))
        # φ'(z1) is rebuilt from its log (C_LOG·u·|log φ'|, as in tests/_mpref.py), moves by
        # |φ''/φ'|·Δz1 with Δz1 ≤ u(|w1 a0| + |z1|), plus the first-order roundings of a depth-2
        # chain (C_GRAD u per factor and a few products)
        dz1 = U * (abs(float(p["w1"][i] * p["a0"][i])) + abs(float(z1))) * 2
        act = net.activations[0]
        rel = (float(_sensitivity(act, np.array([float(z1)]))[0]) * dz1 + _from_log(phi[1](z1)) + _from_log(phi[0](z1))
               + 2 * 20 * U + 10 * U)
        assert rel < 1e-6  # a tolerance, not a pass: log|φ'| of a custom φ is finite where φ' underflows
        for k in ("b1", "w1"):
            assert abs(exact[k]) > 1e-300
            assert abs(mpmath.mpf(float(res.grads[k][i])) - exact[k]) <= rel * abs(exact[k]), (k, i, res.grads[k][i], exact[k])


@pytest.mark.parametrize("name", ["identity", "sigmoid"])
def test_a_backward_product_that_underflows_is_recovered(name):
    # Every forward value and factor c_j = φ'(z_j) w_{j+1} is normal, but the running product
    # δ_1 = c_1 c_2 δ_3 (about 1e-400) underflows in the backward pass alone, and a0 = 1e250 brings
    # ∂C/∂w1 = δ_1 a0 back to a normal number: the fast pass's block flag must send it to the redo.
    net = symgrad.chain(4, name)
    B = 300
    p = sample(net, B, seed=6)
    odd = np.arange(B) % 3 == 0
    p["a0"] = np.where(odd, 1e250, p["a0"])
    p["w1"] = np.where(odd, 1e-250, p["w1"])
    p["w2"] = np.where(odd, 1e-200, p["w2"])
    p["w3"] = np.where(odd, 1e-200, p["w3"])
    res = _check_against_mpmath(net, p, [1, 2, 298])  # unflagged samples, within the error bound
    for i in (0, 3, 150, 297):
        exact, _ = _mp_chain(net, p, i)
        assert abs(exact["w1"]) > 1e-300
        # A loose bound (about 4500 ulp, far above a depth-4 chain's rounding error): it separates
        # the recovered gradient from the 0 (or the digits lost) of an unflagged underflow.
        assert abs(mpmath.mpf(float(res.grads["w1"][i])) - exact["w1"]) <= 1e-12 * abs(exact["w1"]), i


@pytest.mark.parametrize("flush", [False, True])
def test_the_expm1_exp_pair_is_each_within_its_ulp_bound(flush):
    # (e^u − 1, e^u) from one reduction and one Taylor polynomial p = e^r − 1: e^u − 1 as expm1_neg
    # ((2^k − 1) + 2^k p: within 2 ulp, above), e^u = (1 + p)·2^k: p's series error (0.11 ulp of p,
    # p ≤ 0.42) and one rounding of 1 + p, scaled exactly (one rounding where subnormal): within 1
    # ulp; flushing, 0 wherever e^u < 2^−1022 and never a subnormal
    import numba

    f = _jit.elementary(flush)["expm1_exp_neg"]

    @numba.njit(error_model="numpy")
    def loop(u, m, e):
        for i in range(u.size):
            m[i], e[i] = f(u[i])

    rng = np.random.default_rng(12)
    u = np.concatenate([-rng.uniform(0, 1, 1500), -rng.uniform(0, 60, 1000), -rng.uniform(0, 746, 1000),
                        -rng.uniform(700, 746, 500), -10 ** rng.uniform(-300, 0, 300),
                        [0.0, -0.0, -5e-324, -0.3466, -0.3467, -60.0, -708.39, -709.0, -745.13, -745.14, -800.0, -2e4]])
    m, e = np.empty_like(u), np.empty_like(u)
    loop(u, m, e)
    assert _ulps(u, m, mpmath.expm1).max() <= 2.0
    tiny = np.finfo(np.float64).tiny
    ref = np.exp(u)
    keep = ref >= tiny if flush else ref > 0
    assert _ulps(u[keep], e[keep], mpmath.exp).max() <= 1.0
    if flush:
        assert np.all(e[~keep] == 0.0)
    else:
        assert np.array_equal(e == 0, ref == 0)


def test_the_printed_tanh_and_its_derivative_against_mpmath():
    U = 2.0**-53
    # tanh's compiled form: (m, e) = (e^v − 1, e^v), v = −2 min(|z|, 10⁴), from one polynomial, and
    # r = 1/(1 + e).  Relative errors in units u = 2^−53 (an ulp is at most 2u): m 4u (2 ulp), e 2u;
    # 1 + e: 2u·e/(1 + e) ≤ 1u carried, 0.5u rounded; r 2u; tanh = −m·r: 4 + 2 + 0.5 = 6.5u; φ' =
    # (4r²)·e: 2·2 + 0.5 + 2 + 0.5 = 7u (clamped at 1).  And no second exp or division.
    act = symgrad.activation("tanh")
    form = _codegen.form_of(act)
    assert form.count("expm1_exp_neg(") == 1 and form.count("exp_neg(") == 1 and form.count("1.0 /") == 1
    k = _codegen.scalar_kernel(act)
    rng = np.random.default_rng(13)
    xs = np.concatenate([rng.normal(size=3000), rng.uniform(-25, 25, 3000), 10 ** rng.uniform(-300, 2.8, 400),
                         -10 ** rng.uniform(-300, 2.8, 400), [0.3466, 0.3467, 20.0, -20.0, 354.0, 1e300]])
    vals = np.array([k(float(x))[:2] for x in xs])
    assert k(0.0)[:2] == (0.0, 1.0)
    mpmath.mp.dps = 60
    tiny = np.finfo(np.float64).tiny
    for x, (t, d) in zip(xs, vals):
        X = mpmath.mpf(float(x))
        rt, rd = mpmath.tanh(X), min(mpmath.sech(X) ** 2, 1)
        assert abs(mpmath.mpf(float(t)) - rt) <= 6.5 * U * abs(rt), (x, t)
        if rd >= tiny:
            assert abs(mpmath.mpf(float(d)) - rd) <= 7 * U * rd, (x, d)
        else:
            assert d < tiny  # subnormal or 0 there, and uf set: the kernels redo or flag it
