"""symgrad's pytest plugin, registered through the ``pytest11`` entry point.

It adds:

* Hypothesis profiles ``symgrad-dev`` (fast: 10 examples, no deadline) and ``symgrad-ci``
  (derandomized, no deadline, prints the ``@reproduce_failure`` blob, 100 examples);
* ``--symgrad-profile={dev,ci}`` to pick one.  Without it, ``symgrad-ci`` is loaded when the
  environment variable ``CI`` is set to a true value (``CI=true`` as CI services set it), and
  otherwise Hypothesis' own default (or ``--hypothesis-profile``) is left alone;
* the marker ``symbolic`` for slow symbolic (SymPy) tests: deselect them with
  ``-m "not symbolic"``;
* fixtures: ``symgrad_net`` (a factory for networks that takes ``depth``/``widths``,
  ``activation`` and ``loss`` from the current test's ``@pytest.mark.parametrize`` values) and
  ``symgrad_gradients`` (a session-wide cache of closed-form gradients, so that symbolic work
  is done once, outside ``@given``);
* a ``pytest_runtest_makereport`` hook that keeps a failing Hypothesis example readable under
  ``filterwarnings = error`` (see its docstring).

Importing this module is cheap: SymPy, NumPy and Hypothesis are imported inside the hooks and
fixtures that need them, never at module level.  (Note that the entry point
``symgrad.pytest_plugin`` imports the package ``symgrad`` first, which imports SymPy.)
"""

from __future__ import annotations

import os

import pytest

PROFILES = {"dev": "symgrad-dev", "ci": "symgrad-ci"}
_NETWORK_KEYS = ("depth", "widths", "activation", "loss")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def pytest_addoption(parser):
    group = parser.getgroup("symgrad")
    group.addoption(
        "--symgrad-profile",
        action="store",
        choices=sorted(PROFILES),
        default=None,
        help="Hypothesis profile for symgrad tests: 'dev' (fast, 10 examples) or 'ci' (derandomized, "
             "no deadline, prints reproduction blobs). Default: 'ci' when the CI environment variable is true.",
    )


def register_profiles():
    """Register ``symgrad-dev`` and ``symgrad-ci`` with Hypothesis (idempotent)."""
    from hypothesis import HealthCheck, settings

    settings.register_profile("symgrad-dev", max_examples=10, deadline=None)
    settings.register_profile(
        "symgrad-ci",
        max_examples=100,
        derandomize=True,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


def _chosen_profile(config):
    opt = config.getoption("--symgrad-profile", default=None)
    if opt is not None:
        return PROFILES[opt]
    if config.getoption("--hypothesis-profile", default=None):
        return None  # the user asked Hypothesis directly: respect it
    if _truthy(os.environ.get("CI")):
        return PROFILES["ci"]
    return None


def pytest_configure(config):
    config.addinivalue_line("markers", "symbolic: a slow symbolic (SymPy) test; deselect with -m 'not symbolic'")
    register_profiles()
    profile = _chosen_profile(config)
    if profile is not None:
        from hypothesis import settings

        settings.load_profile(profile)
    config._symgrad_profile = profile


def pytest_report_header(config):
    profile = getattr(config, "_symgrad_profile", None)
    return "symgrad: hypothesis profile %s" % (profile or "unchanged (pass --symgrad-profile=dev|ci)")


@pytest.fixture(scope="session")
def symgrad_gradients():
    """A session-wide cache: ``symgrad_gradients(net, name)`` is ``net.gradient(name)``, derived
    once per (network, name) however many tests and examples ask for it.

    Networks are keyed by their ``repr`` (depth or widths, activation and loss)."""
    cache: dict = {}

    def get(net, name: str):
        key = (repr(net), name)
        if key not in cache:
            cache[key] = net.gradient(name)
        return cache[key]

    get.cache = cache
    return get


@pytest.fixture
def symgrad_net(request):
    """A factory for the network of the current test.

    ``symgrad_net()`` reads ``depth`` (a chain) or ``widths`` (a dense network), ``activation`` and
    ``loss`` from the test's ``@pytest.mark.parametrize`` values; keyword arguments override them.
    The default is a depth-3 sigmoid chain with the quadratic loss.  Networks are cached per
    arguments for the session.

    >>> # @pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
    >>> # def test_decay(symgrad_net):
    >>> #     net = symgrad_net(depth=4)          # chain(4, activation)
    """
    import symgrad

    params = getattr(getattr(request.node, "callspec", None), "params", {})
    base = {k: params[k] for k in _NETWORK_KEYS if k in params}
    store = request.config.__dict__.setdefault("_symgrad_nets", {})

    def make(**overrides):
        unknown = sorted(set(overrides) - set(_NETWORK_KEYS))
        if unknown:
            raise symgrad.InvalidArgument("symgrad_net: unknown arguments %s; known: %s" % (unknown, ", ".join(_NETWORK_KEYS)))
        spec = {**base, **overrides}
        if "depth" in spec and "widths" in spec:
            raise symgrad.InvalidArgument("symgrad_net: give depth (a chain) or widths (a dense network), not both: %r" % (spec,))
        act, loss = spec.get("activation", "sigmoid"), spec.get("loss", "quadratic")
        key = repr(sorted((k, repr(v)) for k, v in spec.items()))
        if key not in store:
            if "widths" in spec:
                store[key] = symgrad.network(list(spec["widths"]), act, loss)
            else:
                store[key] = symgrad.chain(spec.get("depth", 3), act, loss)
        return store[key]

    return make


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Before Hypothesis reports a failing example, import its patch writer with warnings
    silenced.  Under ``filterwarnings = error`` (symgrad's own setting) that import's
    DeprecationWarning (from libcst's dependencies) would otherwise turn a readable test
    failure into a pytest INTERNALERROR that hides the falsifying example."""
    import sys

    if call.excinfo is None or "hypothesis" not in sys.modules or "hypothesis.extra._patching" in sys.modules:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import hypothesis.extra._patching  # noqa: F401
        except ImportError:
            pass
    return None
