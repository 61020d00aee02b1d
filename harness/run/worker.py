"""One worker process of a shared study: prepare once, then claim, train and record units until none is left.

``harness.run.distributed`` decides which unit is whose; this module trains them with
the same execution core as ``python -m harness run`` (``harness.run.execute``), writes the finished runs from the storage into
``results/<study>/runs.jsonl`` and starts N local workers for ``--processes N``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from harness import evidence, waves

from harness.run import execute

from harness.run import runner

from harness.run import tuning
from harness.study import Cell, axes_of
from harness.run.distributed import (Shared, Slot, Unit, all_states, beating, claim, fail_stale, finish, mark, own, plan,
                                     plan_wave, repair, retry_of, settled, survey)
from harness.errors import HarnessError, redact
from harness.kept import untuned
from harness.records import RunRecord
from harness.store import Results


# --- the worker ------------------------------------------------------------------------------

STORAGE_ENV = "HARNESS_STORAGE"  # the storage URL when --storage is not given


@dataclasses.dataclass(frozen=True)
class Options:
    storage: str  # URL as given; only redact(storage) is ever written down
    heartbeat: int = 60  # seconds between heartbeats of a running trial
    grace: int = 180  # seconds without a heartbeat before a trial is failed and retried
    poll: float = 5.0  # at most this many seconds between looks of an idle worker


def worker_id() -> str:
    return f"{platform.node()}:{os.getpid()}"


def start(ctx: execute.Context, results: Results, study_file: str, options: Options) -> None:
    """runner.start, under a lock shared by the workers of this machine."""
    with results.locked():
        check_storage(results, redact(options.storage))
        runner.start(ctx, results, study_file, storage=redact(options.storage))


def check_storage(results: Results, storage: str) -> None:
    """A store filled from one storage never takes records from another: trial numbers would clash."""
    old = (results.manifest() or {}).get("storage")
    if results.raw_records() and old != storage:
        raise HarnessError(f"{results.dir}: holds runs from {old or 'python -m harness run'}, not from storage "
                           f"{storage}; use --results for a new directory")


def work(ctx: execute.Context, shared: Shared, options: Options) -> list[Slot]:
    """Run units until every slot of the study is done; the slots given up on, if any."""
    me = worker_id()
    for cell in ctx.cells:  # the frozen-prefix passes now, not inside a claimed trial
        if ctx.depths[cell.id] > 0:
            ctx.inputs(cell)
    plan(shared, options.poll)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    shared.plan_study().set_user_attr(f"worker:{me}:{started}", {  # a key per worker: no lost update
        "host": platform.node(), "pid": os.getpid(), "device": execute.device_name(ctx.device), "started": started})
    last_check, idle = float("-inf"), 0.5
    while True:
        if time.monotonic() - last_check > options.heartbeat:  # stale trials: at most once per beat
            fail_stale(shared)
            last_check = time.monotonic()
        unit = claim(shared, me)
        if unit is not None:
            run_unit(ctx, shared, unit, options)
            idle = 0.5
            continue
        states = all_states(shared)
        if settled(states):
            if next_wave(ctx, shared, options):
                continue
            for (cell, _), why in sorted(untuned(done_records(shared)).items()):
                ctx.display.log(f"{worker_id()}: {cell}: {why}")
            return [slot for slot, state in states.items() if state.abandoned]
        if not repair(shared, states):  # waiting for others' trials: look again soon, then less often
            time.sleep(idle)
            idle = min(2 * idle, options.poll)


def next_wave(ctx: execute.Context, shared: Shared, options: Options) -> bool:
    """Every slot settled: plan the study's next added wave (one worker plans, the others wait for it);
    whether it added slots to work on."""
    known = len(shared.planned)
    plans = shared.waves()
    if len(plans) > known:  # another worker planned a wave meanwhile: its slots are not surveyed yet
        return True
    if not waves.adaptive(shared.cells) or (plans and plans[-1]["stop"]):
        return False
    analysis = shared.study.analysis

    def make() -> dict:
        found = evidence.from_records(done_records(shared), ctx.data.splits(), axes_of(shared.study), shared.cells)
        return waves.plan_next(found, shared.cells, plans, analysis.alpha, analysis.smallest_effect)

    plan = plan_wave(shared, len(plans) + 1, make, options.poll)
    ctx.display.log(f"{worker_id()}: {waves.describe(plan)}")
    return not plan["stop"]


def run_unit(ctx: execute.Context, shared: Shared, unit: Unit, options: Options) -> None:
    """Train the unit with heartbeats, store its record in the trial; a failure to do so is retried."""
    slot, number = unit.slot, unit.trial.number
    ctx.display.start_cell(f"{slot.cell.id} {slot.role} {slot.index} (trial {number})", 1, 0)
    ctx.display.start_run(f"{slot.role} {slot.index}", slot.cell.epochs)
    try:
        with beating(shared, unit, options.heartbeat):
            record = train(ctx, shared, unit)
            record = dataclasses.replace(record, worker=worker_id(), optuna_trial=number,
                                         retry_of=retry_of(unit.frozen))
            finish(unit, record)
    except optuna.exceptions.UpdateFinishedTrialError:  # failed as stale under us: its retry records it
        ctx.display.log(f"{worker_id()}: {slot.cell.id} {slot.role} {slot.index}: trial {number} was failed "
                        "as stale while running; dropped")
        return
    except BaseException:  # interrupted: fail now, so the slot is retried without waiting for the grace
        with contextlib.suppress(Exception):
            mark(unit.trial, "interrupted", True)
            unit.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        raise
    ctx.display.run_done(record.status)
    ctx.display.log(f"{worker_id()}: {slot.cell.id} {slot.role} {slot.index} trial {number}: "
                    f"{record.status} in {record.seconds or 0:.1f} s")


def train(ctx: execute.Context, shared: Shared, unit: Unit) -> RunRecord:
    cell, replicate = unit.slot.cell, unit.slot.replicate
    if unit.slot.role == "tune":  # sampler seeded per slot: a slot's draw does not depend on who runs it
        unit.study.sampler = tuning.make_sampler(cell.study.search, cell.study.seeds.tuning(replicate)[0],
                                                 unit.slot.index, tuning.search_name(cell.id, replicate))
        return execute.run_trial(ctx, cell, unit.trial, replicate)
    params = eval_params(shared, cell, replicate)
    tuned = [own(t, "result") for t in shared.optuna_study(cell, "tune", replicate).get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,))]
    record = execute.evaluation(ctx, cell, unit.slot.index, params, [RunRecord.from_dict(r) for r in tuned if r],
                                replicate)
    return dataclasses.replace(record, wave=shared.wave_of(cell, unit.slot.index, replicate))


def eval_params(shared: Shared, cell: Cell, replicate: int = 0) -> dict:
    """The search's best tuning trial's parameters (every worker gets the same: tuning is settled, and an
    untuned search is never evaluated), else the fixed ones of a study without tuning."""
    if not cell.study.search.trials:
        return execute.fixed_params(cell)
    return tuning.best_params(shared.optuna_study(cell, "tune", replicate))


# --- results ---------------------------------------------------------------------------------

def done_records(shared: Shared) -> list[RunRecord]:
    """Every done unit's record, in grid order: tuning slots, then evaluation seeds (added waves' too)."""
    shared.waves()
    records = []
    for cell, replicate in shared.units():
        for role in ("tune", "eval"):
            states = survey(shared, cell, role, replicate)
            records += [RunRecord.from_dict(own(s.done, "result"))
                        for _, s in sorted(states.items(), key=lambda kv: kv[0].index) if s.done is not None]
    return records


def export(shared: Shared, results: Results, storage: str) -> int:
    """Append to runs.jsonl every done record it lacks, list the workers in the manifest; how many."""
    with results.locked():
        check_storage(results, redact(storage))
        have = results.done()
        new = [r for r in done_records(shared) if r.key not in have]
        for record in new:
            results.append(record)
        workers = sorted(shared.plan_study().user_attrs.items())
        results.update_manifest(storage=redact(storage), workers=[v for k, v in workers if k.startswith("worker:")],
                                **({"waves": shared.waves()} if shared.waves() else {}))
    return len(new)


# --- local worker processes ------------------------------------------------------------------

def launch(worker_args: list[str], storage: str, processes: int) -> int:
    """Start ``processes`` workers on this machine and wait: one GPU each, or the CPU cores split.

    The storage URL goes to them in the environment, not on command lines that ``ps`` shows.
    """
    gpus = visible_gpus()
    threads = max(1, len(os.sched_getaffinity(0)) // processes)
    children = []
    for i in range(processes):
        env = os.environ | {STORAGE_ENV: storage}
        env |= {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if len(gpus) > 1 else {}
        command = [sys.executable, "-m", "harness", "worker", *worker_args, "--threads", str(threads)]
        children.append(subprocess.Popen(command, env=env))
    signal.signal(signal.SIGTERM, lambda *_: [child.terminate() for child in children])  # pass a stop on
    return max(child.wait() for child in children)


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's preemption) ends the worker like Ctrl-C: its trial is failed and retried at once."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
