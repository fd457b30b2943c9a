"""Custom activations' compiled forms where their float64 evaluation cancels
(symgrad.numeric._codegen: the running error bound of a custom form, and ERROR_SLACK's rule).

A custom sigmoid, ``exp(z)/(1+exp(z))``, has SymPy's derivative e^z/(1+e^z) − e^{2z}/(1+e^z)²: two
terms near 1 whose difference is about e^{−z}.  Printed as it is, the compiled form returned ~1e-16 at
z = 300 (exact 5.1e-131), and backprop / backprop_shared returned wrong gradients silently.  Now
a custom form returns nan where its first-order running error bound E (in units of u = 2^−53) exceeds
ERROR_SLACK·(|f| + |z|·|f'|), for f = φ and f = φ' (f' = φ''), and the kernels send a nan at a finite z
to the NumPy path.  The built-in (hand-proved) forms print exactly as before.

numba is in the ``test`` extra; without it these tests skip with a loud reason locally and FAIL in CI,
as tests/test_jit.py does.
"""

from __future__ import annotations

import math
import os

import mpmath
import numpy as np
import pytest

import symgrad
from symgrad.numeric import _codegen
from symgrad.numeric import _shared_kernels as _sk
from symgrad.numeric import backprop, sample
from symgrad.numeric import compiled as _jit
from symgrad.numeric.shared import backprop_shared
from symgrad.spec.activations import ERROR_SLACK

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

U = 2.0 ** -53
CUSTOM_SIGMOID = "exp(z)/(1+exp(z))"


def _mp_sigmoid(z):
    """σ, σ', σ'' at an exact float64 z, in mpmath at 80 digits, from e = e^{−|z|} (no cancellation)."""
    with mpmath.workdps(80):
        x = mpmath.mpf(float(z))
        e = mpmath.exp(-abs(x))
        s = 1 / (1 + e) if x >= 0 else e / (1 + e)
        d1 = e / (1 + e) ** 2
        d2 = d1 * (1 - 2 * s)
        return s, d1, d2


def _form(spec):
    return _codegen.scalar_kernel(symgrad.activation(spec))


# ---------------------------------------------------------------------------------------------
# The scalar forms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("z", [8.0, 20.0, 30.0, 300.0, 356.0, 600.0])
def test_a_custom_sigmoids_cancelling_derivative_is_not_trusted(z):
    # e^z/(1+e^z) − e^{2z}/(1+e^z)²: both terms within u of 1, the exact difference e^{−z}(1 + …);
    # as printed: 1e-16 or 0 at z = 30..300, inf − inf at 356 and 600 (e^{2z} overflows).  At z = 8
    # and 20 the printed value is still close (3e-4 and 2e-9 off by ~1e-12 relative and more), but
    # its bound (~10u absolute) exceeds the budget ERROR_SLACK·u·(1 + z)·e^{−z}: by the rule, not trusted.
    phi, dphi, _ = _form(CUSTOM_SIGMOID)(z)
    assert math.isnan(dphi), (z, dphi)


def _bounds(spec, z):
    """(φ, E_φ, φ', E_φ', φ'', E_φ'', φ returned, φ' returned) of a custom form at z (bounds in units
    of u), the printed source run as Python."""
    act = symgrad.activation(spec)
    return _codegen._run_generated(_codegen.bounds_source(act.expr, act.derivative))["phi"](z)


_E = math.exp
_S7 = 1 / (1 + _E(-7.0))  # σ(7)


