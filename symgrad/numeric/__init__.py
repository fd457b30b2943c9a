"""The NumPy evaluator: parameters, forward and backward passes, log space, closed forms evaluated.

Modules: :mod:`~symgrad.numeric.inputs` (validation, memory), :mod:`~symgrad.numeric.sampling`,
:mod:`~symgrad.numeric.chain` (chain kernels), :mod:`~symgrad.numeric.compiled` (the numba kernel),
:mod:`~symgrad.numeric.dense`, :mod:`~symgrad.numeric.output` (δ^L and the cost),
:mod:`~symgrad.numeric.logspace`, :mod:`~symgrad.numeric.evaluator` (:func:`backprop`, :func:`forward`) and
:mod:`~symgrad.numeric.closed_form` (:func:`evaluate_gradient`).

Parameters
    A mapping from the network's own names to float arrays, like a PyTorch ``state_dict``:
    ``a0``, ``y``, ``w1..wL``, ``b1..bL`` for a chain (scalars); ``a0`` (n0,), ``y`` (nL,),
    ``W1..WL`` (n_l, n_{l-1}), ``b1..bL`` (n_l,) for a dense network.  Any entry may carry one
    leading batch axis of a common size B; unbatched entries broadcast.  Each batch index is an
    independent network evaluation (as with ``torch.func.vmap``): every gradient is the
    per-sample ``∂C_i/∂p``, with shape ``(B,) + shape(p)`` as soon as anything is batched.
    :func:`sample` draws parameters; ``BackpropResult.total(name)`` sums a gradient over the batch.
    A residual network whose scale α is a ``sympy.Symbol`` takes its value as one float under
    the symbol's name (``params["alpha"] = 0.5``; missing, non-float or non-finite:
    :class:`InvalidArgument` naming it); residual layers ``a_l = a_{l−1} + α_l φ(z_l)`` are covered by
    every path below (:mod:`~symgrad.numeric.residual`).

Validation (nothing is computed on garbage)
    A missing or unknown name, a wrong shape, inconsistent batch sizes, nan or ±inf, and a
    non-float dtype raise :class:`InvalidArgument` naming the parameter and the expected shape.
    Integer and bool inputs are *rejected*, not converted (write ``1.0``, or ``x.astype(float)``).
    float64 and float32 are accepted; the computation runs in float32 only if every entry is.

What "no inf, no nan" means
    For finite inputs, no ``RuntimeWarning`` is ever emitted and no nan is ever returned.  The
    forward values z_l, a_l are finite: z is computed also where the product w·a overflows but
    z does not (w = 1e308, a = 2, b = −1e308 gives z = 1e308); if an exact pre-activation exceeds
    the range of the dtype (1.8e308, or 3.4e38 for float32) :class:`InvalidArgument` is raised,
    naming the dtype, the layer and the batch index.
    Linear-space gradients stay linear: a block whose products overflow or underflow, or where a
    unit saturates, is redone with every product carried as m·2^k and rounded once at the end, so
    a representable gradient comes back to a few ulps (1e300 as 1e300, not through exp(log)), a
    factor that underflows (σ'(−800), tanh'(400)) is taken from its logarithm, 10^399·0 is 0,
    and cross-entropy's σ(z_L) − y is formed from the logit (σ(40) − 1 = −4.2e-18, not 0).
    A linear-space gradient is ±inf only as the correctly rounded value of a gradient whose
    exact magnitude exceeds 1.8e308 (an exploding gradient), and 0 where it underflows; with
    ``log_space=True`` the same gradient's ``log|∂C/∂p|`` is finite, and −inf exactly where the
    gradient is exactly zero in float64 arithmetic (a dead ReLU, ``a_{j-1} = 0``, ``a_L = y``, w = 0;
    the sign is then 0) or its log-magnitude is itself below −1.8e308 (|z| ~ 1e308 for σ' or
    tanh', z < −1.9e154 for GELU; the sign is kept).

Memory
    :func:`sample` and :func:`backprop` estimate the bytes they will allocate before allocating
    and raise :class:`InvalidArgument` with the estimate and the fix when it exceeds
    ``MEMORY_FRACTION`` (80%) of the memory available now (``MemAvailable``).

>>> import symgrad
>>> from symgrad.numeric import backprop, sample
>>> net = symgrad.chain(3)
>>> params = sample(net, 4, seed=0)
>>> res = backprop(net, params)
>>> res.grads["b1"].shape, res.layer_norms.shape
((4,), (4, 3))
"""

# Loaded on first use (as the top level is), so that ``symgrad.numeric.inits`` is importable
# without NumPy and SymPy (the command line's ``--help``).
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submodules=["chain", "closed_form", "compiled", "dense", "evaluator", "inits", "inputs", "logspace",
                "output", "residual", "result", "sampling"],
    submod_attrs={
        "closed_form": ["evaluate_gradient", "evaluate_gradients"],
        "evaluator": ["backprop", "forward"],
        "inits": ["INITS"],
        "result": ["BackpropResult", "SignLog"],
        "sampling": ["sample"],
    },
)
__all__ = ["BackpropResult", "INITS", "SignLog", "backprop", "evaluate_gradient", "evaluate_gradients", "forward", "sample"]
