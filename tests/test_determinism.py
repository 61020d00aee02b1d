"""Determinism on the CPU: the same study and seeds give the same records, bit for bit, run after run.

(On a GPU they need not: the README, "What happens when things go wrong", says what is and is not.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.display import Display
from harness.grid import expand
from harness.runner import prepare, run_one, run_study
from harness.study import load_study

SMOKE = Path(__file__).parents[1] / "studies" / "smoke.toml"
# the smoke study cut to one size: a classifier-only cell (cached states) and a top-block cell (dropout)
SMALL = ["grid.data_sizes=[64]", "grid.epochs=[2]", "search.trials=2", "seeds.evaluate=[1, 2]"]
TIMING = ("seconds", "finished")  # wall-clock fields, the only ones allowed to differ


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.mark.slow
def test_same_study_and_seeds_give_identical_records(tmp_path):
    study = load_study(SMOKE, SMALL)
    first, second = (without_timing(run_study(study, str(SMOKE), tmp_path / name, Display(enabled=False)))
                     for name in ("first", "second"))
    assert len(first) == 2 * (2 + 2)  # 2 cells x (2 trials + 2 evaluation seeds)
    assert first == second  # metrics, histories, per-example predictions, tuned parameters
    evals = [r for r in first if r["role"] == "eval" and r["status"] == "ok"]
    assert evals, "no evaluation run finished ok"
    by_seed = {}
    for r in first:
        if r["role"] == "eval":
            by_seed.setdefault(r["cell"], []).append(r["test"].get("prob"))
    assert all(a != b for a, b in by_seed.values()), "the evaluation seed should change the run"


@pytest.mark.slow
def test_a_run_does_not_depend_on_what_ran_before_it_in_the_process(tmp_path):
    """After a resume the first run of a process is a different one: its result must not change.

    Building the frozen-prefix cache loads a model, which reseeds torch; the cache is built
    by whichever run needs it first.
    """
    study = load_study(SMOKE, SMALL)
    cells = {c.freeze: c for c in expand(study)}
    display = Display(enabled=False)

    def run(ctx, freeze, seed):
        display.start_run(f"freeze {freeze} seed {seed}", study.grid.epochs[0])
        return run_one(ctx, cells[freeze], seed, {"lr": 3e-4, "batch_size": 16}, role="eval")

    alone = run(prepare(study, str(SMOKE), tmp_path / "a", display), 5, 2)  # builds the cache itself
    warm = prepare(study, str(SMOKE), tmp_path / "b", display)
    run(warm, "all", 1)  # builds the cache; torch's random state moves on
    after = run(warm, 5, 2)
    assert alone["status"] in ("ok", "collapsed"), alone.get("error")
    assert without_timing([after]) == without_timing([alone])
