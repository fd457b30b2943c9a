# The public surface of symgrad, in one table.  symgrad/__init__.py loads each name from here on
# first use (lazy_loader.attach_stub), and editors and type checkers read the same file.
from . import cli, diagnosis, interop, numeric, proof, render, spec, symbolic, testing, theory
from .diagnosis.report import report
from .errors import BudgetExceeded, GradientCheckError, InvalidArgument, SymgradError
from .interop.pytorch import from_torch, to_torch
from .numeric.closed_form import evaluate_gradient
from .numeric.evaluator import backprop, forward
from .numeric.result import BackpropResult
from .numeric.sampling import sample
from .spec.activations import BUILTIN_ACTIVATIONS, Activation, activation, custom_activation
from .spec.losses import BUILTIN_LOSSES, loss
from .symbolic.build import chain, network
from .symbolic.derivation import Gradient
from .symbolic.verify import verify_gradient
from .testing.gradcheck import check_gradients
from .theory import meanfield

__version__: str

__all__ = [
    "Activation", "BUILTIN_ACTIVATIONS", "BUILTIN_LOSSES", "BackpropResult", "BudgetExceeded", "Gradient",
    "GradientCheckError", "InvalidArgument", "SymgradError", "activation", "backprop", "chain", "check_gradients",
    "custom_activation", "evaluate_gradient", "forward", "from_torch", "loss", "network", "report", "sample", "to_torch",
    "verify_gradient", "cli", "diagnosis", "interop", "numeric", "proof", "render", "spec", "symbolic", "testing", "theory", "meanfield",
]
