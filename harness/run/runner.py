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

from harness import evidence, waves
from harness.data import Findings, load_dataset
from harness.errors import HarnessError
from harness.kept import untuned_reason
from harness.records import RunRecord, record_key
from harness.run import plan, tuning
from harness.run.display import Display
from harness.run.execute import Context, device_name, evaluation, fixed_params, load_context, run_trial, seeds_of
from harness.run.hub import check_model
from harness.store import Results
from harness.study import ALL, Cell, Study, axes_of, expand


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
    for seed in seeds_of(cell):  # added searches' and added waves' seeds too
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
    results.check_free()  # a folder another run holds: one line, before the data is even read
    ctx = check_inputs(study, results, display)  # bad input stops here, before a byte is written
    log_data(ctx)
    show_plan(ctx, results, measured=dry_run or None, detail=dry_run)
    if dry_run:
        return []
    with results.hold():
        start(ctx, results, study_file, log=False)
        done = results.done()
        finished = [c for c in ctx.cells if all(eval_key(c, s, r) in done for r in range(c.study.search.replicates)
                                                for s in c.study.seeds.evaluate)]
        display.start_grid(len(ctx.cells), len(finished))
        for cell in ctx.cells:
            if cell not in finished:
                run_cell(ctx, results, cell)
                display.cell_done()
        if waves.adaptive(ctx.cells):
            run_waves(ctx, results)
        results.end_session()
    return results.records()


def eval_key(cell: Cell, seed: int, replicate: int) -> tuple:
    """The store key of an evaluation run (harness.records.record_key)."""
    return record_key({"cell": cell.id, "role": "eval", "seed": seed, "replicate": replicate})


def run_cell(ctx: Context, results: Results, cell: Cell) -> None:
    """Each of the cell's searches, each followed by its evaluation seeds."""
    study = cell.study
    ctx.display.start_cell(cell.id, study.search.replicates * (study.search.trials + len(study.seeds.evaluate)),
                           sum(1 for k in results.done() if k[0] == cell.id))
    try:  # the frozen-prefix pass now, before a trial is RUNNING: a kill during it costs no retry
        ctx.inputs(cell)
    except Exception:  # noqa: BLE001 - each run of the cell meets it again and records it as failed
        pass
    stored = (results.manifest() or {}).get("encodings", [])
    if len(stored) < len(ctx.truncation) or any(e not in stored for e in ctx.truncation.values()):
        results.update_manifest(encodings=list(ctx.truncation.values()))  # texts cut at max_length
    for replicate in range(study.search.replicates):
        run_search(ctx, results, cell, replicate, study.seeds.evaluate)


def run_search(ctx: Context, results: Results, cell: Cell, replicate: int, seeds, wave: int = 0) -> None:
    """Search ``replicate`` of a cell (tuned now, or read back), then its evaluation runs of ``seeds`` not
    yet stored, recorded as wave ``wave``. An untuned search is never evaluated."""
    params = search_params(ctx, results, cell, replicate)
    if params is None:
        return
    done = results.done()
    tuned = [r for r in results.records() if r.cell == cell.id and r.role == "tune" and r.replicate == replicate]
    name = "" if replicate == 0 else f" search {replicate + 1}"
    for seed in seeds:
        if eval_key(cell, seed, replicate) in done:
            continue
        ctx.display.start_run(f"eval seed {seed}{name}", cell.epochs)
        record = dataclasses.replace(evaluation(ctx, cell, seed, params, tuned, replicate), wave=wave)
        results.append(record)
        ctx.display.run_done(record.status)


def search_params(ctx: Context, results: Results, cell: Cell, replicate: int) -> dict | None:
    """The parameters search ``replicate`` evaluates with: those its stored evaluation runs used, else the
    search's best (tuned now where it still wants trials), else the fixed ones without tuning."""
    stored = next((r.params for r in results.records() if r.cell == cell.id and r.role == "eval"
                   and r.replicate == replicate), None)
    if stored is not None:
        return stored
    return tune_search(ctx, results, cell, replicate) if cell.study.search.trials else fixed_params(cell)


def tune_search(ctx: Context, results: Results, cell: Cell, replicate: int = 0) -> dict | None:
    """The best parameters of search ``replicate``, after running the trials it still wants
    (``tuning.wants_trial``); None, with one console line, when no trial completed (untuned)."""
    search, seed, name = cell.study.search, cell.study.seeds.tuning(replicate)[0], tuning.search_name(cell.id, replicate)
    recorded = {r.trial: r for r in results.records() if r.cell == cell.id and r.role == "tune"
                and r.replicate == replicate}
    optuna_study = tuning.open_study(results.optuna_url, name, search, cell.study.train, cell.epochs, seed)
    tuning.recover(optuna_study, recorded)
    while tuning.wants_trial(optuna_study, search):
        trial = tuning.ask(optuna_study, search, seed, name)  # same draws after a resume
        record = run_trial(ctx, cell, trial, replicate)
        results.append(record)  # stored first: a crash before tell() is settled by recover()
        tuning.settle(optuna_study, trial.number, record)
        ctx.display.run_done(record.status)
    if not tuning.completed(optuna_study):
        mine = [r for r in results.records() if r.cell == cell.id and r.role == "tune" and r.replicate == replicate]
        ctx.display.log(f"{cell.id}: {untuned_reason(mine)}")
        return None
    return tuning.best_params(optuna_study)


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
        train_wave(ctx, results, plan, plans[:k - 1])
        k += 1


def train_wave(ctx: Context, results: Results, plan: dict, before: list[dict]) -> None:
    """Wave ``plan``: its new seeds for every search the cell has, then its new searches, each evaluated
    on every seed the cell has by now. Runs already stored are skipped (a resumed wave)."""
    for cell in ctx.cells:
        seeds = plan["seeds"].get(cell.id, [])
        added = plan.get("replicates", {}).get(cell.id, 0)
        if not seeds and not added:
            continue
        had = waves.replicates_of(cell, before)
        ctx.display.start_cell(f"{cell.id} wave {plan['wave']}", had * len(seeds) + added, 0)
        for replicate in range(had):
            run_search(ctx, results, cell, replicate, seeds, plan["wave"])
        everything = waves.eval_seeds(cell, [*before, plan])
        for replicate in range(had, had + added):
            run_search(ctx, results, cell, replicate, everything, plan["wave"])
        ctx.display.cell_done(grid=False)


__all__ = ["check_inputs", "eval_key", "log_data", "run_cell", "run_search", "run_study", "run_waves", "show_plan",
           "start", "train_wave", "tune_search"]
