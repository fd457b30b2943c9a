r"""Nielsen's speed-of-learning experiment, on real data, trained with symgrad's own backprop.

Nielsen (*Neural Networks and Deep Learning*, ch. 5, "The vanishing gradient problem") trains
sigmoid networks on MNIST and measures the *speed of learning* of hidden layer l as ‖∂C/∂b^l‖,
the Euclidean norm of the gradient of the mean cost C over 1,000 training images with respect to
that layer's biases.  At initialisation, for [784, 30, 30, 30, 10], he finds 0.012, 0.060 and
0.283: the first hidden layer learns about 24× more slowly than the last, and in deeper networks
the gap grows (the product of the factors w σ'(z) ≤ ¼·|w| along the path, ch. 5 eq. 122).

MNIST cannot be downloaded here; scikit-learn bundles the 8×8 digits (1,797 images, 10 classes),
so the input layer has 64 units.  The set-up follows Nielsen's ch. 5 except for the data:

* networks [64, 30, 10], [64, 30, 30, 10], [64, 30, 30, 30, 10], [64, 30, 30, 30, 30, 10];
  hidden layers of ``activation`` (default sigmoid), a sigmoid output and the cross-entropy cost
  C = −Σ_j [y_j ln a_j + (1 − y_j) ln(1 − a_j)] per image (Nielsen ch. 3, eq. 63), whose δ^L is
  a^L − y (eq. 66);
* ``init="nielsen"``: weights N(0, 1/n_in) and biases N(0, 1) (ch. 3, "Weight initialization");
  ``init="he"``: weights N(0, 2/n_in) and biases 0 (He et al. 2015, for ReLU);
* pixels divided by 16 (so in [0, 1]), one-hot targets, a split into training and test images
  drawn from the seed, and the first ``eval_size`` images of the (shuffled) training set as the
  fixed evaluation batch on which ‖∂C/∂b^l‖ is measured, C being the mean cost over that batch;
* mini-batch SGD (ch. 1, eqs. 20–21): ``p ← p − (η/m) Σ_{x in batch} ∂C_x/∂p`` with the batch
  reshuffled every epoch, no regularisation.

The gradients come from :func:`symgrad.numeric.shared.backprop_shared` (one weight matrix per
layer shared by the batch; eqs. BP1–BP4 in matrix form), for residual networks too
(``residual=α``: ``a^l = a^{l−1} + α φ(z^l)`` on every hidden layer after the first whose width
equals its predecessor's; the backward pass carries ∂C/∂a^l through the skip).

Randomness: one :class:`numpy.random.SeedSequence` from ``seed`` gives the split; each network's
initial weights and its SGD shuffles come from ``SeedSequence(seed, spawn_key=widths)``, so a
network gets the same numbers whichever other networks run beside it.  Same seed, same numbers.

>>> r = speed_of_learning([[64, 30, 30, 10]], epochs=1, eval_size=100, seed=0)
>>> r.runs[0].norms.shape  # (epochs + 1, hidden layers): at initialisation, after epoch 1
(2, 2)
>>> bool(r.runs[0].norms[0, 0] < r.runs[0].norms[0, 1])  # the first hidden layer learns more slowly
True
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symgrad.errors import InvalidArgument
from symgrad.numeric.evaluator import forward
from symgrad.numeric.shared import backprop_shared
from symgrad.symbolic.build import network
from symgrad._progress import progress_bar

__all__ = ["NIELSEN_MNIST", "NETWORKS", "SpeedOfLearning", "SpeedRun", "load_digits_split", "speed_of_learning"]

#: Nielsen's networks of ch. 5, with the digits' 64 inputs in place of MNIST's 784.
NETWORKS = ((64, 30, 10), (64, 30, 30, 10), (64, 30, 30, 30, 10), (64, 30, 30, 30, 30, 10))
#: Nielsen's figures on MNIST at initialisation (ch. 5): ‖∂C/∂b^l‖ of the hidden layers of
#: [784, 30, 30, 30, 10], sigmoid, weights N(0, 1/n_in), biases N(0, 1), over 1,000 training images.
NIELSEN_MNIST = {"widths": (784, 30, 30, 30, 10), "init_norms": (0.012, 0.060, 0.283)}
#: scikit-learn's digits: 8×8 images, 10 classes.
N_IN, N_OUT = 64, 10
INSTALL = "pip install 'symgrad[experiment]'"
INITS = ("nielsen", "he")


@dataclass(frozen=True)
class SpeedRun:
    """One trained network of :func:`speed_of_learning`.

    * ``widths``: ``(64, n1, ..., 10)``; ``residual``: α per layer (None for a plain layer);
    * ``norms``: (epochs + 1, hidden layers) — row 0 at initialisation, row e after epoch e;
      column l − 1 is ‖∂C/∂b^l‖ of hidden layer l (C the mean cost over the evaluation batch;
      units of cost per unit bias);
    * ``accuracy``: (epochs + 1,) — the fraction of test images classified right (argmax);
    * ``seconds``: wall-clock time of the run.
    """

    widths: tuple
    residual: tuple
    norms: np.ndarray
    accuracy: np.ndarray
    seconds: float

    @property
    def hidden(self) -> int:
        """The number of hidden layers."""
        return len(self.widths) - 2

    def ratio(self, epoch: int = 0) -> float:
        """‖∂C/∂b^1‖ / ‖∂C/∂b^{L−1}‖ (first over last hidden layer) at ``epoch`` (−1: the last)."""
        row = self.norms[epoch]
        return float(row[0] / row[-1]) if row[-1] > 0 else math.inf

    def order(self, epoch: int = 0) -> str:
        """The hidden layers from slowest to fastest at ``epoch``, e.g. ``"1 < 2 < 3"``."""
        row = self.norms[epoch]
        return " < ".join(str(int(i) + 1) for i in np.argsort(row, kind="stable"))

    def as_dict(self) -> dict:
        """JSON-ready: widths, residual, norms (list per epoch), accuracy, ratios, orders, seconds."""
        return {"widths": list(self.widths), "residual": list(self.residual), "norms": self.norms.tolist(),
                "test_accuracy": self.accuracy.tolist(), "ratio_first_last": {"init": self.ratio(0), "final": self.ratio(-1)},
                "order": {"init": self.order(0), "final": self.order(-1)}, "seconds": self.seconds}


@dataclass(frozen=True)
class SpeedOfLearning:
    """What :func:`speed_of_learning` returns: the runs and the settings that produced them."""

    runs: tuple
    activation: str
    init: str
    alpha: float | None
    epochs: int
    eta: float
    batch_size: int
    eval_size: int
    seed: int
    train_size: int
    test_size: int

    def describe(self) -> str:
        """One line: what was trained, how."""
        init = ("weights N(0,1/n_in), biases N(0,1)" if self.init == "nielsen" else "weights N(0,2/n_in) (He), biases 0")
        res = "" if self.alpha is None else ", residual alpha=%g on hidden layers 2.." % self.alpha
        return ("%s hidden layers, sigmoid output, cross-entropy; %s%s; SGD eta=%g, mini-batch %d, %d epoch%s; "
                "digits %d train / %d test; |dC/db| of the mean cost over %d training images; seed %d"
                % (self.activation, init, res, self.eta, self.batch_size, self.epochs, "" if self.epochs == 1 else "s",
                   self.train_size, self.test_size, self.eval_size, self.seed))

    def table(self) -> str:
        """The text table: per network, ‖∂C/∂b^l‖ per hidden layer at initialisation and after the
        last epoch, the layers from slowest to fastest, first/last hidden layer and test accuracy;
        then Nielsen's MNIST figures for comparison."""
        hmax = max(r.hidden for r in self.runs)
        head = "%-33s %-6s" % ("network", "epoch") + "".join("%10s" % ("layer %d" % (l + 1)) for l in range(hmax))
        head += "  %-18s %11s %9s" % ("slowest->fastest", "first/last", "test acc")
        lines = ["Speed of learning |dC/db^l| per hidden layer: " + self.describe(), head]
        for r in self.runs:
            name = "[%s]" % ",".join(map(str, r.widths))
            if any(a is not None for a in r.residual):
                name += " res"
            for label, e in (("init", 0), ("final", -1)):
                if label == "final" and self.epochs == 0:
                    continue
                cells = "".join("%10.4g" % v for v in r.norms[e]) + " " * 10 * (hmax - r.hidden)
                lines.append("%-33s %-6s%s  %-18s %11.3g %8.1f%%" % (name if label == "init" else "", label, cells, r.order(e),
                                                                     r.ratio(e), 100 * r.accuracy[e]))
        ref = NIELSEN_MNIST["init_norms"]
        lines.append("%-33s %-6s" % ("Nielsen, MNIST [784,30,30,30,10]", "init") + "".join("%10.4g" % v for v in ref)
                     + " " * 10 * max(0, hmax - 3) + "  %-18s %11.3g" % ("1 < 2 < 3", ref[0] / ref[-1]))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        """JSON-ready: the settings, each run's :meth:`SpeedRun.as_dict`, and Nielsen's figures."""
        return {"settings": {"activation": self.activation, "init": self.init, "residual": self.alpha, "epochs": self.epochs,
                             "eta": self.eta, "batch_size": self.batch_size, "eval_size": self.eval_size, "seed": self.seed,
                             "train_size": self.train_size, "test_size": self.test_size},
                "runs": [r.as_dict() for r in self.runs],
                "nielsen_mnist": {"widths": list(NIELSEN_MNIST["widths"]), "init_norms": list(NIELSEN_MNIST["init_norms"])}}

    def figure_norms(self, index: int = -1) -> dict:
        """``{1: [‖∂C/∂b^1‖ at init, after epoch 1, ...], 2: ...}`` of run ``index`` (default the
        last, the deepest of the defaults): the input of
        :func:`symgrad.render.plots.speed_of_learning_figure`."""
        r = self.runs[index]
        return {l + 1: r.norms[:, l].tolist() for l in range(r.hidden)}

    def figure_title(self, index: int = -1) -> str:
        """The figure's title: the network, activation, init and training set-up."""
        r = self.runs[index]
        res = "" if self.alpha is None else ", residual α=%g" % self.alpha
        return ("speed of learning on the 8×8 digits: [%s], %s, %s init%s\nSGD η=%g, mini-batch %d; ‖∂C/∂b‖ over %d training images, seed %d"
                % (",".join(map(str, r.widths)), self.activation, "Nielsen" if self.init == "nielsen" else "He", res, self.eta,
                   self.batch_size, self.eval_size, self.seed))


