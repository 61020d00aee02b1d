"""Ablation research harness for fine-tuning transformer text classifiers.

Data flows one way: study file -> grid of cells -> runs (data, model and freezing,
training loop, Optuna) -> append-only store -> statistics -> report.
"""

from harness.store import load_runs

__all__ = ["load_runs"]
