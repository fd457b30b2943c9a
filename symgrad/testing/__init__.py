"""Testing gradient code against symgrad's closed forms.

* :mod:`~symgrad.testing.gradcheck`: :func:`check_gradients` (closed form vs backprop vs finite
  differences, with error-model tolerances);
* :mod:`~symgrad.testing.properties`: reusable assertions (vanishing, exploding, the chain identity,
  the dense δ bound, the steep interval, a user's ``grad_fn``);
* :mod:`~symgrad.testing.strategies`: Hypothesis strategies for activations, networks and
  parameters in a regime;
* :mod:`~symgrad.testing.pytest_plugin`: opt-in Hypothesis profiles.

Names load on first use (the table is ``symgrad/testing/__init__.pyi``).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
