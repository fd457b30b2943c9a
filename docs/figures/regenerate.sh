#!/usr/bin/env bash
# Regenerates the README's figures (docs/figures/*.png) with `symgrad plot`; needs symgrad[plot].
# Usage, from anywhere:  bash docs/figures/regenerate.sh   (PYTHON=.venv/bin/python to pick an interpreter)
# Under a minute on a 2-core machine (the phase diagram's 525 mean-field points and 3 Monte-Carlo checks;
# 20 epochs of training on the digits for figure 5).
# The PNGs carry symgrad's marker, so rerunning replaces them; the same versions give the same bytes.
set -euo pipefail
py="${PYTHON:-python3}"
case "$py" in /*) ;; */*) py="$PWD/$py" ;; esac  # a relative path, made absolute before the cd below
cd "$(dirname "$0")"
plot() { "$py" -m symgrad plot "$@"; }
plot activation --activation sigmoid -o activation-sigmoid.png
plot activation --activation 'z*tanh(z)' -o activation-custom.png
plot gradient-flow --depth 20 --activation sigmoid --samples 200 --seed 0 -o gradient-flow-chain.png
plot gradient-flow --widths 32,32,32,32,32,32,32,32,32,32,32,2 --activation tanh --init xavier --samples 20 --seed 0 -o gradient-flow-dense.png
plot gradient-flow --widths 32,32,32,32,32,32,32,32,32,32,32,2 --activation tanh --init xavier --residual 0.5 --samples 20 --seed 0 \
    -o gradient-flow-residual.png
plot phase-diagram --activation tanh --monte-carlo 0.8:0.05,1.5:0.3,2.5:0.1 -o phase-diagram-tanh.png
plot steep-interval -o steep-interval.png
# Figure 5: Nielsen's experiment on the digits (symgrad.experiments.speed draws it with speed_of_learning_figure).
"$py" -m symgrad experiment speed-of-learning --networks 64,30,30,30,30,10 --epochs 20 --seed 0 -o speed-of-learning.png >/dev/null
