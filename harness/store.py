"""The append-only result store: ``runs.jsonl`` plus ``manifest.json`` in ``results/<study>/``.

A record is one JSON line, written with a single ``write`` and ``fsync``ed, so a
crash leaves at most one torn last line; readers ignore it and the next writer
cuts it off before appending. Nothing is ever rewritten in place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.sources import redact

RUNS = "runs.jsonl"
MANIFEST = "manifest.json"
PACKAGES = ("torch", "transformers", "optuna", "numpy", "pandas", "scipy", "seaborn", "rich", "joblib")


def read_records(directory: str | Path) -> list[dict]:
    """Every complete record; a torn last line (a crash mid-write) is skipped."""
    path = Path(directory) / RUNS
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # torn tail
            records.append(json.loads(line))
    return records


def load_runs(directory: str | Path) -> pd.DataFrame:
    """The store as a DataFrame, one row per record, cell axes and test metrics as columns."""
    records = read_records(directory)
    if not records:
        return pd.DataFrame()
    frame = pd.json_normalize(records, sep="_", max_level=1)
    return frame


class Store:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / RUNS

    def done(self) -> set[tuple]:
        """Keys of finished records: (cell, role, seed) for evaluation, (cell, role, trial) for tuning."""
        return {record_key(r) for r in read_records(self.dir)}

    def append(self, record: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        line = json.dumps(record, sort_keys=True, allow_nan=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def _repair_tail(self) -> None:
        """Cut a torn last line left by a crash, so the next record starts on its own line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) == b"\n":
                return
            data = handle.seek(0) or handle.read()
            handle.truncate(data.rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())


def record_key(record: dict) -> tuple:
    return (record["cell"], record["role"], record["seed"] if record["role"] == "eval" else record["trial"])


def check_owner(directory: Path, study_name: str, fingerprint: str) -> None:
    """Refuse a results directory written by a different study (or a changed one)."""
    path = directory / MANIFEST
    if not path.exists():
        return
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise HarnessError(f"{path}: not valid JSON; move the directory aside or remove it") from None
    if manifest.get("fingerprint") != fingerprint:
        raise HarnessError(
            f"{directory}: written by study '{manifest.get('study', {}).get('name')}' with fingerprint "
            f"{manifest.get('fingerprint')}, not this study '{study_name}' ({fingerprint}); "
            "use --results for a new directory")


def write_manifest(directory: Path, study: dict, fingerprint: str, study_file: str, device: str) -> None:
    """Provenance: resolved study, git commit, package versions, device; first and last start times."""
    path = directory / MANIFEST
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    old = json.loads(path.read_text()) if path.exists() else {}
    if isinstance(study.get("data"), dict) and "source" in study["data"]:  # no user:password@ on disk
        study = study | {"data": study["data"] | {"source": redact(study["data"]["source"])}}
    sessions = old.get("sessions", []) + [{"started": now, "device": device, "host": platform.node()}]
    manifest = {
        "study": study, "fingerprint": fingerprint, "study_file": study_file,
        "git_commit": git_commit(), "packages": package_versions(), "python": platform.python_version(),
        "device": device, "created": old.get("created", now), "sessions": sessions,
    }
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(manifest, indent=2, sort_keys=True))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` whole or not at all: a crash leaves the old file or the new one, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


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
