"""Models from other frameworks in and out of symgrad (``pip install 'symgrad[torch]'``).

* :func:`from_torch`: a PyTorch ``nn.Sequential`` → ``(net, params)``, with ``params.names``
  giving each parameter's ``state_dict`` key; :func:`to_torch`: the reverse;
* :func:`load_weights`: a network's weights from ``.npz`` or a ``state_dict`` file, never
  unpickling arbitrary objects;
* :func:`~symgrad.interop.pytorch.module_gradients`: a module's own autograd gradients, which
  :func:`~symgrad.check_gradients` compares with the closed forms when given a module.

PyTorch is imported only when a function that needs it runs: this package imports without it.
It sits above :mod:`symgrad.numeric` and below :mod:`symgrad.testing` (the layers contract in
pyproject.toml).

>>> from symgrad.interop import Parameters
>>> Parameters({"W1": [[1.0]]}, names={"W1": "0.weight"}).names
{'W1': '0.weight'}
"""

from symgrad.interop._common import INSTALL_HINT, Parameters, is_torch_module
from symgrad.interop.pytorch import SUPPORTED_MODULES, from_torch, module_gradients, residual_module, to_torch
from symgrad.interop.weights import WEIGHT_SUFFIXES, load_weights

__all__ = ["from_torch", "to_torch", "load_weights", "module_gradients", "residual_module", "Parameters", "is_torch_module",
           "SUPPORTED_MODULES", "WEIGHT_SUFFIXES", "INSTALL_HINT"]
