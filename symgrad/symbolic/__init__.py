"""The symbolic layer: networks and their closed-form gradient chains.

* :mod:`~symgrad.symbolic.networks`: :class:`Chain` and :class:`Network` (symbols, forward
  expressions, the composed cost);
* :mod:`~symgrad.symbolic.derivation`: :class:`Gradient`, built from local factors in time linear
  in depth, never composed into one expression and never simplified;
* :mod:`~symgrad.symbolic.depth`: the closed form at a symbolic depth ``L`` and layer ``j``;
* :mod:`~symgrad.symbolic.build`: the constructors :func:`chain` and :func:`network`;
* :mod:`~symgrad.symbolic.verify`: the exact check of a closed form against ``sympy.diff``.
"""

from symgrad.symbolic.build import chain, network
from symgrad.symbolic.depth import SymbolicChain, SymbolicGradient
from symgrad.symbolic.derivation import Gradient
from symgrad.symbolic.networks import MAX_COMPOSE_DEPTH, MAX_DEPTH, MAX_WIDTH, Chain, Network
from symgrad.symbolic.verify import VerifyResult, verify_gradient

__all__ = ["Chain", "Gradient", "MAX_COMPOSE_DEPTH", "MAX_DEPTH", "MAX_WIDTH", "Network", "SymbolicChain", "SymbolicGradient",
           "VerifyResult", "chain", "network", "verify_gradient"]
