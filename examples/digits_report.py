"""The gradient-flow report of real models: two small MLPs trained for a few epochs on
scikit-learn's digits (8×8 images, 10 classes, bundled with scikit-learn: no download).

Both are [64, 30, 30, 30, 10] with a sigmoid output, Nielsen's quadratic cost on one-hot targets
and plain SGD (mini-batches of 10), as in *Neural Networks and Deep Learning*, ch. 5:

* ``sigmoid``: sigmoid hidden layers, PyTorch's default initialisation (U(±1/√n_in): σ_w² = 1/3);
* ``relu``: ReLU hidden layers, He initialisation (σ_w² = 2), zero biases.

After training, ``symgrad.from_torch`` reads each model and ``symgrad.report`` measures each
layer's speed of learning on 512 held-out images, beside the mean-field prediction and the
worst-case bound, and gives the verdict.

    python examples/digits_report.py                # both reports as text (as in the README)
    python examples/digits_report.py --json         # the same as JSON, one object per model
    python examples/digits_report.py --epochs 1     # quicker

Needs ``pip install 'symgrad[torch]' scikit-learn``.  Fixed seeds, one thread; the figures can
differ in the last digits on another CPU (PyTorch's summation order).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits

import symgrad

MODELS = {"sigmoid": (torch.nn.Sigmoid, "default", 3.0), "relu": (torch.nn.ReLU, "he", 0.5)}


def train(kind: str, epochs: int, seed: int = 0):
    """Train one model; returns (model, held-out inputs, one-hot targets, held-out accuracy)."""
    hidden, init, lr = MODELS[kind]
    torch.manual_seed(seed)
    X, labels = load_digits(return_X_y=True)
    X, Y = X / 16.0, np.eye(10)[labels]                 # pixels in [0, 1]; one-hot targets
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    tr, te = order[:1285], order[1285:]
    model = torch.nn.Sequential(torch.nn.Linear(64, 30), hidden(), torch.nn.Linear(30, 30), hidden(),
                                torch.nn.Linear(30, 30), hidden(), torch.nn.Linear(30, 10), torch.nn.Sigmoid()).double()
    if init == "he":
        for m in model:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    Xt, Yt = torch.from_numpy(X[tr]), torch.from_numpy(Y[tr])
    for _ in range(epochs):
        perm = torch.from_numpy(rng.permutation(len(tr)))
        for i in range(0, len(perm), 10):
            b = perm[i:i + 10]
            opt.zero_grad()
            # Nielsen's quadratic cost C = (1/n) Σ ½‖y − a‖²: symgrad's "quadratic", averaged.
            (0.5 * ((model(Xt[b]) - Yt[b]) ** 2).sum(dim=1).mean()).backward()
            opt.step()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(X[te])).argmax(1).numpy() == labels[te]).mean())
    return model, X[te][:512], Y[te][:512], acc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    for kind in MODELS:
        model, x, y, acc = train(kind, args.epochs)
        net, params = symgrad.from_torch(model, loss="quadratic")
        rep = symgrad.report(net, params, inputs=x, targets=y)
        if args.json:
            out[kind] = {"accuracy": acc, "report": rep.to_dict()}
        else:
            print("== %s hidden layers, %d epochs: held-out accuracy %.3f" % (kind, args.epochs, acc))
            print(rep)
            print()
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