def load_digits_split(seed: int = 0, test_size: int = 497):
    """scikit-learn's 8×8 digits as ``(x_train, y_train, x_test, y_test)``: pixels / 16 (in [0, 1],
    shape (n, 64)), one-hot float targets (n, 10), the images permuted by ``seed`` and the last
    ``test_size`` held out.  No download (the data ship with scikit-learn).

    Errors: :class:`~symgrad.InvalidArgument` naming ``pip install 'symgrad[experiment]'`` when
    scikit-learn is missing, and for a ``test_size`` that leaves no training or no test image.

    >>> xtr, ytr, xte, yte = load_digits_split(0)
    >>> xtr.shape, yte.shape, float(xtr.max())
    ((1300, 64), (497, 10), 1.0)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InvalidArgument("the digits data come with scikit-learn, which is not installed; install it with: %s" % INSTALL) from None
    d = load_digits()
    n = len(d.target)
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Integral) or not 1 <= test_size < n:
        raise InvalidArgument("test_size=%r must be an int in [1, %d), e.g. 497" % (test_size, n))
    x = np.asarray(d.data, dtype=np.float64) / 16.0
    y = np.eye(N_OUT)[d.target]
    perm = np.random.default_rng(np.random.SeedSequence(int(seed))).permutation(n)
    tr, te = perm[: n - test_size], perm[n - test_size:]
    return x[tr], y[tr], x[te], y[te]




def _check_int(name, v, minimum, example):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise InvalidArgument("%s=%r must be an int >= %d, e.g. %s" % (name, v, minimum, example))
    return int(v)


def _check_networks(networks) -> list:
    if isinstance(networks, (str, bytes)) or not isinstance(networks, Sequence) or len(networks) == 0:
        raise InvalidArgument("networks must be a non-empty list of width lists, e.g. [[64, 30, 10], [64, 30, 30, 10]]")
    out = []
    for k, w in enumerate(networks):
        if isinstance(w, (str, bytes)) or not isinstance(w, Sequence) or len(w) < 3:
            raise InvalidArgument("networks[%d] = %r must list at least 3 widths [64, hidden..., 10], e.g. [64, 30, 10]" % (k, w))
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in w):
            raise InvalidArgument("networks[%d] = %r must hold positive ints, e.g. [64, 30, 10]" % (k, w))
        w = tuple(int(v) for v in w)
        if w[0] != N_IN or w[-1] != N_OUT:
            raise InvalidArgument("networks[%d] = %s: the digits need %d inputs and %d outputs, e.g. [64, 30, 10]"
                                  % (k, list(w), N_IN, N_OUT))
        out.append(w)
    return out


def _residual_layers(widths, alpha):
    """α on every hidden layer l ≥ 2 whose width equals its predecessor's, None elsewhere."""
    L = len(widths) - 1
    if alpha is None:
        return (None,) * L
    return tuple(alpha if 2 <= l < L and widths[l] == widths[l - 1] else None for l in range(1, L + 1))


