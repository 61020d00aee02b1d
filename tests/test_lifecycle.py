"""A study's life on disk: changed data is refused, one run holds a results folder at a time,
a killed run's hold is taken over, and Ctrl-C stops with one line and resumes to the same result.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.store import read_records
from harness.records import record_key

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "studies" / "smoke.toml"
ROWS = [(f"{'great' if i % 2 else 'awful'} product number {i}", i % 2) for i in range(80)]
TINY = """\
# python -m harness run study.toml
name = "tiny"
[data]
source = "{source}"
text_column = "text"
label_column = "label"
dedupe = "off"                      # the made-up texts are near duplicates of one another
[grid]
data_sizes = [16]
epochs = [1]
freeze = ["all"]
[seeds]
evaluate = [1]
[search]
trials = 0
"""

pytestmark = pytest.mark.slow


def write_csv(path: Path, flip: int = 0) -> None:
    lines = ["text,label"] + [f"{t},{1 - y if i < flip else y}" for i, (t, y) in enumerate(ROWS)]
    path.write_text("\n".join(lines) + "\n")


def harness(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=os.environ | {"HF_HUB_OFFLINE": "1", "NO_COLOR": "1"} | (env or {}))


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


# --- the data is part of the study's identity ------------------------------------------------

def test_a_changed_data_file_is_refused_naming_the_file_and_both_checksums(tmp_path):
    write_csv(tmp_path / "data.csv")
    (tmp_path / "study.toml").write_text(TINY.format(source="data.csv"))
    assert harness(tmp_path, "study.toml", "--no-report").returncode == 0
    results = tmp_path / "results" / "tiny"
    before = snapshot(results)
    write_csv(tmp_path / "data.csv", flip=40)  # 40 labels flipped
    line = one_line_error(harness(tmp_path, "study.toml"))
    assert "data.csv: the data changed since" in line and line.count("sha256") == 1 and "then" in line
    assert snapshot(results) == before
    write_csv(tmp_path / "data.csv")  # restored: the study goes on (nothing left to train)
    assert harness(tmp_path, "study.toml", "--no-report").returncode == 0


@pytest.fixture
def served(tmp_path):
    """data.csv over http on 127.0.0.1, from a folder of its own."""
    folder = tmp_path / "www"
    folder.mkdir()
    write_csv(folder / "data.csv")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    server.shutdown()


def test_a_changed_file_behind_a_url_sources_cache_is_refused(tmp_path, served):
    (tmp_path / "study.toml").write_text(TINY.format(source=served))
    cache = {"HARNESS_CACHE": str(tmp_path / "cache")}
    assert harness(tmp_path, "study.toml", "--no-report", env=cache).returncode == 0
    cached = next((tmp_path / "cache" / "downloads").rglob("data.csv"))
    write_csv(cached, flip=10)
    line = one_line_error(harness(tmp_path, "study.toml", env=cache))
    assert str(cached) in line and "the data changed since" in line


# --- one run per results folder --------------------------------------------------------------

def smoke_command(results: Path) -> list[str]:
    return [sys.executable, "-m", "harness", "run", str(SMOKE), "--results", str(results), "--quiet", "--no-report"]


def wait_until(condition, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_second_run_is_refused_and_a_killed_runs_hold_is_taken_over(tmp_path):
    results = tmp_path / "results"
    first = subprocess.Popen(smoke_command(results), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=os.environ | {"HF_HUB_OFFLINE": "1"})
    wait_until(lambda: len(read_records(results)) >= 1, first)  # it holds the folder and trains
    second = subprocess.run(smoke_command(results), capture_output=True, text=True, timeout=600,
                            env=os.environ | {"HF_HUB_OFFLINE": "1"})
    line = one_line_error(second)
    assert f"in use by pid {first.pid}" in line and "use --results" in line
    first.send_signal(signal.SIGKILL)
    first.wait()
    third = subprocess.run(smoke_command(results), capture_output=True, text=True, timeout=900,
                           env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert third.returncode == 0, third.stderr
    assert f"the previous session (pid {first.pid}" in third.stderr and "ended without finishing" in third.stderr
    keys = [record_key(r) for r in read_records(results)]
    assert len(keys) == len(set(keys)) == 4 * (2 + 2)  # 4 cells x (2 trials + 2 evaluation seeds), each once


# --- Ctrl-C ----------------------------------------------------------------------------------

def test_ctrl_c_stops_with_one_line_and_the_rerun_ends_as_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(smoke_command(reference), check=True, capture_output=True, timeout=900,
                   env=os.environ | {"HF_HUB_OFFLINE": "1"})
    results = tmp_path / "results"
    command = [c for c in smoke_command(results) if c != "--quiet"]  # the progress display too
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"HF_HUB_OFFLINE": "1"},
                            # as a terminal gives it: a shell's background job would hand on an ignored SIGINT
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_until(lambda: len(read_records(results)) >= 3, proc)
    time.sleep(0.5)  # inside the next run
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1] == "interrupted: every finished run is stored; rerun the same command to resume"
    stored = len(read_records(results))
    assert 3 <= stored < len(read_records(reference))
    subprocess.run(smoke_command(results), check=True, capture_output=True, timeout=900,
                   env=os.environ | {"HF_HUB_OFFLINE": "1"})
    want, got = comparable(read_records(reference)), comparable(read_records(results))
    assert got.keys() == want.keys()
    for key in want:  # on the CPU, bit for bit
        assert got[key] == want[key], key


def comparable(records: list[dict]) -> dict[tuple, dict]:
    """Records keyed and stripped as an uninterrupted run and a resumed one share them.

    A tuning trial cut short by Ctrl-C is retried with its parameters under a new trial number
    (``retry_of`` names the old one), so tuning trials are keyed by cell and parameters, and
    trial numbers and timings are left out.
    """
    numbering = ("seconds", "finished", "trial", "retry_of", "reused_from_trial", "optuna_trial")
    out = {}
    for r in records:
        key = record_key(r) if r["role"] == "eval" else (r["cell"], "tune", json.dumps(r["params"], sort_keys=True))
        assert key not in out, f"two records for {key}"
        out[key] = {k: v for k, v in r.items() if k not in numbering}
    return out