# The running error bound of each kind of node, worked by hand from the rule (units of u; z exact;
# an operation adds |its result| and propagates its operands' bounds; a function f adds c_f|f|):
@pytest.mark.parametrize("spec,z,e_phi,e_dphi", [
    # z·z = 9 (E 9), then ·z: |z|·9 + 27 = 54; φ' = 3·(z·z): 3·9 + 27 = 54 (3 is a double: no rounding of its own)
    ("z**3", 3.0, 54.0, 54.0),
    # z + z² = 12: 0 + 9 + 12 = 21; φ' = 2z + 1: 2z exact (a power of two), + 1: 7
    ("z**2 + z", 3.0, 21.0, 7.0),
    # 1 + z² = 10: E 9 + 10 = 19; 1/b: E_b/b² + |1/b| = 19/100 + 0.1
    ("1/(1 + z**2)", 3.0, 0.29, None),
    # libm's exp of the exact 2z: 4 ulp
    ("exp(2*z)", 3.0, 4 * _E(6.0), None),
    # exp_neg (1 ulp) of −z² (E 4, negation exact): e^{−4}·4 + e^{−4}
    ("exp(-z**2)", 2.0, 5 * _E(-4.0), None),
    # σ(u), u = 2z + 1 = 7 (E 7): σ'(7)·7 + 4σ(7)
    ("sigmoid(2*z + 1)", 3.0, _S7 * (1 - _S7) * 7 + 4 * _S7, None),
    # max of two bounds 21 (z² + z at 3, z² − z at −3) and 15: the larger, whichever argument is selected
    ("max(z**2 + z, z**2 - z)", 3.0, 21.0, None),
    ("max(z**2 + z, z**2 - z)", -3.0, 21.0, None),
    # log(1 + z²): 19/10 + 4·log(10)
    ("log(1 + z**2)", 3.0, 1.9 + 4 * math.log(10.0), None),
    # tanh_ (5 ulp) of u = 7 (E 7): (1 − tanh²7)·7 + 5·tanh 7
    ("tanh(2*z + 1)", 3.0, (1 - math.tanh(7.0) ** 2) * 7 + 5 * math.tanh(7.0), None),
    # √(1 + z²): 19/(2√10) + √10 (correctly rounded: 1 ulp)
    ("sqrt(1 + z**2)", 3.0, 19 / (2 * math.sqrt(10.0)) + math.sqrt(10.0), None),
])
def test_the_running_error_bound_of_each_node(spec, z, e_phi, e_dphi):
    got = _bounds(spec, z)
    assert got[1] == pytest.approx(e_phi, rel=1e-12), got
    if e_dphi is not None:
        assert got[3] == pytest.approx(e_dphi, rel=1e-12), got


def test_the_budget_takes_a_certain_lower_bound_of_the_slope():
    # The budget's f' (φ' for φ, φ'' for φ') is printed at its certain lower bound |f'| − u·E_f' (≥ 0),
    # so that an f' that is itself mostly rounding error does not widen the budget of f.
    text = "def phi(f, t):\n    return %s\n" % _codegen._lower("f", "t")
    lower = _codegen._run_generated(text)["phi"]
    assert lower(-3e-10, 1e7) == 0.0  # |f'| = 3e-10 within its error 1.1e-9 of 0: no budget from it
    assert lower(-0.5, 2.0) == 0.5 - 2.0 * U
    assert _codegen._lower("f", _codegen._ZERO) == "abs(f)"  # an exact f'


def test_a_custom_sigmoid_is_trusted_and_within_its_budget_at_moderate_z():
    # Where it is trusted, a value is within u·E of the exact one, and E ≤ ERROR_SLACK·(|f| + |z||f'|):
    # that budget (with the exact f, f'; 1 + 2·ERROR_SLACK·u for the computed |f| it was checked
    # with) is the tolerance.
    k = _form(CUSTOM_SIGMOID)
    for z in np.linspace(-5.0, 5.0, 401):
        phi, dphi, uf = k(float(z))
        assert not (math.isnan(phi) or math.isnan(dphi) or uf), (z, phi, dphi)
        s, d1, d2 = _mp_sigmoid(z)
        slack = ERROR_SLACK * U * (1 + 2 * ERROR_SLACK * U)
        assert abs(mpmath.mpf(phi) - s) <= slack * (abs(s) + abs(z) * d1), (z, phi)
        assert abs(mpmath.mpf(dphi) - d1) <= slack * (d1 + abs(z) * abs(d2)), (z, dphi)


def test_a_custom_sigmoids_value_stays_trusted_where_only_its_derivative_cancels():
    # φ = e^z/(1 + e^z) itself is well conditioned up to the overflow of e^z (z ≈ 709.8)
    k = _form(CUSTOM_SIGMOID)
    for z in (6.0, 30.0, 300.0, -300.0, -700.0):
        phi, _, _ = k(z)
        s, _, _ = _mp_sigmoid(z)
        assert abs(mpmath.mpf(phi) - s) <= 8 * U * s, (z, phi)


