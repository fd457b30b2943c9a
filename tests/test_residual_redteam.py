"""Red-team findings on residual chains (task RT1: the compiled kernel's certified zeros, db84440).

The certificate itself (Activation.log_bounds in the numba residual kernel) held up: no case was
found where it wrote a zero that the exact value does not round to.  The two bugs below were in
the paths it is compared against (the rescaled redo chain_scaled, which the compiled kernel also
calls for flagged samples, and the closed form, through residual._split_one_plus: 1 + 0 taken as
0 where the product 0 carried a huge exponent; the NumPy GELU φ', which lost Φ(z) below scipy
ndtr's cutoff), each checked against its exact (mpmath) value; both are fixed.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import symgrad
from symgrad.numeric import backprop

from ._mpref import assert_within
from .test_residual_numeric import _chain_tol, numba_only

BACKENDS = ["numpy", pytest.param("numba", marks=numba_only)]


def _exact_skip_chain(a0, y):
    """∂C/∂b_1 = ∂C/∂w_1 (a0 = 1) of the chain below, at 50 digits: relu'(z_2) = 0 exactly, so the
    transfer of layer 2 is 1 + α_2 w_2·0 = 1 and g_1 = g_3 = a_3 − y; δ_1 = σ'(z_1) g_1."""
    mpmath.mp.dps = 50
    s = lambda t: 1 / (1 + mpmath.exp(-t))  # noqa: E731
    z1 = mpmath.mpf(a0)
    a1 = mpmath.mpf(a0) + s(z1)
    a3 = a1 + s(mpmath.mpf(-720))  # a2 = a1 + 1e300·relu(−1e10·a1) = a1
    return s(z1) * (1 - s(z1)) * (a3 - mpmath.mpf(y))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_zero_phi_prime_beside_a_huge_alpha_w_keeps_the_skip_in_the_rescaled_pass(backend):
    # Layer 2 is a residual ReLU with α = 1e300, w = −1e10 and z_2 < 0: φ'(z_2) = 0, so ∂a_2/∂a_1 = 1.
    # Layer 3's σ'(−720) underflows (and δ_3 ≈ 2e−313 is not 0), so the sample goes through the
    # rescaled pass (chain_scaled), which returns ∂C/∂b_1 = −0.0 instead of 0.3403…
    net = symgrad.chain(3, ["sigmoid", "relu", "sigmoid"], residual=[1.0, 1e300, 1.0])
    p = {"a0": np.array([1.0]), "w1": np.array([1.0]), "b1": np.array([0.0]), "w2": np.array([-1e10]),
         "b2": np.array([0.0]), "w3": np.array([0.0]), "b3": np.array([-720.0]), "y": np.array([0.0])}
    got = backprop(net, p, backend=backend)
    exact = np.array([float(_exact_skip_chain(1.0, 0.0))])
    tol = _chain_tol(net, p)
    assert_within(got.grads["b1"], exact, tol["b1"], "b1")
    assert_within(got.grads["w1"], exact, tol["w1"], "w1")


def test_the_numpy_gelu_gradient_keeps_phi_of_z_near_the_ndtr_cutoff():
    z = -37.684948479568355
    net = symgrad.chain(1, "gelu", residual=1.0)
    p = {"a0": np.array([0.0]), "w1": np.array([0.0]), "b1": np.array([z]), "y": np.array([-1.0])}
    got = backprop(net, p, backend="numpy")
    mpmath.mp.dps = 50
    Z = mpmath.mpf(z)
    dphi = mpmath.erfc(-Z / mpmath.sqrt(2)) / 2 + Z * mpmath.exp(-Z * Z / 2) / mpmath.sqrt(2 * mpmath.pi)
    a1 = Z * mpmath.erfc(-Z / mpmath.sqrt(2)) / 2
    exact = np.array([float(dphi * (a1 + 1))])  # δ_1 = α φ'(z) (a_1 − y), α = 1
    assert_within(got.grads["b1"], exact, _chain_tol(net, p)["b1"], "b1")


@pytest.mark.parametrize("b3", [-720.0, 0.0])
def test_the_closed_form_keeps_the_skip_where_phi_prime_is_zero_beside_a_huge_alpha_w(b3):
    from symgrad.numeric import evaluate_gradient

    net = symgrad.chain(3, ["sigmoid", "relu", "sigmoid"], residual=[1.0, 1e300, 1.0])
    p = {"a0": 1.0, "w1": 1.0, "b1": 0.0, "w2": -1e10, "b2": 0.0, "w3": 0.0, "b3": b3, "y": 0.0}
    mpmath.mp.dps = 50
    s = lambda t: 1 / (1 + mpmath.exp(-t))  # noqa: E731
    exact = s(1) * (1 - s(1)) * (1 + s(1) + s(mpmath.mpf(b3)))  # σ'(z_1)(a_3 − y), a_3 = a_0 + σ(1) + σ(b_3)
    got = float(evaluate_gradient(net.gradient("b1"), p))
    # a few dozen roundings of at most a few ulps each: 1e−13 (≈ 450u) is far above them, far below the 100% error
    assert abs(got - float(exact)) <= 1e-13 * float(exact), (got, float(exact))
