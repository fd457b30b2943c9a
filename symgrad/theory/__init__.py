"""The typical case at initialisation: :mod:`~symgrad.theory.meanfield` (signal propagation in wide
dense networks: q*, χ₁, depth scales, the critical line; growth rates of chains)."""
