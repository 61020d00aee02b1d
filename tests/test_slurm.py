"""``harness slurm``: a job array of workers against PostgreSQL, run with submitit's local executor.

The same tasks Slurm would start on N nodes start here as local processes (``--local``); they share a
real PostgreSQL database (tests/test_distributed.py's server), and the submitting process collects
every run and writes the report. Bad requests stop before anything is submitted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from test_distributed import postgres, postgres_server  # noqa: F401 - the fixtures: a fresh database each
from toy import ROOT, TOY, env

SMOKE = ROOT / "studies" / "smoke.toml"


def harness(*args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=1200, env=env(COLUMNS="200", HARNESS_STORAGE="", **(extra_env or {})))


@pytest.mark.slow
def test_two_local_array_tasks_share_the_study_through_postgresql(tmp_path, postgres):  # noqa: F811
    pytest.importorskip("submitit", reason="the slurm extra: pip install -e '.[slurm]'")
    results = tmp_path / "smoke"
    done = harness("slurm", SMOKE, "--nodes", "2", "--local", "--storage", postgres, "--results", results,
                   *[a for s in TOY for a in ("--set", s)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 tasks started here" in done.stderr and "Traceback" not in done.stderr
    records = [json.loads(x) for x in (results / "runs.jsonl").read_text().splitlines()]
    keys = Counter((r["cell"], r["role"], r["seed"] if r["role"] == "eval" else r["trial"]) for r in records)
    assert keys and max(keys.values()) == 1  # every unit of work recorded once
    cells = {r["cell"] for r in records}
    assert len(cells) == 4  # the smoke grid: two sizes x two freezing depths
    for cell in cells:
        seeds = {r["seed"] for r in records if r["cell"] == cell and r["role"] == "eval"}
        assert {1, 2} <= seeds  # TOY's evaluation seeds (and any a wave added)
        assert sum(1 for r in records if r["cell"] == cell and r["role"] == "tune") == 1  # TOY: one trial
    workers = {r["worker"] for r in records if r.get("worker")}
    tasks = sorted(p.name for p in (results / "slurm").glob("task_*"))
    assert tasks == ["task_0", "task_1"] and workers  # each task a worker with its own folder
    assert (results / "report.md").exists() and (results / "report.html").exists()
    assert "password" not in done.stderr and postgres.split("@")[0] not in done.stderr.replace("postgresql://", "")


@pytest.mark.parametrize("args, parts", [
    ([], ["--storage: expected the database every node shares"]),
    (["--storage", "sqlite:///x.db"], ["--storage sqlite:///x.db: SQLite serves one process only"]),
    (["--storage", "redis://host/0"], ["--storage redis://host/0: expected postgresql://"]),
    (["--storage", "postgresql://alice:s3cret@127.0.0.1:1/none"], ["cannot open"]),
])
def test_a_request_without_a_shared_storage_is_refused_in_one_line(tmp_path, args, parts):
    done = harness("slurm", SMOKE, "--nodes", "2", "--local", "--results", tmp_path / "r", *args)
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for part in parts:
        assert part in lines[0]
    assert "s3cret" not in done.stderr and not (tmp_path / "r").exists()


def test_without_submitit_one_line_says_how_to_install_it(tmp_path):
    fake = tmp_path / "site" / "submitit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named submitit')\n")
    done = harness("slurm", SMOKE, "--nodes", "1", "--local", "--storage", f"journal://{tmp_path / 'j.log'}",
                   "--results", tmp_path / "r", extra_env={"PYTHONPATH": str(tmp_path / "site")})
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "submitit is not installed" in lines[0] and "pip install -e '.[slurm]'" in lines[0]
