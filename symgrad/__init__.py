"""symgrad: verified gradient-flow analysis for deep networks.

The package reads in one direction:

* specification: :mod:`symgrad.activations`, :mod:`symgrad.losses`, :mod:`symgrad.networks`;
* symbolic derivation: :mod:`symgrad.derivation` (closed-form gradient chains, linear in depth);
* numeric evaluation: :mod:`symgrad.numeric` (stable backprop, log space, gradient checks);
* LaTeX derivations: :mod:`symgrad.latex`;
* properties: :mod:`symgrad.strategies` (Hypothesis strategies), :mod:`symgrad.properties`
  (reusable assertions), :mod:`symgrad.pytest_plugin`;
* proofs: :mod:`symgrad.theorems` (the engine) and :mod:`symgrad.catalogue` (the claims);
* the command line on top: :mod:`symgrad.cli`.

>>> import symgrad
>>> net = symgrad.chain(3)
>>> net.gradient("b1")
Gradient(∂C/∂b1 = sigmoid'(z1)*w2*sigmoid'(z2)*w3*sigmoid'(z3)*(a3 - y))
"""

from importlib import import_module as _import_module

from .errors import BudgetExceeded, GradientCheckError, InvalidArgument, SymgradError

# The public names and the module each lives in.  They are imported on first use (PEP 562), so
# ``import symgrad`` (and loading the pytest plugin, which pytest does at start-up) stays cheap:
# SymPy, NumPy and Hypothesis load only when something that needs them is touched.
_LAZY = {
    **dict.fromkeys(["Activation", "BUILTIN_ACTIVATIONS", "DerivativeBound", "activation", "custom_activation"], "activations"),
    **dict.fromkeys(["Gradient", "SymbolicChain", "SymbolicGradient"], "derivation"),
    **dict.fromkeys(["BUILTIN_LOSSES", "Loss", "loss"], "losses"),
    **dict.fromkeys(["MAX_COMPOSE_DEPTH", "MAX_DEPTH", "Chain", "Network", "chain", "network"], "networks"),
    **dict.fromkeys(
        ["BackpropResult", "backprop", "evaluate_gradient", "forward", "sample"],
        "numeric",
    ),
    **dict.fromkeys(["TOLERANCES", "GradientCheckReport", "PrecisionWarning", "check_gradients"], "gradcheck"),
}
_SUBMODULES = ("activations", "losses", "networks", "derivation", "numeric", "gradcheck", "latex", "strategies", "properties",
               "theorems", "catalogue", "cli")


def __getattr__(name):
    if name in _LAZY:
        value = getattr(_import_module("." + _LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = _import_module("." + name, __name__)
    else:
        raise AttributeError("module 'symgrad' has no attribute %r" % name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__version__ = "0.1.0"

__all__ = [
    "Activation",
    "BackpropResult",
    "BudgetExceeded",
    "GradientCheckReport",
    "PrecisionWarning",
    "TOLERANCES",
    "backprop",
    "check_gradients",
    "evaluate_gradient",
    "forward",
    "catalogue",
    "latex",
    "properties",
    "sample",
    "strategies",
    "theorems",
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
