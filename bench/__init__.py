"""The speed benchmark of ../shared/BENCHMARK.md: the harness against Hugging Face Trainer + Optuna.

``python -m bench --cells head-only,top-2,full``; see bench/RESULTS.md for the last run.
"""
