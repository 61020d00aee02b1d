"""``python -m harness log RESULTS --to mlflow[:WHERE]``: every stored run as one MLflow run.

Parameters (learning rate, batch size, the cell's axes, sizes), per-epoch metrics with step =
epoch, the validation metrics of the restored epoch and the test metrics, tags (cell, seed, role,
status, study, wave, replicate where the record has one). ``mlflow`` writes to ``./mlruns``,
``mlflow:DIR`` to a local directory (MLflow's SQLite store ``DIR/mlflow.db`` with artifacts in
``DIR/artifacts``: MLflow 3 refuses its plain-file store unless told otherwise), ``mlflow:URI`` to a tracking
server (``http(s)://``) or any store MLflow takes (``sqlite:///``, ``postgresql://``). Logging again
adds only the runs not yet there. MLflow is an optional extra (``pip install -e '.[mlflow]'``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import warnings
from pathlib import Path

from harness.errors import HarnessError, redact
from harness.records import RunRecord
from harness.store import Results

INSTALL = "pip install -e '.[mlflow]' in the harness's folder (or pip install mlflow)"
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1", "lr")
KEY_TAG = "harness.key"


def tracking_uri(to: str) -> tuple[str, Path | None]:
    """(MLflow tracking URI, local directory or None) of ``--to``."""
    if to != "mlflow" and not to.startswith("mlflow:"):
        raise HarnessError(f"--to {to}: expected mlflow, mlflow:DIR or mlflow:URI (e.g. mlflow:http://host:5000)")
    where = to.removeprefix("mlflow").removeprefix(":") or "mlruns"
    if re.match(r"^[A-Za-z][\w+.-]*:", where):  # a URI: a server or a store MLflow knows
        return where, None
    folder = Path(where).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"--to {to}: {folder} is a file; expected a directory for MLflow's store")
    return f"sqlite:///{folder / 'mlflow.db'}", folder


def client(uri: str):
    """MLflow's client of ``uri``; one line saying how to install MLflow when it is not."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise HarnessError(f"--to mlflow: MLflow is not installed; {INSTALL}") from None
    for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." on a new store
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def log(results: Results, to: str, experiment: str | None = None) -> dict:
    """Log every stored run not yet in the experiment; returns counts and where they went."""
    raw = results.raw_records()
    if not raw:
        raise HarnessError(f"{results.dir}: no runs.jsonl records (run the study first)")
    manifest = results.manifest() or {}
    study = (manifest.get("study") or {}).get("name") or raw[0].get("study", "study")
    uri, folder = tracking_uri(to)
    mlflow = client(uri)  # the store itself is opened at the first call below
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    name = experiment or study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            found = mlflow.get_experiment_by_name(name)
            exp_id = found.experiment_id if found else mlflow.create_experiment(
                name, artifact_location=(folder / "artifacts").as_uri() if folder else None,
                tags={"harness.study": study, "harness.fingerprint": str(manifest.get("fingerprint"))})
            there = _logged(mlflow, exp_id)
        except MlflowException as exc:
            raise HarnessError(f"--to {redact(to)}: MLflow cannot use {redact(uri)} "
                               f"({str(exc).splitlines()[0][:200]})") from None
        added = 0
        for line in raw:
            record = RunRecord.from_dict(line)
            key = _key(manifest, record)
            if key in there:
                continue
            end = _ms(record.finished)
            start = end - int(1000 * (record.seconds or 0.0)) if end else None
            run = mlflow.create_run(exp_id, start_time=start, tags=_tags(record, line, study, key),
                                    run_name=_name(record))
            metrics = [Metric(k, float(v), end or 0, step) for k, v, step in _metrics(record)]
            params = [Param(k, v) for k, v in _params(record).items()]
            for i in range(0, max(len(metrics), len(params), 1), 900):  # MLflow takes 1,000 metrics a batch
                mlflow.log_batch(run.info.run_id, metrics=metrics[i:i + 900], params=params if i == 0 else [])
            mlflow.set_terminated(run.info.run_id, status=_status(record.status), end_time=end)
            added += 1
    return {"uri": redact(uri), "experiment": name, "added": added, "already": len(raw) - added}


def _logged(mlflow, exp_id: str) -> set[str]:
    """Keys of the runs already in the experiment (every page)."""
    keys, token = set(), None
    while True:
        page = mlflow.search_runs([exp_id], max_results=1000, page_token=token)
        keys |= {r.data.tags.get(KEY_TAG) for r in page}
        token = page.token
        if not token:
            return keys


def _key(manifest: dict, record: RunRecord) -> str:
    """One harness run: the study's fingerprint, the results created time, the record's key."""
    return "|".join(map(str, (manifest.get("fingerprint"), manifest.get("created"), *record.key)))


def _name(record: RunRecord) -> str:
    which = f"seed {record.seed}" if record.role == "eval" else f"trial {record.trial} seed {record.seed}"
    return f"{record.cell} {record.role} {which}"


def _tags(record: RunRecord, raw: dict, study: str, key: str) -> dict[str, str]:
    tags = {"cell": record.cell, "seed": str(record.seed), "role": record.role, "status": record.status,
            "study": study, "device": record.device, KEY_TAG: key}
    if record.role == "eval":
        tags["wave"] = str(record.wave)
        if record.reused_from_trial is not None:
            tags["reused_from_trial"] = str(record.reused_from_trial)
    if record.trial is not None:
        tags["trial"] = str(record.trial)
    if raw.get("replicate") is not None:
        tags["replicate"] = str(raw["replicate"])
    if record.error:
        tags["error"] = record.error[:4000]
    return tags


def _params(record: RunRecord) -> dict[str, str]:
    params = {k: str(v) for k, v in record.params.items()}
    params |= {f"axis.{k}": str(v) for k, v in record.axes.items()}
    for name in ("freeze_depth", "train_size", "val_size", "test_size", "trainable_params", "total_params",
                 "micro_batch"):
        value = getattr(record, name)
        if value is not None:
            params[name] = str(value)
    return {k: v[:6000] for k, v in params.items()}


def _metrics(record: RunRecord) -> list[tuple[str, float, int]]:
    """(name, value, step): each epoch's metrics at step = epoch, then the run's own at its restored epoch."""
    out = [(k, row[k], int(row["epoch"])) for row in record.history for k in EPOCH_METRICS
           if isinstance(row.get(k), (int, float))]
    step = record.best_epoch or 0
    out += [(f"best_val_{k}", v, step) for k, v in record.val.items() if isinstance(v, (int, float))]
    out += [(f"test_{k}", record.test[k], step) for k in ("accuracy", "f1", "loss")
            if isinstance(record.test.get(k), (int, float))]
    out += [(name, getattr(record, name), 0) for name in ("best_epoch", "stopped_epoch", "seconds", "objective")
            if getattr(record, name) is not None]
    return [(k, float(v), s) for k, v, s in out if not math.isinf(float(v))]


def _status(status: str) -> str:
    return {"ok": "FINISHED", "collapsed": "FINISHED", "pruned": "KILLED"}.get(status, "FAILED")


def _ms(when: str | None) -> int | None:
    return int(dt.datetime.fromisoformat(when).timestamp() * 1000) if when else None


__all__ = ["INSTALL", "log", "tracking_uri"]
