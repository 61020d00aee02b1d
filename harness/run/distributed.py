"""Many workers, one study: every unit of work is an Optuna trial in Optuna's own shared storage.

Per cell, ``<prefix>/<cell id>`` holds one WAITING trial per tuning slot and ``<prefix>/<cell
id>#eval`` one per evaluation seed (prefix ``<study name>@<fingerprint>``). The slots are queued
once, by the winner of an atomic ``create_study``; a worker claims a unit with Optuna's pop
(``study.ask()``), trains it and stores its record in the trial before ``tell``; a cell's
evaluation trials are popped only once its tuning is done. A trial without heartbeat is failed
and retried; the lowest-numbered live trial owns a slot, so none is trained twice or skipped.
Details: docs/methods.md, "Many workers".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from harness.run import tuning
from harness.errors import HarnessError, redact
from harness.study import Cell, Study, expand
from harness.records import RunRecord

MAX_ATTEMPTS = 3  # a slot whose worker died this many times is given up (it may be what kills them)
LIVE = (TrialState.WAITING, TrialState.RUNNING)


# --- storage ---------------------------------------------------------------------------------

def open_storage(url: str, heartbeat: int, grace: int) -> BaseStorage:
    """An RDB URL (``postgresql://``, ``sqlite:///``) or ``journal:///path/to/file``."""
    if heartbeat < 1 or grace <= heartbeat:
        raise HarnessError(f"heartbeat {heartbeat} s, grace {grace} s: expected heartbeat >= 1 and grace > heartbeat")
    if url.startswith("journal://"):
        path = Path(url.removeprefix("journal://"))
        if not path.name:
            raise HarnessError(f"storage '{url}': expected journal:///path/to/file")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if not re.match(r"^(sqlite|postgresql|mysql)(\+\w+)?://", url):
        raise HarnessError(f"storage '{redact(url)}': expected postgresql://..., sqlite:///... or journal:///...")
    for attempt in range(5):
        try:
            return rdb_storage(url, heartbeat, grace)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # workers started together on an empty database race to create Optuna's tables; the
            # losers' CREATE fails (unique violation, table exists) and succeeds on a second look
            time.sleep(0.5 + attempt)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy and driver errors alike
            raise HarnessError(f"storage {redact(url)}: cannot open: {scrub(str(exc), url)}") from None
    raise HarnessError(f"storage {redact(url)}: cannot create Optuna's tables")


def rdb_storage(url: str, heartbeat: int, grace: int) -> RDBStorage:
    """Heartbeats from a small thread while training; a stale trial is retried, at most twice."""
    with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
        return RDBStorage(url, engine_kwargs={} if url.startswith("sqlite") else {"pool_pre_ping": True},
                          heartbeat_interval=heartbeat, grace_period=grace,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_ATTEMPTS - 1))


def scrub(message: str, url: str) -> str:
    """The first line of a driver's error, without the URL's password should it quote it."""
    password = re.match(r"^[^:]+://[^:/@]*:([^@/]*)@", url)
    first = message.splitlines()[0] if message else "unknown error"
    return first.replace(password.group(1), "***") if password and password.group(1) else first


@dataclasses.dataclass(frozen=True)
class Slot:
    """One unit of work: tuning slot ``index`` of a cell's search ``replicate``, or its evaluation seed ``index``."""

    cell: Cell
    role: str  # "tune" or "eval"
    index: int
    replicate: int = 0


