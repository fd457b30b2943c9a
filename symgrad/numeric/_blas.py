"""Matrix products of :func:`symgrad.numeric.shared.backprop_shared` through Intel MKL's
``cblas_dgemm`` when the optional ``mkl`` package is installed (``pip install 'symgrad[mkl]'``),
else NumPy's ``matmul`` (its bundled OpenBLAS).

Why.  The shared-weight pass is GEMM-bound (at width 1000, depth 100, batch 64 the 199 GEMMs are
nine tenths of it), and on the project's machine (Xeon, AVX-512, one thread) MKL 2026.2 runs the
pass's shapes faster than the OpenBLAS 0.3.31 that NumPy wheels bundle: ``δ W`` (64×1000 by
1000×1000) in 0.204-0.226 s per 100 against 0.240-0.250 s, ``a Wᵀ`` at parity (0.244-0.256 s), the
whole Monte-Carlo pass 0.475-0.498 s against 0.532-0.547 s and the residual network of issue #14
(width 256, batch 512, depth 10) 0.037 s against 0.044 s (benchmarks/bench_meanfield.py and
bench_evaluator.py; PyTorch's CPU wheel links the same MKL).  Both compute each entry as a dot
product in some order, so either result is within γ_K of the exact product (Higham, *Accuracy
and Stability of Numerical Algorithms*, 2nd ed., §3.5); nothing else changes.

How.  The ``mkl`` distribution's ``libmkl_rt`` is found through its installed file list
(``importlib.metadata``), loaded once with ``ctypes`` (the library handle is the only thing kept),
and called with the row-major CBLAS interface on the arrays' own memory.  MKL takes its thread
count from ``MKL_NUM_THREADS`` / ``OMP_NUM_THREADS`` (default: the cores), as NumPy's OpenBLAS
takes ``OPENBLAS_NUM_THREADS``.  Set ``SYMGRAD_MKL=0`` to keep NumPy's matmul with MKL installed.
Arrays MKL cannot take as they are (not float64, not contiguous, overlapping the output) go to
``np.matmul``.  :func:`gemm` is the same call on raw addresses, for a caller that has checked its
arrays once and makes hundreds of products (the shared-weight pass).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

__all__ = ["backend", "dgemm", "gemm", "matmul"]

_CBLAS_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
NO_TRANS, TRANS = _NO_TRANS, _TRANS  # the CBLAS flags of gemm()
_INT_MAX = 2**31 - 1  # MKL's default (LP64) interface takes 32-bit dimensions

#: A product out (m × n) = a (m × k) · b (k × n) with 48 ≤ k < 128 and out of 4 MiB or more is
#: computed as row panels of 128 rows (one dgemm call each).  MKL 2026.2 (one thread, AVX-512 Xeon
#: of the project's machine) runs that range far below its speed elsewhere when out is not in cache,
#: which is the case of ∂C/∂W^l = δ^lᵀ a^{l−1} (a fresh n_l × n_{l−1} array, k = the batch): at
#: 1000 × 1000, k = 64, 100 such products took 0.33-0.35 s whole against 0.17-0.18 s in panels.
#: Over k = 16..512 and m = n = 256..2000 with out not in cache (benchmarks/bench_meanfield.py
#: --gemm-panels prints the table; two runs), panels were 1.07-2.3× faster for 48 ≤ k ≤ 96 (and at
#: k = 128 for m = n ≤ 512), and 0.5-0.9× as fast for k ≤ 32 at m = n ≥ 512 and for k ≥ 256.  The
#: rule leaves outputs under 4 MiB whole, as they are more likely in cache, where panels were
#: 0.8-0.9× as fast.  Each entry of out is the same length-k dot product either way (within γ_k of
#: the exact one), so only the speed depends on it.
_PANEL_K = (48, 128)
_PANEL_ROWS = 128
_PANEL_MIN = 2**19  # entries of out (4 MiB of float64)

#: None: not looked for yet; False: no usable MKL; else cblas_dgemm (ctypes function).
_DGEMM = None


def _library_path():
    from importlib import metadata

    try:
        dist = metadata.distribution("mkl")
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        name = f.name
        if "mkl_rt" in name and (".so" in name or name.endswith((".dll", ".dylib"))):
            return str(f.locate())
    return None


def _dgemm():
    global _DGEMM
    if _DGEMM is None:
        _DGEMM = False
        path = None if os.environ.get("SYMGRAD_MKL", "") == "0" else _library_path()
        if path is not None:
            try:
                f = ctypes.CDLL(path).cblas_dgemm
            except (OSError, AttributeError):
                return False
            c_int, ptr = ctypes.c_int, ctypes.c_void_p
            f.argtypes = [c_int, c_int, c_int, c_int, c_int, c_int, ctypes.c_double, ptr, c_int, ptr, c_int,
                          ctypes.c_double, ptr, c_int]
            f.restype = None
            _DGEMM = f
    return _DGEMM


def backend() -> str:
    """``"mkl"`` where :func:`matmul` calls MKL's dgemm, else ``"numpy"``.

    >>> backend() in ("mkl", "numpy")
    True
    """
    return "mkl" if _dgemm() else "numpy"


def _operand(x):
    """(CBLAS transpose flag, leading dimension) of a C- or F-contiguous 2-D float64 array, or None."""
    if x.dtype != np.float64 or x.ndim != 2 or max(x.shape) > _INT_MAX:
        return None
    if x.flags.c_contiguous:
        return _NO_TRANS, max(1, x.shape[1])
    if x.flags.f_contiguous:
        return _TRANS, max(1, x.shape[0])
    return None


def matmul(a, b, out):
    """``out[...] = a @ b`` for 2-D arrays a (m, k), b (k, n) and out (m, n); returns ``out``.

    MKL's ``cblas_dgemm`` (β = 0: ``out`` is written, never read) where it is loaded and the
    arrays suit it (float64, each of a and b C- or F-contiguous, out C-contiguous and overlapping
    neither), else ``np.matmul(a, b, out=out)``.  Units: those of a times those of b.

    >>> import numpy as np
    >>> a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(4, 3).T
    >>> out = np.empty((2, 4))
    >>> bool(np.array_equal(matmul(a, b, out), a @ b))
    True
    """
    f = _dgemm()
    if f:
        oa, ob = _operand(a), _operand(b)
        m, k = a.shape if a.ndim == 2 else (0, 0)
        ok = (oa is not None and ob is not None and out.dtype == np.float64 and out.flags.c_contiguous
              and out.flags.writeable and b.shape[0] == k and out.shape == (m, b.shape[1]) and k > 0 and out.size > 0
              and not np.may_share_memory(out, a) and not np.may_share_memory(out, b))
        if ok:
            gemm(f, oa[0], ob[0], m, out.shape[1], k, a.ctypes.data, oa[1], b.ctypes.data, ob[1], out.ctypes.data)
            return out
    return np.matmul(a, b, out=out)


def dgemm():
    """MKL's ``cblas_dgemm`` (a ctypes function) where it is loaded, else None: for :func:`gemm`."""
    return _dgemm() or None


