"""``harness log RESULTS --to mlflow``: every stored run read back with MLflow's own client.

The fixed store (tests/fixtures/report_store) is logged to a local directory, to ./mlruns and to
a real MLflow tracking server on loopback; each harness run must come back as one MLflow run with
its parameters, every epoch's metrics at step = epoch, its test metrics and its tags.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.__main__ import main
from harness.records import RunRecord
from harness.report import tracking

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")
from mlflow import MlflowClient  # noqa: E402

STORE = Path(__file__).parent / "fixtures" / "report_store"
RECORDS = [RunRecord.from_dict(json.loads(x)).to_dict() for x in (STORE / "runs.jsonl").read_text().splitlines()]


def key(tags: dict) -> tuple:
    return tags["cell"], tags["role"], int(tags["seed"]), int(tags["trial"]) if "trial" in tags else None


def read_back(client: MlflowClient, experiment: str = "smoke") -> dict[tuple, object]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    return {key(r.data.tags): r for r in runs}


def check_every_run(client: MlflowClient) -> None:
    runs = read_back(client)
    assert len(runs) == len(RECORDS)
    for record in RECORDS:
        run = runs[(record["cell"], record["role"], record["seed"], record.get("trial"))]
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert tags["status"] == record["status"] and tags["study"] == "smoke"
        assert run.info.status == {"ok": "FINISHED", "collapsed": "FINISHED", "pruned": "KILLED"}.get(
            record["status"], "FAILED")
        assert float(params["lr"]) == record["params"]["lr"] and int(params["batch_size"]) == record["params"]["batch_size"]
        assert params["axis.freeze"] == str(record["axes"]["freeze"])
        if record["role"] == "eval" and record["test"].get("accuracy") is not None:
            assert metrics["test_accuracy"] == record["test"]["accuracy"]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        want = [(h["epoch"], h["val_accuracy"]) for h in record["history"] if "val_accuracy" in h]
        assert sorted((m.step, m.value) for m in history) == want
        if record.get("best_epoch"):
            assert metrics["best_epoch"] == record["best_epoch"]


def test_every_run_round_trips_through_a_local_directory(tmp_path, capsys):
    code = main(["log", str(STORE), "--to", f"mlflow:{tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 0 and f"{len(RECORDS)} runs logged to sqlite:///{tmp_path / 'runs' / 'mlflow.db'}" in err
    check_every_run(MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"))
    # again: nothing is logged twice
    assert main(["log", str(STORE), "--to", f"mlflow:{tmp_path / 'runs'}"]) == 0
    assert "0 runs logged" in capsys.readouterr().err
    assert len(read_back(MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"))) == len(RECORDS)


def test_plain_mlflow_writes_mlruns_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["log", str(STORE), "--to", "mlflow", "--experiment", "mine"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert len(read_back(client, "mine")) == len(RECORDS)


@pytest.mark.parametrize("to, uri", [
    ("mlflow", None), ("mlflow:http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("mlflow:sqlite:///x/y.db", "sqlite:///x/y.db"), ("mlflow:some/dir", None),
])
def test_where_each_target_goes(to, uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    got, folder = tracking.tracking_uri(to)
    if uri:
        assert (got, folder) == (uri, None)
    else:
        where = tmp_path / ("mlruns" if to == "mlflow" else "some/dir")
        assert (got, folder) == (f"sqlite:///{where / 'mlflow.db'}", where)


def test_an_unknown_target_is_one_line(capsys):
    assert main(["log", str(STORE), "--to", "wandb"]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert lines == ["error: --to wandb: expected mlflow, mlflow:DIR or mlflow:URI (e.g. mlflow:http://host:5000)"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_every_run_round_trips_through_a_tracking_server(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                               "--default-artifact-root", (tmp_path / "artifacts").as_uri(), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):  # the server's first start creates its tables
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the MLflow server did not come up in 2 minutes")
        done = subprocess.run([sys.executable, "-m", "harness", "log", str(STORE), "--to", f"mlflow:{url}"],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        check_every_run(MlflowClient(tracking_uri=url))
    finally:  # the server starts workers of its own: end its whole process group, which it leads
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(2)
        try:
            os.killpg(server.pid, signal.SIGKILL)  # any worker still there
        except ProcessLookupError:
            pass
        server.wait(timeout=30)
