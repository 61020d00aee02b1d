"""``harness slurm``: a Slurm job array of N tasks, each a ``harness worker`` on its own node, sharing
the study through one Optuna storage (PostgreSQL), submitted with submitit (the ``slurm`` extra).

Each task works until no unit is left (harness.run.worker) and writes its runs into a folder of its
own (``results/<study>/slurm/task_<i>``), so no two nodes write one file over a network file system;
the submitting process then collects every run from the storage into ``results/<study>`` and writes
the report. ``--local`` runs the same tasks as local processes (submitit's local executor): a dry run
on one machine, and the tests'.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, redact

INSTALL = "pip install -e '.[slurm]' in the harness's folder (or pip install submitit)"


@dataclass(frozen=True)
class Request:
    """What each node gets: from the command line of ``harness slurm``."""

    nodes: int
    processes: int = 1  # workers per node (one per GPU)
    partition: str = ""
    minutes: int = 24 * 60
    gpus: int = 0  # per node
    cpus: int = 0  # per node (0: Slurm's default)
    mem_gb: int = 0  # per node (0: Slurm's default)
    local: bool = False


def task(argv: list[str]) -> str:
    """One array task: ``harness worker`` with these arguments; raises when the worker fails."""
    done = subprocess.run([sys.executable, "-m", "harness", "worker", *argv])
    if done.returncode:
        raise RuntimeError(f"harness worker exited with status {done.returncode}")
    return "done"


def task_args(study_file: Path, overrides: list[str], storage: str, folder: Path, index: int,
              processes: int, heartbeat: int, grace: int) -> list[str]:
    sets = [item for o in overrides for item in ("--set", o)]
    return [str(study_file), "--storage", storage, "--results", str(folder / f"task_{index}"), *sets,
            "--heartbeat", str(heartbeat), "--grace", str(grace), "--no-report", "--quiet",
            *(["--processes", str(processes)] if processes > 1 else [])]


def submit(request: Request, study_name: str, study_file: Path, overrides: list[str], storage: str,
           results: Path, heartbeat: int = 60, grace: int = 180) -> list:
    """Submit the array (or start it locally); returns submitit's jobs, one per node."""
    try:
        import submitit
    except ImportError:
        raise HarnessError(f"harness slurm: submitit is not installed; {INSTALL}") from None
    if request.nodes < 1:
        raise HarnessError(f"--nodes {request.nodes}: expected at least 1")
    folder = results.resolve() / "slurm"
    executor = submitit.AutoExecutor(folder=folder / "logs" / "%j", cluster="local" if request.local else "slurm")
    executor.update_parameters(
        name=f"harness-{study_name}", timeout_min=request.minutes, nodes=1, tasks_per_node=1,
        gpus_per_node=request.gpus or None, cpus_per_task=request.cpus or None, mem_gb=request.mem_gb or None,
        slurm_partition=request.partition or None, slurm_array_parallelism=request.nodes)
    argv = [task_args(study_file.resolve(), overrides, storage, folder, i, request.processes, heartbeat, grace)
            for i in range(request.nodes)]
    try:
        return executor.map_array(task, argv)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise HarnessError(f"harness slurm: cannot submit with sbatch ({str(exc).splitlines()[0][:200]}); on a "
                           "machine without Slurm, --local runs the tasks here") from None


def wait(jobs: list) -> list[str]:
    """Wait for every task; the failures, one line each (empty when all finished)."""
    failed = []
    for job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - a task's failure is reported, the others still awaited
            failed.append(f"task {job.job_id}: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else exc!r}")
    release(jobs)
    return failed


def release(jobs: list) -> None:
    """Drop the job objects now: waiting leaves them in reference cycles, and collected only at interpreter
    exit their ``__del__`` fails and prints a traceback."""
    jobs.clear()
    gc.collect()


def check_storage(storage: str) -> None:
    """A storage every node can reach: PostgreSQL (or a journal file on a file system they share)."""
    if storage.startswith("sqlite"):
        raise HarnessError(f"--storage {redact(storage)}: SQLite serves one process only; give the nodes a "
                           "postgresql:// database")
    if not storage.startswith(("postgresql", "journal://")):
        raise HarnessError(f"--storage {redact(storage)}: expected postgresql://user@host/db (or journal:///path on "
                           "a file system every node shares)")


__all__ = ["INSTALL", "Request", "check_storage", "release", "submit", "task", "wait"]
