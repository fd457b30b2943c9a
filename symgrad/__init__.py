"""symgrad: verified gradient-flow analysis for deep networks.

The package reads in one direction:

* specification: :mod:`symgrad.activations`, :mod:`symgrad.losses`, :mod:`symgrad.networks`;
* symbolic derivation: :mod:`symgrad.derivation` (closed-form gradient chains, linear in depth);
* numeric evaluation: :mod:`symgrad.numeric` (stable backprop, log space, gradient checks);
* LaTeX derivations: :mod:`symgrad.latex`;
* the command line on top: :mod:`symgrad.cli`.

>>> import symgrad
>>> net = symgrad.chain(3)
>>> net.gradient("b1")
Gradient(∂C/∂b1 = sigmoid'(z1)*w2*sigmoid'(z2)*w3*sigmoid'(z3)*(a3 - y))
"""

from .activations import (
    BUILTIN_ACTIVATIONS,
    Activation,
    DerivativeBound,
    activation,
    custom_activation,
)
from . import latex
from .derivation import Gradient, SymbolicChain, SymbolicGradient
from .errors import GradientCheckError, InvalidArgument, SymgradError
from .losses import BUILTIN_LOSSES, Loss, loss
from .networks import MAX_COMPOSE_DEPTH, MAX_DEPTH, Chain, Network, chain, network
from .numeric import (
    TOLERANCES,
    BackpropResult,
    GradientCheckReport,
    PrecisionWarning,
    backprop,
    check_gradients,
    evaluate_gradient,
    forward,
    sample,
)

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "BackpropResult",
    "GradientCheckReport",
    "PrecisionWarning",
    "TOLERANCES",
    "backprop",
    "check_gradients",
    "evaluate_gradient",
    "forward",
    "latex",
    "sample",
    "BUILTIN_ACTIVATIONS",
    "BUILTIN_LOSSES",
    "Chain",
    "DerivativeBound",
    "Gradient",
    "GradientCheckError",
    "InvalidArgument",
    "Loss",
    "MAX_COMPOSE_DEPTH",
    "MAX_DEPTH",
    "Network",
    "SymbolicChain",
    "SymbolicGradient",
    "SymgradError",
    "activation",
    "chain",
    "custom_activation",
    "loss",
    "network",
]
