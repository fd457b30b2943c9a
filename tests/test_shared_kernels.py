"""backprop_shared's compiled per-layer steps (symgrad.numeric._shared_kernels) and its optional MKL
GEMM (symgrad.numeric._blas): each path against the NumPy one, under error-analysis bounds, and
the diagnoses that the compiled steps now make themselves (non-finite φ/φ', dead columns)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy

import symgrad
from symgrad.errors import InvalidArgument
from symgrad.numeric import _blas
from symgrad.numeric import _shared_kernels as _sk
from symgrad.numeric import sample
from symgrad.numeric.shared import backprop_shared, gamma

from ._mpref import U, assert_within
from .test_montecarlo import _abs_chain, _params, _summation_length
from .test_residual_numeric import residual_tolerance

numba_only = pytest.mark.skipif(not symgrad.numeric.compiled.available(), reason="numba not installed")
ALPHA = sympy.Symbol("alpha", real=True)


def _numpy_only(monkeypatch):
    monkeypatch.setattr(_sk, "kernels", lambda net, dt: None)


@numba_only
@pytest.mark.parametrize("acts, loss", [("tanh", "quadratic"), ("relu", "quadratic"), ("gelu", "quadratic"),
                                        (["tanh", "relu", "sigmoid"], "cross_entropy"), ("sigmoid", "quadratic")])
@pytest.mark.parametrize("grads", [True, False])
def test_compiled_and_numpy_plain_paths_agree(acts, loss, grads, monkeypatch):
    net = symgrad.network([5, 7, 6, 4], acts, loss)
    assert _sk.kernels(net, np.float64) is not None
    B = 8
    p = _params(net, B, seed=11)
    compiled = backprop_shared(net, p, grads=grads)
    _numpy_only(monkeypatch)
    ref = backprop_shared(net, p, grads=grads)
    # Both evaluate the same definitions in different summation orders (the compiled ‖δ‖² and
    # Σ_batch δ vectorised) with φ, φ' each within a few ulps: within 2γ_K of each other on the
    # absolute chain, K as in test_montecarlo's PyTorch comparison.
    gw, gb = _abs_chain(net, p)
    for l in range(1, net.depth + 1):
        K = _summation_length(net, B, l) + 8 * net.depth + sum(net.widths)
        if grads:
            for name, bound in (("W%d" % l, gw[l]), ("b%d" % l, gb[l])):
                assert np.all(np.abs(compiled.grads[name] - ref.grads[name]) <= 2 * gamma(K) * bound), name
        else:
            assert compiled.grads == {} == ref.grads
        np.testing.assert_allclose(compiled.delta_sq[:, l - 1], ref.delta_sq[:, l - 1], rtol=8 * gamma(2 * sum(net.widths) + B), atol=0)
    np.testing.assert_allclose(compiled.q, ref.q, rtol=4 * gamma(2 * max(net.widths) + 4), atol=0)
    np.testing.assert_allclose(compiled.cost, ref.cost, rtol=gamma(net.widths[-1] + 8 * net.depth + 8), atol=0)


@numba_only
@pytest.mark.parametrize("residual", [[None, 0.5, ALPHA, None], [0.5, -0.3, 1.0, ALPHA]])
def test_compiled_and_numpy_residual_paths_agree(residual, monkeypatch):
    net = symgrad.network([4, 4, 4, 4, 4], ["tanh", "gelu", "relu", "sigmoid"], residual=residual)
    p = sample(net, seed=8)
    rng = np.random.default_rng(9)
    p["a0"], p["y"], p["alpha"] = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), -0.7
    compiled = backprop_shared(net, p)
    _numpy_only(monkeypatch)
    ref = backprop_shared(net, p)
    tol = residual_tolerance(net, p)
    for k in net.parameters:
        assert_within(compiled.grads[k], ref.grads[k], 2 * tol[k].sum(axis=0) + 4 * 8 * U * np.abs(ref.grads[k]), k)
    np.testing.assert_allclose(compiled.q, ref.q, rtol=64 * U, atol=0)


@numba_only
def test_a_non_finite_phi_from_the_compiled_step_is_redone_in_numpy(monkeypatch):
    # A compiled step that reports a non-finite a^l or φ'(z^l) (a custom activation whose printed
    # form overflows where its exact value does not) hands the layer to NumPy's kernels, which fall
    # back to the exact value: the result is the NumPy path's.
    net = symgrad.network([3, 5, 4, 2], ["tanh", "relu", "tanh"])
    p = _params(net, 6, seed=3)
    ref = backprop_shared(net, p)
    real = _sk.kernels

    def poisoned(net, dt):
        k = real(net, dt)
        def step(z, b, a, P, zsq, asq, keep, _f=k.plain[1]):
            _, _, ss, amax = _f(z, b, a, P, zsq, asq, keep)
            a[0, 0], P[1, 1] = np.inf, np.nan  # what an overflowing printed form would leave
            return 1, 0, ss, amax
        k.plain[1] = step
        return k
    monkeypatch.setattr(_sk, "kernels", poisoned)
    redone = backprop_shared(net, p)
    for k in net.parameters:
        np.testing.assert_allclose(redone.grads[k], ref.grads[k], rtol=1e-13, atol=1e-15)


def test_a_dead_column_behind_a_hidden_layer_is_still_scanned(monkeypatch):
    # Column 2 of a^1 = relu(a0 W1ᵀ + b1) is 0 for every sample (b1[2] = −100, W1[2] = 0): the
    # GEMM multiplies W2[:, 2] by zeros only, which a BLAS may skip, so a nan there need not reach
    # z^2; the forward step counts a^1's zeros (≥ B) and the next layer scans its dead columns.
    # A layer with fewer than B zeros has no dead column and is not scanned.
    from symgrad.numeric import shared

    scanned = []
    real = shared._check_dead_columns
    monkeypatch.setattr(shared, "_check_dead_columns", lambda a, W, l: (scanned.append(l), real(a, W, l))[1])
    net = symgrad.network([3, 4, 3, 2], "relu")
    p = _params(net, 5, seed=12)
    p["W1"][2] = 0.0
    p["b1"][2] = -100.0
    assert np.all(np.isfinite(backprop_shared(net, p).grads["W2"]))
    assert 2 in scanned
    p["W2"][1, 2] = np.nan
    with pytest.raises(InvalidArgument, match=r"'W2' .* contains nan at index \(1, 2\)"):
        backprop_shared(net, p)
    tanh = symgrad.network([3, 4, 3, 2], "tanh")
    scanned.clear()
    backprop_shared(tanh, _params(tanh, 5, seed=12))
    if _sk.kernels(tanh, np.float64) is not None:
        assert scanned == [1]  # a0 only: tanh of a random z is never exactly 0


def test_an_overflowing_residual_layer_is_diagnosed():
    net = symgrad.network([2, 2, 2], "identity", residual=[1.0, None])
    p = {"a0": np.full((3, 2), 1e308), "y": np.zeros((3, 2)), "W1": np.zeros((2, 2)), "b1": np.full(2, 1e308),
         "W2": np.eye(2), "b2": np.zeros(2)}
    with pytest.raises(InvalidArgument, match="overflows float64 at residual layer 1"):
        backprop_shared(net, p)


def test_generated_source_is_only_the_templates_and_the_printed_forms():
    from symgrad.numeric import _codegen

    form = _codegen.form_of(symgrad.network([2, 2], "tanh").activations[0])
    src = _sk.source((form,))
    assert "def fwd_plain0(z, b, a, P, zsq, asq, keep_z):" in src and "def fwd_res0(" in src and "def bwd_res(" in src
    with pytest.raises(ValueError):
        _sk.source(("import os",))


def test_float32_runs_on_numpy():
    net = symgrad.network([3, 4, 2], "tanh")
    assert _sk.kernels(net, np.float32) is None


def test_the_gradients_are_arrays_of_their_own():
    # Each ∂C/∂W^l and ∂C/∂b^l owns its memory: a caller that keeps one gradient keeps no other layer's
    # (a view into a shared block would), writing one changes no other, and the next call's results
    # are new memory.
    net = symgrad.network([5, 7, 7, 4], "tanh", residual=[None, 0.5, None])
    p = _params(net, 8, seed=17)
    first = backprop_shared(net, p)
    keep = {k: v.copy() for k, v in first.grads.items()}
    assert [first.grads["W%d" % l].shape for l in range(1, 4)] == [(7, 5), (7, 7), (4, 7)]
    for k, v in first.grads.items():
        assert v.base is None and v.flags.c_contiguous and v.flags.writeable, k
    second = backprop_shared(net, p)
    first.grads["W2"][...] = np.nan
    for k, v in second.grads.items():
        np.testing.assert_array_equal(v, keep[k])
    for k in ("W1", "W3", "b2"):
        np.testing.assert_array_equal(first.grads[k], keep[k])


# ---------------------------------------------------------------------------------------------
# The optional MKL GEMM
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_agrees_with_numpy_in_every_layout(ta, tb):
    rng = np.random.default_rng(0)
    m, k, n = 7, 13, 5
    a = rng.standard_normal((k, m)).T if ta else rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T if tb else rng.standard_normal((k, n))
    out = np.full((m, n), np.nan)  # β = 0: never read
    assert _blas.matmul(a, b, out) is out
    # each entry a k-term dot product in some order: within γ_k Σ|a||b| of the exact one, twice that apart
    assert np.all(np.abs(out - a @ b) <= 2 * gamma(k) * (np.abs(a) @ np.abs(b)))


@pytest.mark.skipif(_blas.backend() != "mkl", reason="the row panels are MKL's path")
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, k, n, calls", [(300, 64, 2000, 3), (1000, 64, 1000, 8), (256, 127, 2048, 2),
                                            (300, 47, 2000, 1), (300, 128, 2000, 1), (128, 64, 8192, 1),
                                            (300, 64, 1000, 1)])
def test_matmul_in_row_panels_is_the_same_product(m, k, n, calls, ta, tb, monkeypatch):
    # In MKL's slow range (48 ≤ k < 128, out of ≥ 2^19 entries, more than 128 rows) the product is
    # taken 128 rows of out at a time, each panel reading its own rows of op(a): every entry is still
    # the k-term dot product of its row and column, within γ_k Σ|a||b| of the exact one.
    rng = np.random.default_rng(2)
    a = rng.standard_normal((k, m)).T if ta else rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T if tb else rng.standard_normal((k, n))
    seen, real = [], _blas._dgemm()
    monkeypatch.setattr(_blas, "_DGEMM", lambda *args: (seen.append(args[3]), real(*args))[1])
    out = np.full((m, n), np.nan)
    assert _blas.matmul(a, b, out) is out
    assert len(seen) == calls and sum(seen) == m  # rows per call: 128, …, the rest
    assert np.all(np.abs(out - a @ b) <= 2 * gamma(k) * (np.abs(a) @ np.abs(b)))


def test_matmul_falls_back_to_numpy_where_mkl_cannot_take_the_arrays():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 8))[:, ::2]  # neither C- nor F-contiguous
    b = rng.standard_normal((4, 3))
    out = np.empty((6, 3))
    np.testing.assert_array_equal(_blas.matmul(a, b, out), np.matmul(a, b))
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    np.testing.assert_array_equal(_blas.matmul(a32, b32, np.empty((6, 3), np.float32)), np.matmul(a32, b32))
    sq = rng.standard_normal((4, 4))
    expect = sq @ sq
    np.testing.assert_allclose(_blas.matmul(sq, sq.copy(), sq), expect, rtol=1e-13, atol=1e-13)  # out overlaps a


def test_mkl_is_optional(monkeypatch):
    # without the package (or with SYMGRAD_MKL=0) the products are NumPy's, and the pass's results
    # equal the MKL pass's within the GEMMs' rounding
    net = symgrad.network([5, 7, 6, 4], "tanh")
    p = _params(net, 8, seed=13)
    first = backprop_shared(net, p)
    monkeypatch.setattr(_blas, "_DGEMM", None)
    monkeypatch.setenv("SYMGRAD_MKL", "0")
    assert _blas.backend() == "numpy"
    second = backprop_shared(net, p)
    gw, gb = _abs_chain(net, p)
    for l in range(1, net.depth + 1):
        K = _summation_length(net, 8, l) + 8 * net.depth + sum(net.widths)
        assert np.all(np.abs(first.grads["W%d" % l] - second.grads["W%d" % l]) <= 2 * gamma(K) * gw[l])
    monkeypatch.setattr(_blas, "_DGEMM", None)
    monkeypatch.delenv("SYMGRAD_MKL")
    monkeypatch.setattr(_blas, "_library_path", lambda: None)
    assert _blas.backend() == "numpy"


def test_an_overflow_of_a_hidden_layers_batch_sum_is_reported():
    # Depth 3, so that δ² comes from the compiled backward step and the pass decides from its
    # returned Σ_s‖δ²_s‖² and the forward step's max_j Σ_s (a¹_sj)² whether ∂C/∂W² needs the scan:
    # a¹ = 1e200 (Σ_s (a¹)² is +inf), δ² = 1e150, so δ²ᵀa¹ overflows and the scan names layer 2.
    net = symgrad.network([1, 1, 1, 1], "identity")
    p = {"a0": np.ones((2, 1)), "W1": np.full((1, 1), 1e200), "W2": np.full((1, 1), 1e-200), "W3": np.full((1, 1), 1e75),
         "b1": np.zeros(1), "b2": np.zeros(1), "b3": np.zeros(1), "y": np.zeros((2, 1))}
    with pytest.raises(InvalidArgument, match="a batch-summed gradient overflows float64 at layer 2"):
        backprop_shared(net, p)
    ok = backprop_shared(net, {**p, "W1": np.full((1, 1), 1e100), "W2": np.full((1, 1), 1e-100)})
    np.testing.assert_allclose(ok.grads["W2"], [[2e250]], rtol=1e-14)


@pytest.mark.parametrize("residual", [None, [None, None, 1.0]])
def test_a_hidden_layers_squared_delta_norm_that_overflows_is_named(residual):
    # ‖δ²‖² = (1e300)² overflows at a hidden layer: the compiled step's Σ_s‖δ²_s‖² (plain or
    # residual step) is +inf, and the diagnosis names δ², before any gradient is formed from it.
    net = symgrad.network([1, 1, 1, 1], "identity", residual=residual)
    p = {"a0": np.full((2, 1), 1e-300), "W1": np.ones((1, 1)), "W2": np.full((1, 1), 1e200), "W3": np.full((1, 1), 1e200),
         "b1": np.zeros(1), "b2": np.zeros(1), "b3": np.zeros(1), "y": np.zeros((2, 1))}
    with pytest.raises(InvalidArgument, match="‖δ2‖² overflows float64"):
        backprop_shared(net, p)


@numba_only
def test_alpha_times_phi_prime_is_never_formed_where_it_would_overflow(monkeypatch):
    # α = 1.5e308 and φ'(z¹) = 3·0.9² = 2.43: α·φ' overflows, δ¹ = (φ'(z¹)·g¹)·α = 2.43e-160·1.5e308 does
    # not.  The compiled step keeps φ' and multiplies by α last, as the NumPy path does; with a zero
    # δ² every δ is 0 (not inf·0 = nan).
    net = symgrad.network([1, 1, 1], ["z*z*z", "identity"], residual=[1.5e308, None])
    assert _sk.kernels(net, np.float64) is not None
    p = {"a0": np.array([[1e-3]]), "W1": np.array([[900.0]]), "b1": np.zeros(1), "W2": np.array([[1e-300]]), "b2": np.zeros(1)}
    got = backprop_shared(net, p, delta_out=np.array([[1e140]]), grads=False)  # (∂C/∂W² = 1e140·a¹ overflows)
    zero = backprop_shared(net, p, delta_out=np.zeros((1, 1)))
    _numpy_only(monkeypatch)
    ref = backprop_shared(net, p, delta_out=np.array([[1e140]]), grads=False)
    np.testing.assert_allclose(got.delta_sq, [[(2.43e-160 * 1.5e308) ** 2, 1e280]], rtol=1e-13)
    np.testing.assert_allclose(got.delta_sq, ref.delta_sq, rtol=1e-14)
    assert all(np.all(zero.grads[k] == 0.0) for k in net.parameters)

def test_a_gradient_overflow_behind_a_hidden_layer_is_reported():
    # δ²ᵀa¹ = 1e150 · 1e200 overflows; the bound that lets the pass skip the scan of ∂C/∂W² uses
    # the compiled step's column sums of (a¹)², which are ±inf here, so the scan runs and names layer 2.
    net = symgrad.network([2, 2, 2], "identity")
    p = {"a0": np.full((4, 2), 1e200), "W1": np.eye(2), "b1": np.zeros(2), "W2": np.eye(2), "b2": np.zeros(2)}
    with pytest.raises(InvalidArgument, match="a batch-summed gradient overflows float64 at layer 2"):
        backprop_shared(net, p, delta_out=np.full((4, 2), 1e150))
    ok = backprop_shared(net, {**p, "a0": np.full((4, 2), 1e100)}, delta_out=np.full((4, 2), 1e150))
    assert np.all(np.isfinite(ok.grads["W2"]))


def test_ndarray_subclasses_are_read_as_plain_arrays_and_masked_arrays_are_refused():
    # np.matrix makes ``*`` a matrix product: with B = n_L, P^L * ∂C/∂a^L was silently a (B × B)
    # product (red team).  Every input is read as a plain ndarray; a masked array is refused, as the
    # pass would read the entries under its mask.
    net = symgrad.network([3, 4, 2], "tanh")
    p = _params(net, 2, seed=5)  # B = 2 = n_L
    ref = backprop_shared(net, p)
    with warnings.catch_warnings():  # NumPy's own notice that np.matrix is not recommended
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        as_matrices = {k: np.asmatrix(v) if np.ndim(v) == 2 else v for k, v in p.items()}
    got = backprop_shared(net, as_matrices)
    for k in net.parameters:
        assert type(got.grads[k]) is np.ndarray
        np.testing.assert_array_equal(got.grads[k], ref.grads[k])
    masked = np.ma.masked_array(p["y"], mask=[[True, False], [False, False]])
    with pytest.raises(InvalidArgument, match="parameter 'y' is a masked array"):
        backprop_shared(net, {**p, "y": masked})
    chain = symgrad.chain(2, "sigmoid")
    with pytest.raises(InvalidArgument, match="parameter 'a0' is a masked array"):
        symgrad.backprop(chain, {**sample(chain, 3, seed=0), "a0": np.ma.masked_array(np.ones(3), mask=[1, 0, 0])})
