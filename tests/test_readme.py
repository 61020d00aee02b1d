"""Every shell block of the README runs as written, at toy size, so the README cannot drift from the code.

Each ```sh block runs as one bash script in a sandbox of its own (the repository's .venv, studies
and Makefile linked in, an empty results/). Commands that would train for long get the toy
overrides of tests/toy.py appended (`--set ...`, or `ARGS=` for make); placeholders a reader fills
in (their CSV, their database) are replaced by a local file and a test storage. Blocks for another
host (the database host's setup) are ```text and not run. `make test` is this suite itself.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.data import cache_dir
from toy import ROOT, TOY, env, review_csv, sandbox

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.S)
SETS = " ".join(f"--set '{s}'" for s in TOY)

pytestmark = pytest.mark.slow


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def toy(command: str, csv: Path, storage: str) -> str | None:
    """The command as the test runs it; None for `make test`."""
    if command.startswith("make test"):
        return None
    command = command.replace("path/to/reviews.csv", str(csv))
    command = command.replace("postgresql://harness@db.lab:5432/optuna", storage)
    if command.startswith("make forecast-check"):  # SGD on 60 sentences for 2 epochs: a search would collapse
        return f"{command} ARGS=\"{SETS} --set 'search.trials=0'\""
    if command.startswith("make ablation"):
        return f"{command} ARGS=\"{SETS}\""
    if re.match(r"\.venv/bin/python -m harness (run|worker|collect|slurm) ", command):
        return f"{command} {SETS}"
    return command


def storage_url(tmp_path: Path) -> str:
    return os.environ.get("HARNESS_TEST_POSTGRES_URL_FOR_README") or f"journal://{tmp_path / 'shared.log'}"


def test_the_readme_has_the_blocks_a_user_needs():
    assert len(BLOCKS) >= 5
    assert any("make ablation" in b for b in BLOCKS) and any("path/to/reviews.csv" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_shell_block_runs(index, tmp_path):
    root = sandbox(tmp_path / "repo")
    csv = review_csv(tmp_path / "reviews.csv")
    (tmp_path / "home").mkdir()  # ~ of the block (~/.pgpass); the data cache stays where it is
    script = [c for c in (toy(c, csv, storage_url(tmp_path)) for c in commands(BLOCKS[index])) if c]
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=root, capture_output=True,
                          text=True, timeout=1500, env=env(HOME=str(tmp_path / "home"), HARNESS_CACHE=str(cache_dir()))
                          | {"HARNESS_STORAGE": ""})
    assert done.returncode == 0, f"block {index}:\n" + "\n".join(script) + "\n" + done.stderr[-4000:]
    assert "Traceback" not in done.stderr


def test_the_own_csv_example_runs_as_written_on_a_file_of_1000_rows(tmp_path):
    """The "Your own CSV" block with nothing shrunk: the plan first (nothing written), then the whole grid
    and its report on a 1,000-row review file."""
    block = next(b for b in BLOCKS if "path/to/reviews.csv" in b)
    csv = review_csv(tmp_path / "reviews.csv", rows=1000)
    root = sandbox(tmp_path / "repo")
    dry, full = [c.replace("path/to/reviews.csv", str(csv)) for c in commands(block)]
    assert "--dry-run" in dry and "--dry-run" not in full

    def shell(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=root, capture_output=True, text=True,
                              timeout=1500, env=env(HARNESS_CACHE=str(cache_dir())))

    planned = shell(dry)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "plan: 3 cells (0 done): 12 tuning trainings and 9 evaluation runs, at most" in planned.stderr
    assert not (root / "results").exists()
    done = shell(full)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    results = root / "results" / "own_csv"
    assert len((results / "runs.jsonl").read_text().splitlines()) == 3 * 4 + 3 * 3
    report = (results / "report.md").read_text()
    assert "- Rows: 1,000 read, 1,000 used; none left out" in report
    assert "- Labels: column `isPositive`: value 0 → class 0 `0`; value 1 → class 1 `1`" in report
