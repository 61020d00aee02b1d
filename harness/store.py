"""The results folder of one study, owned here: every path in it, the records, the manifest, the lock.

``runs.jsonl`` is append-only: a record is one JSON line written with a single ``write``
and ``fsync``ed, so a crash leaves at most one torn last line, which readers skip and the
next writer cuts off. ``manifest.json`` (the study, its fingerprint, the data's checksum,
provenance) and ``splits.json`` (the fixed validation and test labels and groups) are
replaced whole. One ``harness run`` at a time holds the folder (a lock the system drops
when the process dies, so a killed run leaves nothing stale); workers share it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from harness.errors import HarnessError, redact
from harness.records import RunRecord
from harness.study import Study, build, conflict

PACKAGES = ("torch", "transformers", "optuna", "numpy", "pandas", "scipy", "statsmodels", "seaborn", "rich",
            "joblib")
MANIFEST_SCHEMA = 2  # 1: fingerprint over every key, no data checksum


class Results:
    """``results/<study>/``: what is in it and how it is written."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    runs = property(lambda self: self.dir / "runs.jsonl")
    manifest_path = property(lambda self: self.dir / "manifest.json")
    splits_path = property(lambda self: self.dir / "splits.json")
    pairs_path = property(lambda self: self.dir / "duplicates.csv.gz")
    optuna_url = property(lambda self: f"sqlite:///{self.dir.resolve() / 'optuna.db'}")
    journal = property(lambda self: self.dir / "journal.log")
    worker_lock = property(lambda self: self.dir / ".lock")
    report = property(lambda self: self.dir / "report.md")
    findings = property(lambda self: self.dir / "findings.md")
    figures = property(lambda self: self.dir / "figures")
    tables = property(lambda self: self.dir / "tables")

    # --- records -------------------------------------------------------------------------------

    def records(self) -> list[RunRecord]:
        """Every complete record; a torn last line (a crash mid-write) is skipped."""
        out = []
        for number, raw in enumerate(self.raw_records(), start=1):
            try:
                out.append(RunRecord.from_dict(raw))
            except (TypeError, KeyError, AttributeError) as exc:
                raise HarnessError(f"{self.runs}: line {number}: not a run record ({exc}); move the file aside or "
                                   "remove that line") from None
        return out

    def raw_records(self) -> list[dict]:
        """Every complete line as stored. A line that is not a JSON object stops with one line naming it,
        unless it is a torn last line (no newline: a crash mid-write), which is skipped (``torn_tail``)."""
        if not self.runs.exists():
            return []
        out = []
        with open(self.runs, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith("\n"):
                    break  # torn tail
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise HarnessError(f"{self.runs}: line {number}: not a valid JSON record ({exc.msg} at column "
                                       f"{exc.colno}); move the file aside or remove that line") from None
                if not isinstance(record, dict):
                    raise HarnessError(f"{self.runs}: line {number}: expected a JSON object, found "
                                       f"{type(record).__name__}; move the file aside or remove that line")
                out.append(record)
        return out

    def torn_tail(self) -> int:
        """Bytes after the last newline of runs.jsonl: a record cut short by a crash, skipped (0: none)."""
        if not self.runs.exists() or self.runs.stat().st_size == 0:
            return 0
        with open(self.runs, "rb") as handle:
            data = handle.read()
        return len(data) - (data.rfind(b"\n") + 1)

    def done(self) -> set[tuple]:
        """Keys of finished records: (cell, role, seed) for evaluation, (cell, role, trial) for tuning."""
        return {r.key for r in self.records()}

    def append(self, record: RunRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        line = json.dumps(record.to_dict(), sort_keys=True, allow_nan=True) + "\n"
        with open(self.runs, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def _repair_tail(self) -> None:
        """Cut a torn last line left by a crash, so the next record starts on its own line."""
        if not self.runs.exists() or self.runs.stat().st_size == 0:
            return
        with open(self.runs, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            data = handle.seek(0) or handle.read()
            handle.truncate(data.rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())

    # --- manifest ------------------------------------------------------------------------------

    def manifest(self) -> dict | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError:
            raise HarnessError(f"{self.manifest_path}: not valid JSON; move the directory aside or remove it") \
                from None

    def study(self) -> Study:
        """The study that wrote this folder, rebuilt from its manifest (keys added since get defaults)."""
        manifest = self.manifest()
        if manifest is None:
            raise HarnessError(f"{self.dir}: no manifest.json; expected a study's results directory")
        return build(Study, manifest["study"], str(self.manifest_path), "")

    def check_owner(self, study: Study, data: dict | None = None) -> None:
        """Refuse a folder whose stored cells this study would change, or the same study on changed data.

        A study may grow into its folder: more values on an axis, more seeds, another grid block
        (harness.study.conflict). A change that would alter a stored cell or the data all cells
        share is refused with one line naming the key, its old and its new value.
        """
        manifest = self.manifest()
        if manifest is None:
            return
        try:
            stored = self.study()
        except (HarnessError, KeyError, TypeError):  # a manifest this harness cannot rebuild: fingerprints only
            stored = None
        name = manifest.get("study", {}).get("name")
        if name != study.name:
            raise HarnessError(f"{self.dir}: written by study '{name}', not this study '{study.name}'; use --results "
                               "for a new directory")
        problem = conflict(stored, study) if stored is not None else (
            None if manifest.get("fingerprint") == study.fingerprint() else
            f"written by study '{manifest.get('study', {}).get('name')}' with fingerprint {manifest.get('fingerprint')}"
            f", not this study '{study.name}' ({study.fingerprint()})")
        if problem:
            raise HarnessError(f"{self.dir}: {problem}; it would change what the stored runs mean: use --results "
                               "for a new directory")
        old = manifest.get("data") or {}
        if data and old.get("sha256") and old["sha256"] != data["sha256"]:
            raise HarnessError(
                f"{data['file']}: the data changed since {self.dir} was started (sha256 {old['sha256'][:16]}... "
                f"then, {data['sha256'][:16]}... now); restore the file or use --results for a new directory")

    def write_manifest(self, study: Study, study_file: str, device: str, data: dict | None = None,
                       **extra: Any) -> None:
        """Provenance: resolved study, git commit, versions, device, the data's checksum; each session."""
        old = self.manifest() or {}
        as_dict = study.to_dict()
        as_dict["data"]["source"] = redact(as_dict["data"]["source"])  # no user:password@ on disk
        now = _now()
        session = {"started": now, "device": device, "host": platform.node(), "pid": os.getpid()}
        history = old.get("history") or ([{"fingerprint": old["fingerprint"], "study": old["study"],
                                            "from": old.get("created")}] if old.get("study") else [])
        if not history or history[-1]["fingerprint"] != study.fingerprint():  # the study grew (or is new)
            history = history + [{"fingerprint": study.fingerprint(), "study": as_dict, "from": now}]
        manifest = old | {
            "schema": MANIFEST_SCHEMA, "study": as_dict, "fingerprint": study.fingerprint(), "study_file": study_file,
            "history": history,
            "git_commit": git_commit(), "packages": package_versions(), "python": platform.python_version(),
            "device": device, "created": old.get("created", now), "sessions": old.get("sessions", []) + [session],
            "data": data or old.get("data"), **extra}
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    def update_manifest(self, **fields: Any) -> None:
        write_atomic(self.manifest_path, json.dumps((self.manifest() or {}) | fields, indent=2, sort_keys=True))

    def end_session(self) -> None:
        """Mark this process's session finished: a later run can tell a clean end from a kill."""
        manifest = self.manifest()
        if manifest and manifest.get("sessions") and manifest["sessions"][-1].get("pid") == os.getpid():
            manifest["sessions"][-1]["ended"] = _now()
            write_atomic(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    # --- splits --------------------------------------------------------------------------------

    def write_splits(self, splits: dict) -> None:
        """The fixed validation and test labels (and groups), so the report scores stored predictions."""
        if not self.splits_path.exists():
            write_atomic(self.splits_path, json.dumps(splits))

    def write_pairs(self, pairs) -> None:
        """Every duplicate pair the data audit found (harness.data.audit.pairs_table), beside splits.json."""
        if pairs is not None and not self.pairs_path.exists():
            tmp = self.dir / "duplicates.tmp.csv.gz"
            pairs.to_csv(tmp, index=False)
            tmp.replace(self.pairs_path)

    def pairs(self) -> pd.DataFrame | None:
        return pd.read_csv(self.pairs_path) if self.pairs_path.exists() else None

    def splits(self) -> dict:
        return json.loads(self.splits_path.read_text()) if self.splits_path.exists() else {}

    def check_splits(self, splits: dict) -> None:
        """Refuse to add runs on a validation or test set other than the one the stored runs used."""
        old = self.splits()
        for key in ("val_labels", "test_labels", "val_rows", "test_rows", "train_pool"):
            if key in old and key in splits and old[key] != splits[key]:
                raise HarnessError(f"{self.splits_path}: the {key.replace('_', ' ')} differ from this run's "
                                   "(a changed split, audit or threshold rule); use --results for a new directory")

    # --- the folder itself ---------------------------------------------------------------------

    def check_writable(self) -> None:
        """Refuse, before anything is written, a results path that cannot become a writable folder."""
        path = self.dir
        if path.exists() and not path.is_dir():
            raise HarnessError(f"results directory {path}: a file is in its place; expected a directory")
        probe = path
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise HarnessError(f"results directory {path}: {probe} is a file, so no directory can be made under it")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise HarnessError(f"results directory {path}: {probe} is not writable (permission denied)")

    @contextlib.contextmanager
    def hold(self, shared: bool = False) -> Iterator[None]:
        """Hold the folder for a whole run: one ``harness run`` at a time, or any number of workers.

        An advisory lock on the directory itself (flock): the system drops it when the process
        ends, however it ends, so a killed run leaves no stale lock behind.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir, os.O_RDONLY)
        except OSError as exc:
            raise HarnessError(f"results directory {self.dir}: cannot be used ({exc.strerror})") from None
        try:
            self._lock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def check_free(self) -> None:
        """Refuse now, before anything is logged, when another run or a worker holds the folder (see ``hold``)."""
        if not self.dir.is_dir():
            return
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            self._lock(fd, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _lock(self, fd: int, kind: int) -> None:
        """flock without waiting; one line naming the holder when another process has the folder."""
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise HarnessError(f"results directory {self.dir}: in use by {self.holder()}; wait for it to "
                               "finish or use --results for another directory") from None

    def holder(self) -> str:
        """Who holds the folder, from the last session in the manifest."""
        sessions = (self.manifest() or {}).get("sessions") or [{}]
        last = sessions[-1]
        return f"pid {last.get('pid', '?')} on {last.get('host', '?')} since {last.get('started', '?')}" \
            if last else "another process"

    def last_session_unfinished(self) -> dict | None:
        """The previous session when it never marked its end (killed, or still running elsewhere)."""
        sessions = (self.manifest() or {}).get("sessions") or []
        return sessions[-1] if sessions and "ended" not in sessions[-1] and "pid" in sessions[-1] else None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """A short exclusive lock for workers of one machine writing the same files."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.worker_lock, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def read_records(directory: str | Path) -> list[dict]:
    """Every complete record as the JSON object stored (a torn last line skipped)."""
    return Results(directory).raw_records()


def load_runs(directory: str | Path) -> pd.DataFrame:
    """The store as a DataFrame, one row per record, each axis and the test metrics as columns."""
    results = Results(directory)
    if not results.dir.is_dir():
        raise HarnessError(f"{results.dir}: no such results directory")
    if not results.runs.exists():
        raise HarnessError(f"{results.dir}: no runs.jsonl (run the study first)")
    rows = []
    for record in results.records():
        raw = record.to_dict()
        rows.append({k: v for k, v in raw.items() if k != "axes"} | record.axes)
    return pd.json_normalize(rows, sep="_", max_level=1)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` whole or not at all: a crash leaves the old file or the new one, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
