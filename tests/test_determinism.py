"""Determinism on the CPU: the same study and seeds give the same records, bit for bit, run after run.

(On a GPU they need not: the README, "What happens when things go wrong", says what is and is not.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.run.display import Display
from harness.study import expand, load_study
from harness.report import write_report
from harness.run.execute import from_trial, reusable, run_one
from harness.records import RunRecord
from harness.run.runner import check_inputs, run_study
from harness.store import Results

SMOKE = Path(__file__).parents[1] / "studies" / "smoke.toml"
# the smoke study cut to one size: a classifier-only cell (cached states) and a top-block cell (dropout)
SMALL = ["grid.data_sizes=[64]", "grid.epochs=[2]", "search.trials=2", "seeds.evaluate=[1, 2]"]
TIMING = ("seconds", "finished")  # wall-clock fields, the only ones allowed to differ


def without_timing(records: list[RunRecord]) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k not in TIMING} for r in records]


def prepare(study, directory, display):
    return check_inputs(study, Results(directory), display)


def runs(study, directory) -> list[dict]:
    return [r.to_dict() for r in run_study(study, str(SMOKE), Results(directory), Display(enabled=False))]


@pytest.mark.slow
def test_same_study_and_seeds_give_identical_records(tmp_path):
    study = load_study(SMOKE, SMALL)
    first, second = (without_timing(run_study(study, str(SMOKE), Results(tmp_path / name), Display(enabled=False)))
                     for name in ("first", "second"))
    for cell in {r["cell"] for r in first}:  # 2 trials (up to 4 when both failed) and 2 evaluation seeds a cell
        mine = [r["role"] for r in first if r["cell"] == cell]
        assert 2 <= mine.count("tune") <= 4 and mine.count("eval") in (0, 2), (cell, mine)
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
        display.start_run(f"freeze {freeze} seed {seed}", study.grid[0].epochs[0])
        return run_one(ctx, cells[freeze], seed, {"lr": 3e-4, "batch_size": 16}, role="eval")

    alone = run(prepare(study, tmp_path / "a", display), 5, 2)  # builds the cache itself
    warm = prepare(study, tmp_path / "b", display)
    run(warm, "all", 1)  # builds the cache; torch's random state moves on
    after = run(warm, 5, 2)
    assert alone.status in ("ok", "collapsed"), alone.error
    assert without_timing([after]) == without_timing([alone])


@pytest.mark.slow
def test_an_evaluation_seed_that_also_tuned_reuses_its_trial_and_equals_training_it_again(tmp_path):
    """tune = [1], evaluate = [1, 2]: seed 1's evaluation is the best trial itself, scored on the
    test set held back from tuning; training it again gives the very same record."""
    study = load_study(SMOKE, SMALL + ["seeds.tune=[1]"])
    records = runs(study, tmp_path / "study")
    reused = [r for r in records if r["role"] == "eval" and r.get("reused_from_trial") is not None]
    assert {r["cell"] for r in reused} == {c.id for c in expand(study)}  # every cell: seed 1
    assert all(r["seed"] == 1 for r in reused)
    tuned = [r for r in records if r["role"] == "tune"]
    assert all(r["test"] == {} for r in tuned)  # tuning records carry no test metrics
    held = [r for r in tuned if r["held_test"]]
    assert held and all(r["status"] == "ok" for r in held)
    cells = {c.id: c for c in expand(study)}
    display = Display(enabled=False)
    fresh_ctx = prepare(study, tmp_path / "fresh", display)
    for record in reused:
        trial = next(r for r in tuned if r["trial"] == record["reused_from_trial"] and r["cell"] == record["cell"])
        assert trial["params"] == record["params"] and trial["seed"] == 1
        display.start_run(f"{record['cell']} seed 1", study.grid[0].epochs[0])
        again = run_one(fresh_ctx, cells[record["cell"]], 1, record["params"], role="eval").to_dict()
        assert again["status"] == "ok", again.get("error")
        drop = set(TIMING) | {"reused_from_trial"}
        assert {k: v for k, v in record.items() if k not in drop} == {k: v for k, v in again.items() if k not in drop}
        assert len(record["test"]["pred"]) == record["test_size"] > 0
    # the report counts the reused runs' training once, under tuning, and says so
    text = write_report(tmp_path / "study").read_text()
    assert f"{len(reused)} evaluation run(s) were their seed's best tuning trial" in text


def tuned_record(**changes) -> RunRecord:
    record = {"study": "s", "cell": "c", "axes": {}, "device": "cpu", "role": "tune", "trial": 3, "seed": 1,
              "params": {"lr": 3e-4, "batch_size": 16}, "status": "ok", "test": {},
              "held_test": {"accuracy": 0.75, "pred": "0110"}, "objective": 0.8, "seconds": 12.0,
              "history": [{"epoch": 1}], "tune_seeds": [1], "retry_of": None}
    return RunRecord(**(record | changes))


@pytest.mark.parametrize("changes", [{"seed": 2}, {"params": {"lr": 3.0001e-4, "batch_size": 16}},
                                     {"params": {"lr": 3e-4, "batch_size": 32}}, {"status": "pruned"},
                                     {"status": "failed"}, {"status": "diverged"}, {"held_test": {}}, {"objective": None},
                                     {"held_test": {"accuracy": float("nan"), "pred": ""}}])
def test_only_the_very_same_finished_run_is_reused(changes):
    assert reusable([tuned_record(**changes)], 1, {"lr": 3e-4, "batch_size": 16}) is None


def test_a_reused_run_becomes_an_evaluation_record_with_the_held_back_test():
    record = from_trial(reusable([tuned_record(trial=1, seed=2), tuned_record()], 1,
                                 {"lr": 3e-4, "batch_size": 16}))
    assert record.role == "eval" and record.trial is None and record.reused_from_trial == 3
    assert record.test == {"accuracy": 0.75, "pred": "0110"} and record.test_size == 4
    assert record.status == "ok" and record.seconds == 12.0 and record.history == [{"epoch": 1}]
    assert (record.held_test, record.objective, record.tune_seeds, record.retry_of) == ({}, None, None, None)
    # collapse is judged on validation by the training loop, never on the test set: one class on test stays ok
    one_class = from_trial(tuned_record(held_test={"accuracy": 0.5, "pred": "1111"}))
    assert one_class.status == "ok"


def test_a_reused_run_carries_its_last_epoch_s_held_back_test_as_test_last():
    last = {"epoch": 4, "loss": 0.7, "accuracy": 0.5, "f1": 0.4, "pred": "0101"}
    record = from_trial(tuned_record(held_test={"accuracy": 0.75, "pred": "0110", "last": last}))
    assert record.test == {"accuracy": 0.75, "pred": "0110"} and record.test_last == last
    assert RunRecord.from_dict(record.to_dict()).test_last == last
    assert RunRecord.from_dict({k: v for k, v in record.to_dict().items() if k != "test_last"}).test_last == {}