def gemm(f, ta, tb, m, n, k, pa, lda, pb, ldb, pc):
    """out = op(a) · op(b) by ``f`` (:func:`dgemm`) on raw addresses: row-major float64, out (m × n)
    C-contiguous at ``pc`` and overlapping neither operand, ``ta``/``tb`` the CBLAS flags
    (``NO_TRANS``: the operand's rows are rows of op(x); ``TRANS``: they are its columns), ``lda`` and
    ``ldb`` the operands' row strides in entries, m, n, k ≥ 1.  The caller vouches for all of it
    (:func:`matmul` checks it for arrays; :func:`symgrad.numeric.shared.backprop_shared` for the
    buffers it allocates and the weights it validated), which saves the per-call checks where one
    pass makes hundreds of products.  Row panels in MKL's slow range (``_PANEL_K``)."""
    # rows of out per dgemm call: all of them, except in MKL's slow range (_PANEL_K, _PANEL_MIN)
    step = _PANEL_ROWS if _PANEL_K[0] <= k < _PANEL_K[1] and m > _PANEL_ROWS and m * n >= _PANEL_MIN else m
    # row i of op(a) starts i·lda entries in (a not transposed) or i entries in (a transposed)
    a_row = lda * 8 if ta == NO_TRANS else 8
    for i in range(0, m, step):
        f(_CBLAS_ROW_MAJOR, ta, tb, min(step, m - i), n, k, 1.0, pa + i * a_row, lda, pb, ldb, 0.0, pc + i * n * 8, n)