@dataclasses.dataclass
class Shared:
    """One harness study in shared storage: a tuning and an evaluation Optuna study per cell."""

    study: Study
    storage: BaseStorage
    grace: int
    _studies: dict[str, optuna.Study] = dataclasses.field(default_factory=dict)
    planned: list[dict] = dataclasses.field(default_factory=list)  # plans of the added waves read so far

    @property
    def prefix(self) -> str:
        return f"{self.study.name}@{self.study.fingerprint()}"

    @functools.cached_property
    def cells(self) -> list[Cell]:
        return expand(self.study)

    def slots(self, cell: Cell, role: str, replicate: int = 0, tuned: int | None = None) -> list[Slot]:
        """Tuning slots by number (``tuned``: how many the search wants now, see ``survey``; its budget by
        default); evaluation slots by seed: the first wave's, then the added waves' read so far."""
        if role == "tune":
            return [Slot(cell, role, i, replicate) for i in range(cell.study.search.trials if tuned is None else tuned)]
        added = [s for plan in self.planned for s in plan["seeds"].get(cell.id, [])]
        return [Slot(cell, role, i, replicate) for i in (*cell.study.seeds.evaluate, *added)]

    def searches(self, cell: Cell) -> int:
        """The searches of ``cell``: the study's replicates, then those the added waves read so far added."""
        return cell.study.search.replicates + sum(p.get("replicates", {}).get(cell.id, 0) for p in self.planned)

    def units(self) -> list[tuple[Cell, int]]:
        """Every (cell, search) in grid order."""
        return [(cell, r) for cell in self.cells for r in range(self.searches(cell))]

    def waves(self) -> list[dict]:
        """Plans of the added waves, `planned` brought up to date from storage."""
        while True:
            name = f"{self.prefix}#wave{len(self.planned) + 1}"
            try:
                plan = optuna.load_study(study_name=name, storage=self.storage).user_attrs.get("plan")
            except KeyError:  # no such study: not planned yet
                plan = None
            if plan is None:
                return self.planned
            self.planned.append(plan)

    def wave_of(self, cell: Cell, seed: int, replicate: int = 0) -> int:
        """The wave that added the evaluation run of ``seed`` with search ``replicate`` to ``cell``: the later
        of the waves that added the seed and the search (0: the study's own)."""
        plans = self.waves()
        seed_wave = 0 if seed in cell.study.seeds.evaluate else \
            next(p["wave"] for p in plans if seed in p["seeds"].get(cell.id, []))
        search_wave, count = 0, cell.study.search.replicates
        for p in plans:
            if replicate < count:
                break
            count += p.get("replicates", {}).get(cell.id, 0)
            search_wave = p["wave"]
        return max(seed_wave, search_wave)

    def optuna_study(self, cell: Cell, role: str, replicate: int = 0) -> optuna.Study:
        name = f"{self.prefix}/{tuning.search_name(cell.id, replicate)}" + ("#eval" if role == "eval" else "")
        if name not in self._studies:
            if role == "tune":
                s = cell.study
                self._studies[name] = tuning.open_study(self.storage, name, s.search, s.train, cell.epochs,
                                                        s.seeds.tuning(replicate)[0])
            else:  # a queue of seeds, not an optimisation: the direction means nothing
                self._studies[name] = optuna.create_study(storage=self.storage, study_name=name,
                                                          load_if_exists=True)
        return self._studies[name]

    def plan_study(self) -> optuna.Study:
        return optuna.load_study(study_name=f"{self.prefix}#plan", storage=self.storage)


def own(trial: FrozenTrial, key: str):
    """A user attr written for this very trial; Optuna's retry copies the attrs of the failed one."""
    value = trial.user_attrs.get(key)
    return value["value"] if isinstance(value, dict) and value.get("number") == trial.number else None


def mark(trial: optuna.Trial, key: str, value) -> None:
    trial.set_user_attr(key, {"number": trial.number, "value": value})


def is_done(trial: FrozenTrial, role: str) -> bool:
    """Finished with its own record, in the state that record stands for.

    A worker killed between storing the record and ``tell`` leaves a trial that is
    failed as stale; it counts only where its record says FAIL too, so Optuna's view
    and the store never disagree.
    """
    result = own(trial, "result")
    if result is None or not trial.state.is_finished():
        return False
    expected = tuning.outcome(RunRecord.from_dict(result))[0] if role == "tune" else TrialState.COMPLETE
    return trial.state == expected