def _swish_root():
    # φ'(z) = σ(z)(1 + z(1 − σ(z))) = 0 ⇔ 1 + z σ(−z) = 0
    with mpmath.workdps(50):
        return float(mpmath.findroot(lambda t: 1 + t / (1 + mpmath.exp(t)), -1.28))


def test_swish_derivative_is_trusted_through_its_simple_root():
    # φ' = z(1 − σ)σ + σ has a simple root at z ≈ −1.2785: its terms cancel there, but the budget
    # |z|·|φ''| stays, and a nan near it would send whole layers of a common activation to NumPy.
    k = _form("z*sigmoid(z)")
    r = _swish_root()
    assert abs(r + 1.2784645427610738) < 1e-12
    grid = np.concatenate([np.linspace(r - 0.05, r + 0.05, 20001), [r, np.nextafter(r, 0), np.nextafter(r, -2)]])
    grid = np.concatenate([grid, r + np.arange(-2000, 2001) * math.ulp(r)])  # the doubles next to the root
    got = np.array([k(float(z))[:2] for z in grid])
    assert not np.isnan(got).any(), grid[np.isnan(got).any(axis=1)][:5]
    with mpmath.workdps(60):
        for z in grid[::997]:
            x = mpmath.mpf(float(z))
            s = 1 / (1 + mpmath.exp(-x))
            d1 = s * (1 + x * (1 - s))
            d2 = s * (1 - s) * (2 + x * (1 - 2 * s))
            dphi = k(float(z))[1]
            assert abs(mpmath.mpf(dphi) - d1) <= ERROR_SLACK * U * (1.001) * (abs(d1) + abs(x) * abs(d2)), (z, dphi)


def test_a_derivative_that_cancels_near_zero_is_not_trusted():
    # φ = e^z − z: φ' = e^z − 1 cancels near 0 (the relative condition of φ' is fine: expm1 would be
    # exact), so at z = 1e-10 the printed e^z − 1 is off by ~1e-6 relative: not trusted; φ ≈ 1 is.
    k = _form("exp(z) - z")
    phi, dphi, _ = k(1e-10)
    assert math.isnan(dphi)
    assert abs(phi - 1.0) <= 4 * U
    assert k(1.0)[1] == pytest.approx(math.e - 1, rel=8 * U)


def test_exact_values_need_no_check():
    # |z|, max(z, 0) and their steps (decided by the exact z) are exact: no bound, no check, no φ''.
    for spec in ("abs(z)", "max(z, 0)"):
        src = _codegen.form_of(symgrad.activation(spec))
        assert _codegen._SLACK not in src and "HUGE" not in src, (spec, src)
    # z·H(z): φ' = H(z) is exact, only φ = z·H(z) (a rounded product) is checked
    assert _codegen.form_of(symgrad.activation("z*heaviside(z)")).count(_codegen._SLACK) == 1
    assert _form("abs(z)")(0.0)[1] == -1.0 and _form("abs(z)")(-0.0)[1] == -1.0
    assert _form("max(0.1*z, z)")(0.0)[1] == 0.1  # an exact 0 is certain: its step is decided


