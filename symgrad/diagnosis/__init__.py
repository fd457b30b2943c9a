"""Diagnosis of a user's own network: the per-layer gradient-flow report (:mod:`.report`).

It sits above the evaluator (:mod:`symgrad.numeric`) and the theory (:mod:`symgrad.theory`),
whose answers it sets side by side for one network and one batch, and below rendering and the CLI.
"""

from symgrad.diagnosis.report import GradientFlowReport, LayerReport, report

__all__ = ["GradientFlowReport", "LayerReport", "report"]
