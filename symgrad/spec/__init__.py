"""The specification layer: what a network is made of.

* :mod:`~symgrad.spec.activations`: every activation's one home (:class:`Activation`: its SymPy
  φ and φ', LaTeX name, the sup of |φ'| and where it is attained, the range of φ', stable NumPy
  φ, φ' and log|φ'|, the kink convention);
* :mod:`~symgrad.spec.losses`: the costs C(a_L, y);
* :mod:`~symgrad.spec._parse`: the AST-whitelist parser for users' expression strings.

Imports only :mod:`symgrad.errors` and the budget; everything else builds on it.
"""

from symgrad.spec.activations import BUILTIN_ACTIVATIONS, Activation, DerivativeBound, activation, custom_activation
from symgrad.spec.losses import BUILTIN_LOSSES, Loss, loss

__all__ = ["BUILTIN_ACTIVATIONS", "BUILTIN_LOSSES", "Activation", "DerivativeBound", "Loss", "activation", "custom_activation", "loss"]
