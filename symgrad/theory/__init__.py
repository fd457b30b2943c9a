"""The typical case at initialisation: :mod:`~symgrad.theory.meanfield` (signal propagation in wide
dense networks: q*, χ₁, depth scales, the critical line, critical gains; growth rates of chains),
:mod:`~symgrad.theory.worst_case` (the per-layer bound |w|·sup|φ'|) and, where present,
:mod:`~symgrad.theory.montecarlo` (the wide-network check).  Submodules load on first use.

>>> from symgrad import theory
>>> theory.meanfield.phase("relu", 2, 0)
'critical'
"""

from pathlib import Path as _Path

import lazy_loader as _lazy

# Only the submodules that exist are attached (montecarlo arrives with its own change).
__getattr__, __dir__, __all__ = _lazy.attach(
    __name__, submodules=[m for m in ("meanfield", "montecarlo", "worst_case") if (_Path(__file__).parent / (m + ".py")).exists()])
