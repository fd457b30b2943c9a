"""pytest: the PyTorch examples in these docstrings run only where PyTorch is installed (the
``torch`` extra; the ``test`` extra installs it, so the project's own suite always runs them)."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("torch") is not None else ["pytorch.py"]
