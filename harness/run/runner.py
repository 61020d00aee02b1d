"""``harness run``: one process works through the grid, cell by cell, and stores each run.

Rerunning a study skips every record already in the store; Optuna resumes from its SQLite
storage beside the results. The training itself is harness.run.execute's. A study whose seeds
allow more than its first wave (max_evaluate) then adds waves of evaluation seeds
(harness.waves): each wave's plan goes into manifest.json before its seeds train, so a rerun
finishes a wave as planned and plans the next one from the stored runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna

from harness import evidence, waves

from harness.run import plan, tuning
from harness.data import Findings
from harness.study import ALL, Cell, Study, axes_of, expand
from harness.data import load_dataset
from harness.run.display import Display
from harness.errors import HarnessError
from harness.run.hub import check_model
from harness.run.execute import Context, device_name, evaluation, fixed_params, load_context, run_trial
from harness.records import RunRecord
from harness.store import Results


def log_data(ctx: Context) -> None:
    """What the data as loaded holds that a user should know: rows left out, label order, the audit."""
    for line in getattr(ctx.data, "notes", []):
        ctx.display.log(f"data: {line}")
    for line in Findings(**ctx.data.audit).lines():
        ctx.display.log(f"data audit: {line}")


def start(ctx: Context, results: Results, study_file: str, log: bool = True, **manifest) -> None:
    """Write the manifest and the splits; the caller holds the folder and has checked the inputs."""
    results.check_owner(ctx.study, ctx.data.source)  # again, now that the folder is held
    if log:
        log_data(ctx)
    previous = results.last_session_unfinished()
    if previous and results.raw_records():
        ctx.display.log(f"resuming: the previous session (pid {previous['pid']} on {previous.get('host')}, "
                        f"started {previous.get('started')}) ended without finishing")
    results.write_manifest(ctx.study, study_file, device_name(ctx.device), ctx.data.source,
                           models=list(ctx.models.values()), **manifest)
    results.write_splits(ctx.data.splits())
    results.write_pairs(getattr(ctx.data, "pairs", None))


def check_inputs(study: Study, results: Results, display: Display) -> Context:
    """Load and check the data, the models and the results folder, without writing a byte."""
    results.check_writable()
    results.check_owner(study)
    results.records()  # a corrupt record stops here, naming its line
    cells = expand(study)
    for name in dict.fromkeys(c.study.model.name for c in cells):
        check_model(name)  # a hub id that cannot be had stops now, not after the data is read
    dataset = load_dataset(study.data, display.phase)
    display.end_phase()
    results.check_owner(study, dataset.source)
    results.check_splits(dataset.splits())
    for cell in cells:
        check_size(dataset, cell)
    return load_context(study, cells, dataset, display)


def show_plan(ctx: Context, results: Results, measured: bool | None = None, detail: bool = False) -> None:
    """The plan in one line: its trainings and, when ``measured`` (None: when there are more than
    plan.QUICK of them), their time here from a quick measurement; ``detail``: a line per cell too."""
    p = plan.plan(ctx.cells, ctx.depths, ctx.data, results.records())
    est = None
    if (p.trainings or p.wave_runs) and (measured or measured is None and p.trainings + p.wave_runs > plan.QUICK):
        rows = ctx.rows_needed()
        est = plan.estimate(p, plan.measure(p, ctx.data, ctx.device, rows), len(rows) if p.prefix else 0)
    ctx.display.log(plan.describe(p, est, device_name(ctx.device)))
    if detail:
        for line in plan.cell_lines(p, est):
            ctx.display.log(line)


def check_size(dataset, cell: Cell) -> None:
    """Every training subset must exist and hold each class at least once."""
    for seed in {*cell.study.seeds.tune, *cell.study.seeds.candidates}:  # added waves' seeds too
        rows = dataset.subset(cell.data_size, seed)  # raises if larger than the pool
        present = np.unique(dataset.labels[rows])
        if cell.data_size != ALL and len(present) < dataset.n_classes:
            missing = [dataset.class_names[c] for c in range(dataset.n_classes) if c not in present]
            raise HarnessError(f"grid.data_sizes: {cell.data_size} training examples hold no "
                               f"{', '.join(repr(m) for m in missing)} example (seed {seed}); a size must hold "
                               f"at least one example of each of the {dataset.n_classes} classes")


def run_study(study: Study, study_file: str, results: Results, display: Display,
              dry_run: bool = False) -> list[RunRecord]:
    """Train what the store lacks of ``study``; ``dry_run``: print the plan and stop, writing nothing."""
    ctx = check_inputs(study, results, display)  # bad input stops here, before a byte is written
    log_data(ctx)
    show_plan(ctx, results, measured=dry_run or None, detail=dry_run)
    if dry_run:
        return []
    with results.hold():
        start(ctx, results, study_file, log=False)
        done = results.done()
        finished = [c for c in ctx.cells if all((c.id, "eval", s) in done for s in c.study.seeds.evaluate)]
        display.start_grid(len(ctx.cells), len(finished))
        for cell in ctx.cells:
            if cell not in finished:
                run_cell(ctx, results, cell)
                display.cell_done()
        if waves.adaptive(ctx.cells):
            run_waves(ctx, results)
        results.end_session()
    return results.records()


def run_cell(ctx: Context, results: Results, cell: Cell) -> None:
    study = cell.study
    done = results.done()
    ctx.display.start_cell(cell.id, study.search.trials + len(study.seeds.evaluate),
                           sum(1 for k in done if k[0] == cell.id))
    try:  # the frozen-prefix pass now, before a trial is RUNNING: a kill during it costs no retry
        ctx.inputs(cell)
    except Exception:  # noqa: BLE001 - each run of the cell meets it again and records it as failed
        pass
    stored = (results.manifest() or {}).get("encodings", [])
    if len(stored) < len(ctx.truncation) or any(e not in stored for e in ctx.truncation.values()):
        results.update_manifest(encodings=list(ctx.truncation.values()))  # texts cut at max_length
    params = tune_cell(ctx, results, cell) if study.search.trials else fixed_params(cell)
    tuned = [r for r in results.records() if r.cell == cell.id and r.role == "tune"]
    for seed in study.seeds.evaluate:
        if (cell.id, "eval", seed) in done:
            continue
        ctx.display.start_run(f"eval seed {seed}", cell.epochs)
        record = evaluation(ctx, cell, seed, params, tuned)
        results.append(record)
        ctx.display.run_done(record.status)


def tune_cell(ctx: Context, results: Results, cell: Cell) -> dict:
    search, seed = cell.study.search, cell.study.seeds.tune[0]
    recorded = {r.trial: r for r in results.records() if r.cell == cell.id and r.role == "tune"}
    optuna_study = tuning.open_study(results.optuna_url, cell.id, search, cell.study.train, cell.epochs, seed)
    tuning.recover(optuna_study, recorded)
    while tuning.n_finished(optuna_study) < search.trials and tuning.n_failed(optuna_study) < search.trials:
        trial = tuning.ask(optuna_study, search, seed, cell.id)  # same draws after a resume
        record = run_trial(ctx, cell, trial)
        results.append(record)  # stored first: a crash before tell() is settled by recover()
        tuning.settle(optuna_study, trial.number, record)
        ctx.display.run_done(record.status)
    completed = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        ctx.display.log(f"{cell.id}: no tuning trial completed; using the fixed lr and batch size")
    return tuning.best_params(optuna_study, fixed_params(cell))


def run_waves(ctx: Context, results: Results) -> None:
    """Added waves until a plan says stop: each planned from the stored runs (or read back when a
    previous session stored it), written to the manifest, then trained."""
    analysis, k = ctx.study.analysis, 1
    while True:
        plans = (results.manifest() or {}).get("waves", [])
        if len(plans) < k:  # every earlier wave is finished: plan this one from the store
            found = evidence.from_records(results.records(), results.splits(), axes_of(ctx.study), ctx.cells)
            plans = plans + [waves.plan_next(found, ctx.cells, plans, analysis.alpha, analysis.smallest_effect)]
            results.update_manifest(waves=plans)
        plan = plans[k - 1]
        ctx.display.log(waves.describe(plan))
        if plan["stop"]:
            return
        train_wave(ctx, results, plan)
        k += 1


def train_wave(ctx: Context, results: Results, plan: dict) -> None:
    """The planned seeds that have no record yet, with each cell's evaluation parameters."""
    done, records = results.done(), results.records()
    for cell in ctx.cells:
        seeds = [s for s in plan["seeds"].get(cell.id, []) if (cell.id, "eval", s) not in done]
        if not seeds:
            continue
        params = next(r.params for r in records if r.cell == cell.id and r.role == "eval")  # the first wave's
        tuned = [r for r in records if r.cell == cell.id and r.role == "tune"]
        ctx.display.start_cell(f"{cell.id} wave {plan['wave']}", len(seeds), 0)
        for seed in seeds:
            ctx.display.start_run(f"eval seed {seed}", cell.epochs)
            record = dataclasses.replace(evaluation(ctx, cell, seed, params, tuned), wave=plan["wave"])
            results.append(record)
            ctx.display.run_done(record.status)
        ctx.display.cell_done(grid=False)


__all__ = ["check_inputs", "log_data", "run_cell", "run_study", "run_waves", "show_plan", "start", "train_wave"]
