"""Cost functions C(a, y) of the network output a and target y, with ∂C/∂a in closed form.

* ``quadratic``: ``C = ½ Σ_i (a_i − y_i)²`` and ``∂C/∂a_i = a_i − y_i``.
* ``cross_entropy`` (binary): ``C = −Σ_i [y_i log a_i + (1 − y_i) log(1 − a_i)]`` and
  ``∂C/∂a_i = (a_i − y_i) / (a_i (1 − a_i))``.  With a sigmoid output the σ' of the last layer
  cancels: ``∂C/∂z_L = a_L − y`` (:meth:`Loss.output_delta` applies this).
* ``log_likelihood``: ``C = −Σ_i y_i ln a_i`` (``−ln a_y`` for a one-hot target), for a softmax
  output layer (Nielsen ch. 3 eq. 80), whose Jacobian diag(a) − a aᵀ cancels ∂C/∂a_i = −y_i/a_i:
  ``δ^L = a^L − y`` exactly when ``Σ_i y_i = 1`` (a one-hot or probability target; Nielsen
  ch. 3 eqs. 81–82).  It needs an output-only activation (softmax) and a probability target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy

from symgrad.errors import InvalidArgument

__all__ = ["Loss", "loss", "BUILTIN_LOSSES", "SIMPLEX_LOSSES"]


@dataclass(frozen=True)
class Loss:
    """A cost ``C(a, y)`` for one output unit (summed over the output units of a network).

    The numeric paths ask the facts, not the name: :attr:`dcost_is_residual` (∂C/∂a = a − y),
    :attr:`domain_open_unit` (a ∈ (0, 1), y ∈ [0, 1], ∂C/∂a = (a − y)/(a(1 − a))) and
    :meth:`cancels_with`.

    >>> loss("quadratic").dcost_is_residual, loss("bce").domain_open_unit, loss("mse").domain_open_unit
    (True, True, False)
    """

    name: str
    cost: Callable[[sympy.Expr, sympy.Expr], sympy.Expr]
    dcost: Callable[[sympy.Expr, sympy.Expr], sympy.Expr]
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    dvalue: Callable[[np.ndarray, np.ndarray], np.ndarray]
    latex: str
    #: ∂C/∂a = a − y exactly (the quadratic cost, Nielsen ch. 1 eq. 6): the numeric paths form it
    #: as a_L − y (σ(z_L) − y from the logit for a sigmoid output).
    dcost_is_residual: bool = False
    #: C is defined only for a ∈ (0, 1) and y ∈ [0, 1] (binary cross-entropy, Nielsen ch. 3
    #: eq. 57), and ∂C/∂a = (a − y)/(a(1 − a)): the numeric paths refuse an output outside (0, 1)
    #: and a target outside [0, 1], and divide a_L − y by a_L(1 − a_L).
    domain_open_unit: bool = False
    #: C in the LaTeX derivations, for a chain's output ``a_{L}`` and a dense network's ``a^{L}``
    #: (``%(L)d`` is the depth); ``None`` prints SymPy's LaTeX of :attr:`cost` instead.
    latex_chain: str | None = None
    latex_dense: str | None = None
    #: C = −Σ_i y_i ln a_i: the output must be a probability vector (an
    #: :attr:`Activation.output_only` activation, softmax) and the target one too (y ≥ 0,
    #: Σ y = 1); then δ^L = Σ'(z^L)ᵀ ∇_a C = a^L − y (:attr:`assumption`).
    on_simplex: bool = False
    #: The assumption under which the cancelled closed form δ^L = a^L − y holds, or None when it
    #: holds for every target (sigmoid + cross-entropy).
    assumption: str | None = None

    def output_delta(self, act, a_out, z_out, y) -> tuple[sympy.Expr, ...]:
        """The factors of ``∂C/∂z_L = φ'(z_L) · ∂C/∂a_L`` for one output unit, after the
        cancellation that cross-entropy with a sigmoid output allows (then just ``a_L − y``;
        Nielsen ch. 3 eq. 66).

        >>> from symgrad.spec.activations import activation
        >>> a, z, y = sympy.symbols("a z y")
        >>> loss("cross_entropy").output_delta(activation("sigmoid"), a, z, y)
        (a - y,)
        >>> loss("quadratic").output_delta(activation("tanh"), a, z, y)
        (tanh'(z), a - y)
        """
        if self.cancels_with(act):
            return (a_out - y,)
        return (act.prime.at(z_out), self.dcost(a_out, y))

    def cancels_with(self, act) -> bool:
        """True when φ'(z_L) · ∂C/∂a_L collapses to ``a_L − y``: cross-entropy with a logistic
        output (:attr:`Activation.logistic`, φ = σ, whose σ' = a(1 − a) cancels the denominator),
        or the log-likelihood with a softmax output (:attr:`Activation.output_only`: the Jacobian
        diag(a) − a aᵀ times −y/a is a − y·Σy, so a − y given Σ y = 1, :attr:`assumption`).

        >>> from symgrad.spec.activations import activation
        >>> loss("cross_entropy").cancels_with(activation("sigmoid")), loss("quadratic").cancels_with(activation("sigmoid"))
        (True, False)
        >>> loss("log_likelihood").cancels_with(activation("softmax")), loss("log_likelihood").assumption
        (True, 'Σ_i y_i = 1 (a one-hot or probability target)')
        """
        if self.on_simplex:
            return bool(getattr(act, "output_only", False))
        return self.domain_open_unit and act.logistic


def _bce_value(a, y):
    # Clipping would hide a saturated output; a = 0 or 1 with a wrong target is an infinite cost.
    with np.errstate(divide="ignore"):
        return -(y * np.log(a) + (1.0 - y) * np.log1p(-a))


def _ll_value(a, y):
    # −y ln a per unit, 0 where y = 0 (also where a underflowed to 0 there); the numeric paths
    # form it from the logits instead (log softmax), where a itself may have underflowed.
    a, y = np.asarray(a), np.asarray(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y == 0, 0.0, -y * np.log(np.where(y == 0, 1.0, a)))


def _ll_dvalue(a, y):
    a, y = np.asarray(a), np.asarray(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y == 0, 0.0, -y / np.where(y == 0, 1.0, a))


def _make_losses():
    quadratic = Loss(
        "quadratic",
        lambda a, y: sympy.Rational(1, 2) * (a - y) ** 2,
        lambda a, y: a - y,
        lambda a, y: 0.5 * np.square(a - y),
        lambda a, y: a - y,
        r"\tfrac12 (a - y)^2",
        dcost_is_residual=True,
        latex_chain=r"\tfrac12\,(a_{%(L)d} - y)^{2}",
        latex_dense=r"\tfrac12\,\lVert a^{%(L)d} - y \rVert^{2}",
    )
    cross_entropy = Loss(
        "cross_entropy",
        lambda a, y: -(y * sympy.log(a) + (1 - y) * sympy.log(1 - a)),
        lambda a, y: (a - y) / (a * (1 - a)),
        _bce_value,
        lambda a, y: (a - y) / (a * (1.0 - a)),
        r"-\left[y \ln a + (1 - y) \ln (1 - a)\right]",
        domain_open_unit=True,
        latex_chain=r"-\bigl[y \ln a_{%(L)d} + (1 - y) \ln (1 - a_{%(L)d})\bigr]",
        latex_dense=r"-\sum_{i} \bigl[y_{i} \ln a^{%(L)d}_{i} + (1 - y_{i}) \ln (1 - a^{%(L)d}_{i})\bigr]",
    )
    log_likelihood = Loss(
        "log_likelihood",
        lambda a, y: -y * sympy.log(a),
        lambda a, y: -y / a,
        _ll_value,
        _ll_dvalue,
        r"-y \ln a",
        latex_dense=r"-\sum_{i} y_{i} \ln a^{%(L)d}_{i}",
        on_simplex=True,
        assumption="Σ_i y_i = 1 (a one-hot or probability target)",
    )
    return {"quadratic": quadratic, "mse": quadratic, "cross_entropy": cross_entropy, "bce": cross_entropy,
            "log_likelihood": log_likelihood, "nll": log_likelihood}


_LOSSES = _make_losses()
#: Names of the elementwise losses :func:`loss` accepts, for any output layer (``mse`` and ``bce``
#: are aliases).
BUILTIN_LOSSES: tuple[str, ...] = tuple(k for k, v in _LOSSES.items() if not v.on_simplex)
#: Names of the losses for a probability-vector (softmax) output: ``log_likelihood`` (alias
#: ``nll``), C = −Σ_i y_i ln a_i.
SIMPLEX_LOSSES: tuple[str, ...] = tuple(k for k, v in _LOSSES.items() if v.on_simplex)


def loss(spec) -> Loss:
    """Return a built-in :class:`Loss` by name, or ``spec`` itself if it is one.

    >>> loss("quadratic").dcost(sympy.Symbol("a"), sympy.Symbol("y"))
    a - y
    """
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str) and spec.strip().lower() in _LOSSES:
        return _LOSSES[spec.strip().lower()]
    raise InvalidArgument("unknown loss %r; known: %s, and for a softmax output %s" % (spec, ", ".join(BUILTIN_LOSSES), ", ".join(SIMPLEX_LOSSES)))
