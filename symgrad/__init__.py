"""symgrad: verified gradient-flow analysis for deep networks.

The folders are the layers, and each imports only from the layers below it (checked by
``lint-imports``, see the README's architecture section):

* :mod:`symgrad.spec`: what a network is made of: activations (one home each), losses, the
  safe string parser;
* :mod:`symgrad.symbolic`: networks and their closed-form gradient chains, linear in depth;
  symbolic depth; the exact check against ``sympy.diff``;
* :mod:`symgrad.numeric`: the NumPy evaluator (inputs, sampling, chain kernels, compiled
  kernels, dense networks, log space, closed forms evaluated);
* :mod:`symgrad.theory`: the typical case at initialisation (mean field);
* :mod:`symgrad.testing`: gradient checks, assertions, Hypothesis strategies, the pytest plugin;
* :mod:`symgrad.proof`: the proof engine and the catalogue of claims;
* :mod:`symgrad.render`: LaTeX derivations;
* :mod:`symgrad.cli` on top.

The top level holds about twenty names (listed in ``symgrad/__init__.pyi``), loaded on first use
so that ``import symgrad`` and the pytest plugin stay cheap.

>>> import symgrad
>>> net = symgrad.chain(3)
>>> net.gradient("b1")
Gradient(∂C/∂b1 = sigmoid'(z1)*w2*sigmoid'(z2)*w3*sigmoid'(z3)*(a3 - y))
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)

from symgrad._version import __version__  # noqa: E402