@dataclasses.dataclass
class SlotState:
    done: FrozenTrial | None = None
    live: list[FrozenTrial] = dataclasses.field(default_factory=list)  # WAITING or RUNNING
    killed: list[FrozenTrial] = dataclasses.field(default_factory=list)  # failed with no result: worker died

    @property
    def abandoned(self) -> bool:
        """Its worker died MAX_ATTEMPTS times; a worker stopped with Ctrl-C does not count."""
        deaths = [t for t in self.killed if not own(t, "interrupted")]
        return self.done is None and not self.live and len(deaths) >= MAX_ATTEMPTS


def survey(shared: Shared, cell: Cell, role: str, replicate: int = 0) -> dict[Slot, SlotState]:
    """The state of every slot of a search. A search whose tuning budget is spent with no trial complete
    wants one more slot at a time, up to ``search.trial_cap`` (``tuning.wants_trial``'s rule)."""
    trials = shared.optuna_study(cell, role, replicate).get_trials(deepcopy=False)
    tuned = cell.study.search.trials if role == "tune" else None
    while True:
        states = _states(cell, role, replicate, shared.slots(cell, role, replicate, tuned), trials)
        if role != "tune" or not settled(states) or complete(states) or tuned >= cell.study.search.trial_cap:
            return states
        tuned += 1


def _states(cell: Cell, role: str, replicate: int, slots: list[Slot], trials: list[FrozenTrial]) -> dict:
    states = {slot: SlotState() for slot in slots}
    for t in trials:
        slot = Slot(cell, role, t.user_attrs.get("slot", -1), replicate)
        if slot not in states or own(t, "surplus"):
            continue  # a fresh trial asked from an empty queue, or a surplus copy
        if is_done(t, role):
            states[slot].done = states[slot].done or t
        elif t.state in LIVE:
            states[slot].live.append(t)
        elif t.state == TrialState.FAIL:
            states[slot].killed.append(t)
    return states


def complete(states: dict[Slot, SlotState]) -> bool:
    """Whether a tuning trial completed: the search has parameters to evaluate."""
    return any(s.done is not None and s.done.state == TrialState.COMPLETE for s in states.values())


def untuned(states: dict[Slot, SlotState]) -> bool:
    """A search settled with no trial complete (after its extra trials): never evaluated."""
    return settled(states) and not complete(states)


# --- planning, claiming, retrying ------------------------------------------------------------

def plan(shared: Shared, poll: float) -> None:
    """Enqueue every slot once: the worker whose create_study of the plan wins does it."""
    try:
        optuna.create_study(storage=shared.storage, study_name=f"{shared.prefix}#plan")
    except optuna.exceptions.DuplicatedStudyError:
        deadline = time.monotonic() + shared.grace
        while "planned" not in shared.plan_study().user_attrs and time.monotonic() < deadline:
            time.sleep(poll)
        return  # a planner that died half way is made good by repair()
    for cell, replicate in shared.units():
        enqueue_search(shared, cell, replicate)
    shared.plan_study().set_user_attr("planned", True)


def enqueue_search(shared: Shared, cell: Cell, replicate: int) -> None:
    """Every tuning slot of a search (its space-filling start-up points first) and its evaluation slots."""
    for role in ("tune", "eval"):
        for slot in shared.slots(cell, role, replicate):
            start = start_point(cell, slot) if role == "tune" else None
            shared.optuna_study(cell, role, replicate).enqueue_trial(start or {}, user_attrs={"slot": slot.index})


def start_point(cell: Cell, slot: Slot) -> dict | None:
    """A tuning slot's space-filling start-up point (None: the sampler draws it)."""
    seeds = cell.study.seeds.tuning(slot.replicate)
    return tuning.start_point(cell.study.search, seeds[0], slot.index, tuning.search_name(cell.id, slot.replicate)) \
        if seeds else None