def test_a_step_within_its_arguments_error_of_zero_is_not_trusted():
    # heaviside(z − 0.1): z − 0.1 is within u·E of 0 near z = 0.1, where the jump may be on the
    # wrong side; away from it the step is certain.
    k = _form("z*heaviside(z - 0.1)")
    assert math.isnan(k(0.1)[0]) and math.isnan(k(0.1)[1])
    assert k(0.2)[:2] == (0.2, 1.0) and k(0.0)[:2] == (0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Built-in forms: byte-identical
# ---------------------------------------------------------------------------------------------

#: printed before the running error bound existed (commit d93c5f2): the built-ins are hand-proved
#: stable and benchmarked, and must print exactly so.
_BEFORE = {
    "sigmoid": "def phi(z):\n    t0 = abs(z)\n    t1 = -t0\n    t2 = exp_neg(t1)\n    t3 = (1.0) + t2\n    t4 = 1.0 / t3\n"
               "    t5 = t4 * t2\n    t6 = (t4 if (z >= (0.0)) else t5)\n    t7 = t4 * t4\n    t8 = t7 * t2\n"
               "    t9 = min((0.25), t8)\n    return (t6, t9, (t2 < TINY) | (abs(t4) < TINY) | ((abs(t5) < TINY) & (t4 != 0.0)"
               " & (t2 != 0.0)) | ((abs(t7) < TINY) & (t4 != 0.0) & (t4 != 0.0)) | ((abs(t8) < TINY) & (t7 != 0.0) & (t2 != 0.0)))\n",
    # tanh changed on purpose afterwards (commit "tanh shares one polynomial with its stable
    # derivative"): tanh and 4e/(1 + e)² from one expm1_exp_neg and one division
    "tanh": "def phi(z):\n    t0 = expm1_exp_neg((-2.0) * min(abs(z), (10000.0)))\n    t1 = t0[0]\n    t2 = t0[1]\n"
            "    t3 = (1.0) + t2\n    t4 = 1.0 / t3\n    t5 = math.copysign(-t1 * t4, z)\n    t6 = t4 * t4\n"
            "    t7 = (4.0) * t6 * t2\n    t8 = min((1.0), t7)\n    return (t5, t8, (abs(t4) < TINY) | ((abs(t6) < TINY) & (t4 != 0.0)"
            " & (t4 != 0.0)) | (t2 < TINY) | ((abs(t7) < TINY) & (t6 != 0.0) & (t2 != 0.0)))\n",
    "gelu": "def phi(z):\n    t0 = (-0.7071067811865476) * z\n    t1 = erfc_(t0)\n    t2 = (0.5) * z * t1\n    t3 = (0.5) * t1\n"
            "    t4 = z * z\n    t5 = (-0.5) * t4\n    t6 = exp_neg(t5)\n    t7 = (0.3989422804014327) * z * t6\n    t8 = t3 + t7\n"
            "    return (t2, t8, ((abs(t0) < TINY) & (z != 0.0)) | (t1 < TINY) | ((abs(t2) < TINY) & (z != 0.0) & (t1 != 0.0))"
            " | ((abs(t3) < TINY) & (t1 != 0.0)) | ((abs(t4) < TINY) & (z != 0.0) & (z != 0.0)) | ((abs(t5) < TINY) & (t4 != 0.0))"
            " | (t6 < TINY) | ((abs(t7) < TINY) & (z != 0.0) & (t6 != 0.0)))\n",
}


@pytest.mark.parametrize("name", sorted(_BEFORE))
def test_builtin_forms_print_exactly_as_before(name):
    assert _codegen.form_of(symgrad.activation(name)) == _BEFORE[name]


def test_the_error_bound_machinery_is_off_for_every_builtin():
    # No builtin's stable form gets a bound, a check, or a chain of binary sums and products: the
    # printer carries no _Bounds when trusted, and no printed built-in form holds the check's text.
    assert _codegen._Printer(derivative_mode=False, trusted=True).bd is None
    for name in symgrad.spec.activations.BUILTIN_ACTIVATIONS:
        act = symgrad.activation(name)
        assert act.stable is not None, name
        src = _codegen.form_of(act)
        assert "HUGE" not in src and _codegen._SLACK not in src and _codegen._U not in src, (name, src)


# ---------------------------------------------------------------------------------------------
# End to end: the compiled paths route an untrusted φ' to the NumPy path
# ---------------------------------------------------------------------------------------------
#
# Reference: mpmath at 80 digits from the same float64 inputs, with the exact σ (e^{−|z|} form).
# Tolerance, derived (first order).  Every quantity of these networks is positive (w, α, a > 0,
# a_L − y > 0, σ' > 0), so the backward pass has no cancellation: a gradient is a sum of products of
# positive factors, and its relative error is at most the sum of its factors' relative errors plus
# one u per rounding.  By ERROR_SLACK's rule (the compiled forms, the NumPy kernel, or a value computed
# exactly), each computed σ(ẑ) and σ'(ẑ) is within ERROR_SLACK·u·(|f| + |ẑ||f'|) of its value at the
# computed ẑ; for σ, |σ''| ≤ σ' and |z|σ' ≤ 0.3σ (z ≥ 0), so each factor is within ε = ERROR_SLACK·u·(1 +
# |z|) relative.  A z is a sum of positive terms w·a (+ α·φ for a residual layer) + b whose a carry the
# relative errors of the layers below (≤ Σ ε), so Δz ≤ |z|·(Σ ε + 3u), and σ'(ẑ) moves by |σ''/σ'|·Δz ≤ Δz
# (relative).  Over a depth L with |z| ≤ zmax: rel ≤ 2L·ε + L·zmax·(2L·ε + 3u) + 8Lu (+ the sums over the
# batch and over a layer's units, positive: one u each).  With zmax = 300 and L = 3 this is
# ≈ 4e-6, far below the wrong answers (off by 1e70 and more) that it tells apart; the observed errors
# are about 1e-15.


def _tolerance(L, zmax, n_sums=0):
    eps = ERROR_SLACK * U * (1 + zmax)
    return 2 * L * eps + L * zmax * (2 * L * eps + 3 * U) + (8 * L + n_sums) * U


def _mp_dense(Ws, bs, a0, y, alphas):
    """Batch-summed gradients of ½‖a^L − y‖² for a dense network of σ (α: None for a plain layer,
    else a^l = a^{l−1} + α φ(z^l)), and max |z|, in mpmath at 80 digits."""
    with mpmath.workdps(80):
        def mat(x):
            return mpmath.matrix([[mpmath.mpf(float(v)) for v in row] for row in np.atleast_2d(x)])

        L = len(Ws)
        W = [mat(w) for w in Ws]
        b = [mat(np.reshape(v, (-1, 1))) for v in bs]
        gW = [mpmath.zeros(W[l].rows, W[l].cols) for l in range(L)]
        gb = [mpmath.zeros(b[l].rows, 1) for l in range(L)]
        zmax = 0.0
        for s in range(a0.shape[0]):
            a = [mat(np.reshape(a0[s], (-1, 1)))]
            d1 = []
            for l in range(L):
                z = W[l] * a[-1] + b[l]
                ph = mpmath.matrix(z.rows, 1)
                dp = mpmath.matrix(z.rows, 1)
                for i in range(z.rows):
                    zi = z[i]
                    zmax = max(zmax, float(abs(zi)))
                    e = mpmath.exp(-abs(zi))
                    ph[i] = 1 / (1 + e) if zi >= 0 else e / (1 + e)
                    dp[i] = e / (1 + e) ** 2
                a.append(ph if alphas[l] is None else a[-1] + alphas[l] * ph)
                d1.append(dp)
            g = a[-1] - mat(np.reshape(y[s], (-1, 1)))
            for l in range(L - 1, -1, -1):
                c = 1 if alphas[l] is None else alphas[l]
                delta = mpmath.matrix([[c * d1[l][i] * g[i]] for i in range(g.rows)])
                gW[l] += delta * a[l].T
                gb[l] += delta
                g = W[l].T * delta + g if alphas[l] is not None else W[l].T * delta
        return gW, gb, zmax


def _assert_rel(got, exact, tol, what):
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    ex = [exact[i] for i in range(len(exact))] if hasattr(exact, "rows") else list(exact)
    for g, e in zip(got, ex):
        assert not math.isnan(g), (what, g)
        assert abs(mpmath.mpf(float(g)) - e) <= tol * abs(e) + mpmath.mpf(2) ** -1074, (what, g, mpmath.nstr(e, 17), tol)


def _chain_params(net, B, rng):
    """The first half of the samples with |z_j| < 4 (trusted: their blocks stay compiled), the
    second with z_j ≈ 40..300 (σ' = e^{−z} where the printed φ' cancels: their blocks go to NumPy)."""
    p = sample(net, B, seed=1)
    far = np.arange(B) >= B // 2
    p["a0"] = rng.uniform(0.5, 1.0, B)
    for j in range(1, net.depth + 1):
        p["w%d" % j] = rng.uniform(0.5, 1.5, B)
        p["b%d" % j] = np.where(far, rng.uniform(40.0, 300.0, B), rng.uniform(-4.0, 0.0, B))
    p["y"] = np.where(far, rng.uniform(0.0, 0.5, B), 0.0)  # a_L − y > 0: no cancellation at the output
    return p


def _check_chain(net, alphas, threads, monkeypatch):
    from symgrad.numeric import evaluator, residual as _res

    rng = np.random.default_rng(7)
    B, block = 1024, 256  # four blocks: two compiled, two sent to NumPy by their nan φ'
    p = _chain_params(net, B, rng)
    numpy_blocks = []
    mod, name = (_res, "chain_block") if net.is_residual else (evaluator, "_generic_block")
    real = getattr(mod, name)
    monkeypatch.setattr(mod, name, lambda inp, s, e, *a: numpy_blocks.append(s) or real(inp, s, e, *a))
    res = backprop(net, p, backend="numba", threads=threads, block_size=block)
    assert sorted(numpy_blocks) == [512, 768]  # the far blocks, and only those, went to NumPy
    # the compiled form returns nan in the far half (else these gradients would be the cancelled ones)
    assert math.isnan(_form(CUSTOM_SIGMOID)(float(p["w1"][-1] * p["a0"][-1] + p["b1"][-1]))[1])
    picks = np.concatenate([rng.choice(B // 2, 12, replace=False), B // 2 + rng.choice(B // 2, 12, replace=False)])
    for i in sorted(picks.tolist()):
        Ws = [np.array([[p["w%d" % j][i]]]) for j in range(1, net.depth + 1)]
        bs = [np.array([p["b%d" % j][i]]) for j in range(1, net.depth + 1)]
        gW, gb, zmax = _mp_dense(Ws, bs, np.array([[p["a0"][i]]]), np.array([[p["y"][i]]]), alphas)
        tol = _tolerance(net.depth, zmax)
        for j in range(net.depth):
            _assert_rel(res.grads["w%d" % (j + 1)][i:i + 1], gW[j], tol, "w%d[%d]" % (j + 1, i))
            _assert_rel(res.grads["b%d" % (j + 1)][i:i + 1], gb[j], tol, "b%d[%d]" % (j + 1, i))


@pytest.mark.parametrize("residual", [None, [None, 0.5, None], [1.0, 0.5, 0.25]], ids=["plain", "mixed", "residual"])
def test_backprop_of_a_custom_sigmoid_chain_where_its_derivative_cancels(residual, monkeypatch):
    # One thread: the routing of the compiled kernels, deterministic (status → _NonFiniteBlock → the
    # NumPy path).  (On two threads the NumPy kernel's exact fallback runs in both at once.)
    alphas = [None] * 3 if residual is None else residual
    net = symgrad.chain(3, CUSTOM_SIGMOID, residual=residual)
    _check_chain(net, alphas, 1, monkeypatch)


def _dense_params(widths, B, rng):
    p = {"a0": rng.uniform(0.5, 1.0, (B, widths[0])), "y": rng.uniform(0.0, 0.5, (B, widths[-1]))}
    for l in range(1, len(widths)):
        p["W%d" % l] = rng.uniform(0.5, 1.5, (widths[l], widths[l - 1]))
        p["b%d" % l] = rng.uniform(40.0, 300.0, widths[l])
    return p


@pytest.mark.parametrize("residual", [None, [None, 0.5, None]], ids=["plain", "residual"])
def test_backprop_shared_of_a_custom_sigmoid_network_where_its_derivative_cancels(residual):
    widths = [3, 4, 4, 2]
    net = symgrad.network(widths, CUSTOM_SIGMOID, residual=residual)
    kern = _sk.kernels(net, np.float64)
    assert kern is not None  # the compiled steps run (and redo the layers they flag in NumPy)
    rng = np.random.default_rng(11)
    B = 6
    p = _dense_params(widths, B, rng)
    # the compiled step of layer 1 reports its nan φ' entries as bad (so the pass redoes that layer)
    z = p["a0"] @ p["W1"].T
    a, P = np.empty_like(z), np.empty_like(z)
    bad = kern.plain[0](z.copy(), p["b1"], a, P, np.empty(4), np.empty(4), False)[0]
    assert bad == z.size and np.isnan(P).all()
    res = backprop_shared(net, p)
    alphas = [None] * 3 if residual is None else residual
    gW, gb, zmax = _mp_dense([p["W%d" % l] for l in (1, 2, 3)], [p["b%d" % l] for l in (1, 2, 3)], p["a0"], p["y"], alphas)
    tol = _tolerance(net.depth, zmax, n_sums=B + max(widths))
    for l in range(1, 4):
        _assert_rel(res.grads["W%d" % l], [gW[l - 1][i, j] for i in range(gW[l - 1].rows) for j in range(gW[l - 1].cols)],
                    tol, "W%d" % l)
        _assert_rel(res.grads["b%d" % l], gb[l - 1], tol, "b%d" % l)


def test_the_chain_kernel_flags_underflow_and_stops_at_an_untrusted_derivative():
    # The compiled chain kernel's protocol with a custom form (cf. test_jit's status test): an
    # underflowed φ' (z1 = −800: e^{−800} is 0, an exact 0 with bound 0, trusted) keeps its uf flag and
    # only that sample is flagged for the rescaled redo (status −1); an untrusted φ' (z1 = 40, nan)
    # stops the block at its layer (status 1: → _NonFiniteBlock → the NumPy path); elsewhere nothing.
    from symgrad.numeric.chain import _jit_kernel

    net = symgrad.chain(2, [CUSTOM_SIGMOID, "identity"])
    B = 256
    p = sample(net, B, seed=0)
    p["a0"], p["w1"] = np.ones(B), np.ones(B)
    p["b1"] = np.random.default_rng(0).uniform(-3.0, 3.0, B)
    kernel, kinds = _jit_kernel(net)

    def call(q):
        D, A, loss, fl = np.empty((2, B)), np.empty((2, B)), np.empty(B), np.zeros(B, dtype=np.bool_)
        W = _jit.typed_rows([np.ascontiguousarray(q["w%d" % j]) for j in (1, 2)])
        Bs = _jit.typed_rows([np.ascontiguousarray(q["b%d" % j]) for j in (1, 2)])
        return kernel(W, Bs, kinds, q["a0"], q["y"], 0, B, A, 0, D, 0, False, False, loss, fl), fl

    st, fl = call(p)
    assert st == 0 and not fl.any()
    q = dict(p)
    q["b1"] = p["b1"].copy()
    q["b1"][5] = -801.0
    assert _form(CUSTOM_SIGMOID)(-800.0) == (0.0, 0.0, True)
    st, fl = call(q)
    assert st == -1 and np.flatnonzero(fl).tolist() == [5]
    q["b1"][9] = 39.0
    st, fl = call(q)
    assert st == 1


def test_a_custom_form_too_large_to_compile_runs_on_numpy():
    # φ'' of σ nested 10 deep is 10 products of 10 factors: with the bounds, 969 lines (more than
    # MAX_CUSTOM_LINES), which would take numba over 10 s to compile: the NumPy path runs instead.
    spec = "z"
    for _ in range(10):
        spec = "sigmoid(%s)" % spec
    net = symgrad.chain(2, spec)
    with pytest.raises(_codegen._Unprintable, match="lines"):
        _codegen.form_of(net.activations[0])
    p = sample(net, 300, seed=0)
    with pytest.raises(symgrad.InvalidArgument, match="lines"):
        backprop(net, p, backend="numba")
    assert np.isfinite(backprop(net, p).grads["b1"]).all()  # auto: NumPy


def test_a_hand_written_gelu_compiles_through_the_kernels_identities():
    # z(1 + erf(z/√2))/2 cancels over its whole left tail; the compiled form, like the NumPy kernel,
    # evaluates it as z·erfc(−z/√2)/2 (symgrad.spec.activations._stable_rewrites), so no point of
    # [−30, 30] is untrusted, and the values agree with the built-in GELU's compiled form
    custom = symgrad.activation("z*(1 + erf(z/sqrt(2)))/2")
    assert "erfc_" in _codegen.form_of(custom) and "math.erf(" not in _codegen.form_of(custom)
    k, g = _codegen.scalar_kernel(custom), _codegen.scalar_kernel(symgrad.activation("gelu"))
    for x in np.linspace(-30, 30, 6001):
        a, b = k(float(x))[:2], g(float(x))[:2]
        assert not (math.isnan(a[0]) or math.isnan(a[1]))
        assert abs(a[0] - b[0]) <= 1e-14 * abs(b[0]) + 1e-300 and abs(a[1] - b[1]) <= 1e-13 * abs(b[1]) + 1e-300, (x, a, b)