def _init_params(widths, init, rng) -> dict:
    p = {}
    for l in range(1, len(widths)):
        n_in, n_out = widths[l - 1], widths[l]
        scale = math.sqrt((1.0 if init == "nielsen" else 2.0) / n_in)
        p["W%d" % l] = rng.standard_normal((n_out, n_in)) * scale
        p["b%d" % l] = rng.standard_normal(n_out) if init == "nielsen" else np.zeros(n_out)
    return p


def _grads(net, params, x, y) -> dict:
    """The gradients of the cost summed over the batch (x, y): symgrad's shared-weight pass."""
    return backprop_shared(net, {**params, "a0": x, "y": y}).grads


def _bias_norms(net, params, x, y) -> np.ndarray:
    """‖∂C/∂b^l‖ of each hidden layer, C the mean cost over the batch (x, y)."""
    L = net.depth
    g = _grads(net, params, x, y)
    return np.array([np.linalg.norm(g["b%d" % l]) / x.shape[0] for l in range(1, L)])


def _accuracy(net, params, x, y) -> float:
    a = forward(net, {**params, "a0": x, "y": y})["a%d" % net.depth]
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(y, axis=1)))


def speed_of_learning(networks=NETWORKS, *, activation: str = "sigmoid", init: str = "nielsen", residual=None,
                      epochs: int = 20, eta: float = 0.1, batch_size: int = 10, eval_size: int = 1000, seed: int = 0,
                      test_size: int = 497, progress=False) -> SpeedOfLearning:
    """Train each network of ``networks`` on the digits and record its speed of learning (module docstring).

    * ``networks``: width lists ``[64, n1, ..., 10]`` (default :data:`NETWORKS`);
    * ``activation``: the hidden layers' activation (a built-in name, e.g. ``"sigmoid"``,
      ``"relu"``); the output is always sigmoid with the cross-entropy cost;
    * ``init``: ``"nielsen"`` (default: N(0, 1/n_in) weights, N(0, 1) biases) or ``"he"``
      (N(0, 2/n_in), biases 0: He et al. 2015's choice for ReLU);
    * ``residual``: None, or α (a finite real) for ``a^l = a^{l−1} + α φ(z^l)`` on each hidden
      layer after the first whose width equals its predecessor's;
    * ``epochs`` (≥ 0), ``eta`` (> 0, the learning rate), ``batch_size`` (≥ 1), ``eval_size``
      (images of the training set on which ‖∂C/∂b^l‖ is measured), ``seed`` (≥ 0),
      ``test_size`` (held-out images);
    * ``progress``: True draws a bar on stderr (tqdm, on a terminal); a callable is called with no
      argument after each epoch of each network; False (default): nothing.

    Returns :class:`SpeedOfLearning`.  Cost: about 0.1–0.3 s per epoch per network on one core.
    Errors: :class:`~symgrad.InvalidArgument` for each bad argument (naming it), a missing
    scikit-learn (naming the install command), and a pass that overflows (from backprop: lower
    ``eta``).  Source of the set-up: Nielsen, *Neural Networks and Deep Learning*, ch. 5.

    >>> r = speed_of_learning([[64, 30, 10]], epochs=0, eval_size=50)
    >>> r.runs[0].norms.shape, r.runs[0].accuracy.shape
    ((1, 1), (1,))
    """
    nets = _check_networks(networks)
    if not isinstance(activation, str) or not activation.strip():
        raise InvalidArgument("activation=%r must be a built-in name such as 'sigmoid' or 'relu'" % (activation,))
    if init not in INITS:
        raise InvalidArgument("init=%r: expected one of %s" % (init, ", ".join(map(repr, INITS))))
    if residual is not None:
        if isinstance(residual, bool) or not isinstance(residual, numbers.Real) or not math.isfinite(float(residual)):
            raise InvalidArgument("residual=%r must be None or a finite real alpha, e.g. residual=1.0" % (residual,))
        residual = float(residual)
    epochs = _check_int("epochs", epochs, 0, "epochs=20")
    batch_size = _check_int("batch_size", batch_size, 1, "batch_size=10")
    eval_size = _check_int("eval_size", eval_size, 1, "eval_size=1000")
    seed = _check_int("seed", seed, 0, "seed=0")
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not (math.isfinite(float(eta)) and eta > 0):
        raise InvalidArgument("eta=%r must be a finite learning rate > 0, e.g. eta=0.1" % (eta,))
    eta = float(eta)
    xtr, ytr, xte, yte = load_digits_split(seed, test_size)
    if eval_size > len(xtr):
        raise InvalidArgument("eval_size=%d exceeds the %d training images; pass at most %d" % (eval_size, len(xtr), len(xtr)))
    xev, yev = xtr[:eval_size], ytr[:eval_size]
    bar = progress_bar(len(nets) * epochs, "training") if progress is True else None
    try:
        runs = [_train(w, activation, init, residual, epochs, eta, batch_size, seed, xtr, ytr, xte, yte, xev, yev,
                       bar.update if bar is not None else (progress or None)) for w in nets]
    finally:
        if bar is not None:
            bar.close()
    return SpeedOfLearning(tuple(runs), activation, init, residual, epochs, eta, batch_size, eval_size, seed, len(xtr), len(xte))


def _train(widths, activation, init, residual, epochs, eta, batch_size, seed, xtr, ytr, xte, yte, xev, yev, progress) -> SpeedRun:
    """One network: initialise from (seed, widths), record the norms, train ``epochs`` epochs."""
    start = time.perf_counter()
    res = _residual_layers(widths, residual)
    acts = [activation] * (len(widths) - 2) + ["sigmoid"]
    net = network(list(widths), acts, "cross_entropy", residual=list(res) if residual is not None else None)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=widths))
    params = _init_params(widths, init, rng)
    norms, acc = [_bias_norms(net, params, xev, yev)], [_accuracy(net, params, xte, yte)]
    n = len(xtr)
    for _ in range(epochs):
        order = rng.permutation(n)
        for k in range(0, n, batch_size):
            idx = order[k:k + batch_size]
            g = _grads(net, params, xtr[idx], ytr[idx])
            step = eta / len(idx)
            for name, v in g.items():
                params[name] = params[name] - step * v
        norms.append(_bias_norms(net, params, xev, yev))
        acc.append(_accuracy(net, params, xte, yte))
        if progress is not None:
            progress()
    return SpeedRun(widths, res, np.array(norms), np.array(acc), time.perf_counter() - start)
