"""Experiments that train networks with symgrad's own backprop and measure their gradient flow.

* :mod:`symgrad.experiments.speed` — Nielsen's speed-of-learning experiment (*Neural Networks and
  Deep Learning*, ch. 5) on scikit-learn's bundled 8×8 digits: ‖∂C/∂b^l‖ per hidden layer at
  initialisation and after every epoch, for sigmoid, ReLU and residual networks
  (``symgrad experiment speed-of-learning``).

This layer sits above ``theory`` and ``numeric`` and beside ``render``; scikit-learn (the data)
and tqdm (the progress bar) are imported only when an experiment runs.
"""

__all__ = []
