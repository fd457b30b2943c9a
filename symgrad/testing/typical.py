"""The typical case as an assertion: a sampled wide network behaves as mean field predicts.

:func:`assert_meanfield` runs :func:`symgrad.theory.montecarlo.check_wide_network` (random dense
networks with ``W_ij ~ N(0, σ_w²/n)``, ``b_i ~ N(0, σ_b²)``, symgrad's shared-weight backprop)
and raises :class:`symgrad.GradientCheckError` when the measured per-layer q^l or gradient ratio
E‖δ^l‖²/E‖δ^L‖² leaves its confidence interval around the mean-field prediction (Poole et al.
2016; Schoenholz et al. 2017).

>>> from symgrad.testing.typical import assert_meanfield
>>> assert_meanfield("relu", 2, 0, width=200, depth=10, batch=16).ok
True
"""

from __future__ import annotations

from symgrad.errors import GradientCheckError
from symgrad.theory.montecarlo import MonteCarloCheck, check_wide_network

__all__ = ["assert_meanfield"]


def assert_meanfield(activation, sigma_w2, sigma_b2, *, width: int = 500, depth: int = 50, batch: int = 64, seed=0,
                     q0=1.0, repeats: int = 12, level: float = 0.99) -> MonteCarloCheck:
    """Assert that random dense networks of this activation and initialisation propagate q^l and
    the gradient ratio E‖δ^l‖²/E‖δ^L‖² as mean field predicts, at every layer.

    * arguments as :func:`~symgrad.theory.montecarlo.check_wide_network` (width ≥ 500 and depth
      ≥ 50 are the issue's standard; the test suite's runs take about a second each);
    * returns the :class:`~symgrad.theory.montecarlo.MonteCarloCheck` when it passes;
    * raises :class:`~symgrad.GradientCheckError` (an ``AssertionError``) naming the worst layer,
      the measured and predicted values and the interval; :class:`~symgrad.InvalidArgument` for
      bad arguments.

    Source of the prediction: the length map q ↦ σ_w² E[φ(√q Z)²] + σ_b² and the per-layer
    factor σ_w² E[φ'(√q^l Z)²] (Schoenholz et al. 2017, eqs. 3 and 13).

    >>> c = assert_meanfield("tanh", 1, 0, width=200, depth=10, batch=16)
    >>> c.ok
    True
    """
    c = check_wide_network(activation, sigma_w2, sigma_b2, width=width, depth=depth, batch=batch, seed=seed, q0=q0,
                           repeats=repeats, level=level)
    if not c.ok:
        what, layer, meas, pred, lo, hi, ex = c.worst
        raise GradientCheckError(
            "mean field does not hold for %s at sigma_w2=%g, sigma_b2=%g: worst is %s at layer %d of %d: measured %.6g, "
            "predicted %.6g, interval [%.6g, %.6g] (%.2f times the half-width away)\n%s"
            % (c.activation, c.sigma_w2, c.sigma_b2, what, layer, c.depth, meas, pred, lo, hi, ex, c.summary()))
    return c