def plan_wave(shared: Shared, k: int, make: Callable[[], dict], poll: float) -> dict:
    """Plan added wave k once: the worker whose create_study of ``<prefix>#wave<k>`` wins computes it,
    enqueues its evaluation slots and then stores it; the others wait for it.

    A waiter whose planner died (no plan after the grace period) computes the plan itself and stores
    it without enqueueing: the plan is a function of settled records, so it is the same plan, and
    ``repair`` enqueues the slots the planner did not.
    """
    name = f"{shared.prefix}#wave{k}"
    try:
        study = optuna.create_study(storage=shared.storage, study_name=name)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=shared.storage)
        deadline = time.monotonic() + shared.grace
        while "plan" not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(poll)
        if "plan" not in study.user_attrs:
            study.set_user_attr("plan", make())
        return shared.waves()[k - 1]
    plan = make()
    for cell in shared.cells:
        had = shared.searches(cell)
        for replicate in range(had):  # the new seeds, for every search the cell has
            for seed in plan["seeds"].get(cell.id, []):
                shared.optuna_study(cell, "eval", replicate).enqueue_trial({}, user_attrs={"slot": seed})
    shared.planned.append(plan)  # the new searches' slots: every seed, this wave's included
    for cell in shared.cells:
        had = shared.searches(cell) - plan.get("replicates", {}).get(cell.id, 0)
        for replicate in range(had, shared.searches(cell)):
            enqueue_search(shared, cell, replicate)
    shared.planned.pop()
    study.set_user_attr("plan", plan)  # after the slots: a worker that reads the plan finds them queued
    return shared.waves()[k - 1]


def fail_stale(shared: Shared) -> None:
    """Fail RUNNING trials whose worker stopped beating, in every Optuna study of the harness study."""
    for cell, replicate in shared.units():
        for role in ("tune", "eval"):
            fail_stale_in(shared, shared.optuna_study(cell, role, replicate))


def fail_stale_in(shared: Shared, study: optuna.Study) -> None:
    """Fail RUNNING trials of one Optuna study whose worker stopped beating.

    RDB: Optuna's heartbeat; its retry callback enqueues the copy. The journal storage
    has no heartbeat in Optuna 5, so workers write a ``lease`` time into the trial and
    stale ones are failed here by hand; ``repair`` enqueues their retry. (Leases
    compare clocks of different machines: keep them NTP-synchronised, grace >> skew.)
    On RDB too, a trial whose worker died between the pop and its first beat has no
    heartbeat, which Optuna never calls stale: it is failed here from its start time.
    """
    rdb = isinstance(shared.storage, RDBStorage)
    if rdb:
        optuna.storages.fail_stale_trials(study)
    now = time.time()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lease = own(t, "lease")
        if lease is not None and rdb:
            continue  # beating: Optuna's heartbeat watches it
        since = lease if lease is not None else t.datetime_start.timestamp() if t.datetime_start else now
        if now - since > shared.grace:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)  # another worker may be first


def repair(shared: Shared, states: dict[Slot, SlotState]) -> int:
    """Enqueue a retry of every slot left with no waiting, running or done trial; how many."""
    repaired = 0
    for slot, state in states.items():
        if state.done or state.live or state.abandoned:
            continue
        last = state.killed[-1] if state.killed else None
        user_attrs = {"slot": slot.index} | ({"retry_of": last.number} if last else {})
        params = last.params if last else (start_point(slot.cell, slot) if slot.role == "tune" else None)
        shared.optuna_study(slot.cell, slot.role, slot.replicate).enqueue_trial(params or {}, user_attrs=user_attrs)
        repaired += 1
    return repaired


@dataclasses.dataclass
class Unit:
    slot: Slot
    study: optuna.Study
    trial: optuna.Trial
    frozen: FrozenTrial


def claim(shared: Shared, worker: str) -> Unit | None:
    """Pop the next waiting unit in grid order; evaluation only of searches whose tuning is settled and
    found parameters (an untuned search is never evaluated)."""
    for cell, replicate in shared.units():
        tune = survey(shared, cell, "tune", replicate)
        if waiting(tune) and (unit := pop(shared, cell, "tune", worker, replicate)):
            return unit
        if settled(tune) and complete(tune) or not cell.study.search.trials:
            evals = survey(shared, cell, "eval", replicate)
            if waiting(evals) and (unit := pop(shared, cell, "eval", worker, replicate)):
                return unit
    return None


