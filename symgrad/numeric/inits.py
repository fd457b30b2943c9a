"""The names of :func:`symgrad.numeric.sample`'s weight initialisations, in one place.

A module of its own with no imports, so that the command line (``symgrad check --init``) lists and
validates them without importing NumPy or SymPy (``symgrad --help`` stays fast).

>>> from symgrad.numeric.inits import INITS
>>> "xavier" in INITS and "he" in INITS
True
"""

__all__ = ["INITS"]

#: The ``init=`` values :func:`symgrad.numeric.sample` accepts (case-insensitive): N(0,1) and
#: U(−1,1) weights, Xavier/Glorot (Glorot & Bengio 2010), He/Kaiming (He et al. 2015), constant.
INITS = ("normal", "uniform", "xavier", "glorot", "xavier_normal", "he", "kaiming", "constant")