def all_states(shared: Shared) -> dict[Slot, SlotState]:
    """Every slot that must be settled before the study (or its next wave) goes on: each search's tuning
    slots, and the evaluation slots of the searches that found parameters."""
    out: dict[Slot, SlotState] = {}
    for cell, replicate in shared.units():
        tune = survey(shared, cell, "tune", replicate)
        out |= tune
        if not (cell.study.search.trials and untuned(tune)):
            out |= survey(shared, cell, "eval", replicate)
    return out


def waiting(states: dict[Slot, SlotState]) -> bool:
    return any(t.state == TrialState.WAITING for s in states.values() for t in s.live)


def settled(states: dict[Slot, SlotState]) -> bool:
    return all(s.done or s.abandoned for s in states.values())


def pop(shared: Shared, cell: Cell, role: str, worker: str, replicate: int = 0) -> Unit | None:
    """Optuna's atomic pop, then the ownership rule: the lowest live or done trial of a slot runs it."""
    study = shared.optuna_study(cell, role, replicate)
    # Optuna warns that heartbeats are meant for optimize(); ask/tell with our own beat thread is the same
    with warnings.catch_warnings(action="ignore", category=UserWarning):
        trial = study.ask()
    first_beat(shared, trial)
    trials = study.get_trials(deepcopy=False)
    frozen = next(t for t in trials if t.number == trial.number)
    slot = Slot(cell, role, frozen.user_attrs.get("slot", -1), replicate)
    rivals = [t for t in trials if t.user_attrs.get("slot") == slot.index and t.number < trial.number
              and not own(t, "surplus") and (t.state in LIVE or is_done(t, role))]
    if "slot" not in frozen.user_attrs or rivals:  # the queue emptied meanwhile, or a duplicate
        mark(trial, "surplus", worker)
        study.tell(trial.number, state=TrialState.FAIL)
        return None
    mark(trial, "worker", worker)
    return Unit(slot, study, trial, frozen)


def first_beat(shared: Shared, trial: optuna.Trial) -> None:
    """Right after the pop: Optuna's heartbeat (RDB), then the lease; see fail_stale_in for why both."""
    if isinstance(shared.storage, RDBStorage):
        shared.storage.record_heartbeat(trial._trial_id)  # private, as in Optuna's own (private) beat thread
    mark(trial, "lease", time.time())


@contextlib.contextmanager
def beating(shared: Shared, unit: Unit, interval: float) -> Iterator[None]:
    """Heartbeats while a unit runs: Optuna's on RDB, a lease user attr on the journal."""
    stop = threading.Event()

    def beat() -> None:
        if isinstance(shared.storage, RDBStorage):
            shared.storage.record_heartbeat(unit.trial._trial_id)
        else:
            mark(unit.trial, "lease", time.time())

    def loop() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a missed beat is retried; a dead link shows as stale
                beat()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def finish(unit: Unit, record: RunRecord) -> None:
    """Store the record in the trial, then tell: a worker killed in between leaves no done unit."""
    mark(unit.trial, "result", record.to_dict())
    if unit.slot.role == "tune":
        state, value = tuning.outcome(record)
        unit.study.tell(unit.trial.number, value, state=state)
    else:
        unit.study.tell(unit.trial.number, 0.0)  # the record's status says how the run went


def retry_of(trial: FrozenTrial) -> int | None:
    """The trial this one retries: Optuna's callback notes it in system attrs, ``repair`` in user attrs.

    Each copies the other's attrs into the retry, so the latest (highest) is the one retried.
    """
    history = trial.system_attrs.get("retry_history") or []
    candidates = [n for n in (trial.user_attrs.get("retry_of"), history[-1] if history else None) if n is not None]
    return max(candidates, default=None)
