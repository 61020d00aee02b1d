"""Bad input through the real command line: one clear line, exit status 2, results/ untouched.

Each case writes a small study and data file in a temporary directory, puts a
results directory there that the study owns (so that the owner check passes
and the case reaches its own check), runs ``python -m harness run``, and checks
the message names the file, key or column and that no byte of results/ moved.
Every case fails before any training. Most cases run through the same ``main()`` in this
process, which saves a subprocess start (~5 s) each; a few representative ones run the real
command in its own process (``SUBPROCESS``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.__main__ import main
from harness.data import load_dataset
from harness.errors import HarnessError
from harness.records import RunRecord
from harness.store import Results
from harness.study import DataSpec, Study, load_study

REVIEWS = Path(__file__).parents[2] / "shared" / "data" / "amazon_multidomain_8k.csv"

STUDY = """\
# python -m harness run study.toml
name = "bad"
[data]
source = "data.csv"
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


def csv(rows: list[tuple[str, str]], header: str = "text,label") -> bytes:
    return ("\n".join([header] + [f"{t},{y}" for t, y in rows]) + "\n").encode()


GOOD_ROWS = [(f"{'great' if i % 2 else 'awful'} product {i}", str(i % 2)) for i in range(60)]
GOOD = csv(GOOD_ROWS)
REAL = [f'data.source="{REVIEWS}"', 'data.text_column="reviewText"']

# id, data.csv bytes, --set overrides, expected parts of the one-line message
CASES = [
    ("text-column-missing", GOOD, ['data.text_column="review"'],
     ["data.csv", "data.text_column 'review' is not a column", "columns: text, label"]),
    ("label-column-misnamed", GOOD, REAL + ['data.label_column="ispositive"'],
     ["amazon_multidomain_8k.csv", "data.label_column 'ispositive' is not a column", "isPositive"]),
    ("empty-file", b"", [], ["data.csv: the file is empty"]),
    ("header-only", b"text,label\n", [], ["data.csv: the file has no rows"]),
    ("latin-1-encoding", "text,label\ncaf\xe9 cr\xe8me,1\nna\xefve,0\n".encode("latin-1"), [],
     ["data.csv: not UTF-8 text"]),
    ("utf-16-encoding", GOOD.decode().encode("utf-16"), [], ["data.csv: not UTF-8 text"]),
    ("whitespace-only-texts", csv([("   ", "0"), ('""', "1"), ("\t", "1")]), [],
     ["data.csv", "column 'text' has no non-empty text"]),
    ("nan-label", csv(GOOD_ROWS[:10] + [("a fine text", "")] + GOOD_ROWS[10:]), [],
     ["data.csv", "label column 'label' has 1 missing values", "row 10"]),
    ("non-numeric-label-with-thresholds", csv(GOOD_ROWS + [("a fine text", "positive")]),
     ["data.thresholds=[0.5]"], ["data.csv", "label column 'label' must be numeric", "'positive'"]),
    ("unexpected-label-value", csv(GOOD_ROWS + [("a fine text", "2")]), ['data.class_names=["neg", "pos"]'],
     ["data.csv", "data.class_names has 2 names but label column 'label' has 3 values"]),
    ("single-class", csv([(t, "1") for t, _ in GOOD_ROWS]), [],
     ["data.csv", "label column 'label' has a single class"]),
    ("single-class-in-first-rows", GOOD, REAL + ['data.label_column="isPositive"', "data.max_rows=300"],
     ["amazon_multidomain_8k.csv", "label column 'isPositive' has a single class"]),
    ("data-size-larger-than-data", GOOD, REAL + ['data.label_column="isPositive"', "grid.data_sizes=[9000]"],
     ["grid.data_sizes: 9000 is larger than the training pool"]),
    ("freeze-deeper-than-model", GOOD, ["grid.freeze=[9]"],
     ["grid.freeze: 9 is deeper than the model's 6 encoder blocks"]),
    ("unknown-model-offline", GOOD, ['model.name="no-such-org/no-such-model"'],
     ["model.name 'no-such-org/no-such-model'", "not in the Hugging Face cache"]),
    ("unreachable-url", GOOD, ['data.source="http://127.0.0.1:9/x.csv"'],
     ["data.source 'http://127.0.0.1:9/x.csv'", "cannot download"]),
    ("checksum-mismatch", GOOD, [f'data.sha256="{"0" * 64}"'], ["data.source 'data.csv'", "sha256 is", "expected 000"]),
    ("no-such-data-file", GOOD, ['data.source="nope.csv"'], ["data.source 'nope.csv'", "no such file"]),
    ("everything-one-group", GOOD, ['data.group_column="label"', "data.dedupe=\"off\""],
     ["data.csv", "data.val_fraction 0.1 leaves the split empty", "form 2 group(s)"]),
    ("data-size-without-every-class", GOOD, ["grid.data_sizes=[1]"],
     ["grid.data_sizes: 1 training examples hold no", "at least one example of each of the 2 classes"]),
]

# errors in the study itself, caught as it loads, before torch is imported: run in this process
# through the same entry point, main(), to save a subprocess start each
STUDY_CASES = [
    ("unknown-top-level-key", ["epochs=3"], ["study.toml", "key 'epochs': unknown key"]),
    ("unknown-nested-key", ["train.lr=1e-4"], ["study.toml", "key 'train.lr': unknown key"]),
    ("wrong-type", ["search.trials=1.5"], ["study.toml", "key 'search.trials': expected int, got float"]),
    ("wrong-type-in-list", ['grid.epochs=["five"]'], ["study.toml", "key 'grid.epochs': expected int"]),
    ("negative-epochs", ["grid.epochs=[-1]"], ["study.toml", "key 'grid.epochs'", "positive"]),
    ("negative-data-size", ["grid.data_sizes=[-5]"], ["study.toml", "key 'grid.data_sizes'", "positive"]),
    ("lr-zero", ["search.lr=[0.0, 1e-3]"], ["study.toml", "key 'search.lr'", "0 < low"]),
    ("fixed-lr-negative", ["search.fixed_lr=-1e-4"], ["study.toml", "key 'search.fixed_lr'"]),
    ("max-length-impossible", ["model.max_length=4"], ["study.toml", "key 'model.max_length'"]),
    ("malformed-set", ["search.trials"], ["--set 'search.trials'", "expected key=value"]),
    ("no-tuning-seed", ["search.trials=2", "seeds.tune=[]"], ["study.toml", "key 'seeds.tune'",
                                                                 "expected at least one seed"]),
    ("vary-unknown-key", ['grid.vary={"train.optimiser" = ["sgd"]}'],
     ["study.toml", "key 'grid.vary.train.optimiser'", "expected a model, search or train key"]),
    ("vary-data-key", ['grid.vary={"data.max_rows" = [10, 20]}'], ["key 'grid.vary.data.max_rows'"]),
    ("vary-bad-value", ['grid.vary={"train.optimizer" = ["sgd", "adam"]}'],
     ["key 'grid.vary.train.optimizer'", "value 'adam'", "expected \"adamw\" or \"sgd\""]),
    ("analysis-alpha", ["analysis.alpha=0.7"], ["key 'analysis.alpha'", "(0, 0.5)"]),
    ("split-thresholds-without-a-score", ["data.split_thresholds=[0.0]"],
     ["study.toml", "key 'data.split_thresholds': expected only with data.thresholds"]),
    ("labelling-study-not-a-name", ['analysis.labelling_study="../x"'],
     ["key 'analysis.labelling_study'", "expected a study name"]),
    ("replicates-zero", ["search.replicates=0", "search.trials=2"],
     ["study.toml", "key 'search.replicates'", "expected an integer >= 1"]),
    ("replicates-not-an-integer", ["search.replicates=1.5"], ["study.toml", "key 'search.replicates'",
                                                              "expected int, got float"]),
    ("replicates-without-tuning", ["search.replicates=2"], ["key 'search.replicates'", "needs search.trials > 0"]),
    ("max-trials-below-trials", ["search.trials=4", "search.max_trials=2"], ["key 'search.max_trials'"]),
]


def write_study(directory: Path, text: str = STUDY) -> Path:
    path = directory / "study.toml"
    path.write_text(text)
    return path


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def owned_results(root: Path, study_file: Path, overrides: list[str], owner: str | None = None) -> Path:
    """results/bad as a finished earlier session of this study left it (or of study ``owner``)."""
    try:
        study = load_study(study_file, overrides)
    except HarnessError:  # the case fails at load time: any owner will do
        study = Study(name="bad")
    if owner:
        study = dataclasses.replace(study, name=owner)
    results = Results(root / "results" / "bad")
    results.write_manifest(study, str(study_file), "cpu")
    results.append(RunRecord(study="bad", cell="n=16|ep=1|freeze=all", axes={"data_size": 16, "epochs": 1,
                             "freeze": "all"}, role="eval", seed=1, params={}, device="cpu"))
    results = results.dir
    (results / "report.md").write_text("# an earlier report\n")
    return results


def harness_run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "harness", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(done: subprocess.CompletedProcess, parts: list[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


SUBPROCESS = {"text-column-missing", "unknown-model-offline", "data-size-without-every-class"}


@pytest.mark.parametrize("name, data, overrides, parts", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_results_untouched(tmp_path, monkeypatch, capsys, name, data, overrides,
                                                            parts):
    (tmp_path / "data.csv").write_bytes(data)
    results = owned_results(tmp_path, write_study(tmp_path), overrides)
    before = snapshot(tmp_path)
    args = ["study.toml", *[a for o in overrides for a in ("--set", o)]]
    if name in SUBPROCESS:
        done = harness_run(tmp_path, *args)
    else:
        for key, value in {"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "80"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(tmp_path)
        code = main(["run", *args])
        out = capsys.readouterr()
        done = subprocess.CompletedProcess([], code, out.out, out.err)
    assert_one_line_error(done, parts)
    assert snapshot(tmp_path) == before  # nothing in results/ (or beside it) was written
    assert sorted(os.listdir(results)) == ["manifest.json", "report.md", "runs.jsonl"]


@pytest.mark.parametrize("overrides, parts", [c[1:] for c in STUDY_CASES], ids=[c[0] for c in STUDY_CASES])
def test_bad_study_value_is_one_line_exit_2_and_results_untouched(tmp_path, monkeypatch, capsys, overrides,
                                                                   parts):
    (tmp_path / "data.csv").write_bytes(GOOD)
    owned_results(tmp_path, write_study(tmp_path), overrides)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = main(["run", "study.toml", *[a for o in overrides for a in ("--set", o)]])
    out = capsys.readouterr()
    assert_one_line_error(subprocess.CompletedProcess([], code, out.out, out.err), parts)
    assert snapshot(tmp_path) == before


def test_the_command_leaves_ctrl_c_handling_as_it_found_it(tmp_path, monkeypatch, capsys):
    """main() catches Ctrl-C its own way while it runs; a caller in the same process gets Python's back."""
    import signal

    from harness.errors import INTERRUPTED

    (tmp_path / "data.csv").write_bytes(GOOD)
    write_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    hook = sys.unraisablehook
    assert main(["run", "study.toml", "--set", "search.trials=1.5"]) == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sys.unraisablehook is hook and not INTERRUPTED.is_set()


# cases about the study file itself or the results directory, not a --set away from the good study
@pytest.mark.parametrize("study_text, study_name, owner, parts", [
    (STUDY, "study.toml", "other", ["results/bad: written by study 'other', not this study 'bad'",
                                    "use --results for a new directory"]),
    (STUDY.replace("trials = 0", "trials = 0\ntrails = 2"), "study.toml", None,
     ["study.toml", "key 'search.trails': unknown key"]),
    (STUDY.replace('name = "bad"', 'name = "bad"\nname = "twice"'), "study.toml", None,
     ["study.toml", "not a valid TOML file"]),
    (STUDY, "missing.toml", None, ["missing.toml: no such study file"]),
    (STUDY.replace('"data.csv"', '"http://user:s3cret@127.0.0.1:9/x.csv"'), "study.toml", None,
     ["data.source 'http://***@127.0.0.1:9/x.csv'", "cannot download"]),
    (STUDY.replace('"data.csv"', '"https://user:s3cret@127.0.0.1/x.csv"'), "study.toml", None,
     ["data.source 'https://***@127.0.0.1/x.csv'", "cannot download"]),  # urllib alone prints it as a bad port
], ids=["results-of-another-study", "misspelt-key-in-file", "duplicate-key", "no-study-file",
        "credentials-in-url-redacted", "credentials-in-url-without-port"])
def test_bad_study_file_or_results_directory(tmp_path, study_text, study_name, owner, parts):
    (tmp_path / "data.csv").write_bytes(GOOD)
    owned_results(tmp_path, write_study(tmp_path, study_text), [], owner=owner)
    before = snapshot(tmp_path)
    line = assert_one_line_error(harness_run(tmp_path, study_name), parts)
    assert "s3cret" not in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("texts, dropped", [
    (["  ", "", "\t\n"], 3),
    ([], 0),
])
def test_empty_texts_are_dropped_and_counted(tmp_path, texts, dropped):
    rows = GOOD_ROWS + [(f'"{t}"', "1") for t in texts]
    (tmp_path / "data.csv").write_bytes(csv(rows))
    dataset = load_dataset(DataSpec(source=str(tmp_path / "data.csv"), text_column="text", label_column="label",
                                     dedupe="off"))
    assert dataset.dropped_empty == dropped
    assert len(dataset.texts) == len(GOOD_ROWS)


def test_credentials_in_a_data_url_never_reach_the_manifest(tmp_path):
    study = load_study(write_study(tmp_path, STUDY.replace('"data.csv"', '"https://ann:s3cret@example.org/d.csv"')))
    Results(tmp_path / "results").write_manifest(study, "study.toml", "cpu")
    text = (tmp_path / "results" / "manifest.json").read_text()
    assert "s3cret" not in text and "https://***@example.org/d.csv" in text


def _not_writable(tmp_path: Path) -> Path:
    """A directory this process may not write into: /proc/1 for root (who may write anywhere else)."""
    if os.geteuid() == 0:
        return Path("/proc/1")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked


@pytest.mark.parametrize("where, parts", [
    ("file", ["a file is in its place"]),
    ("under-file", ["is a file, so no directory can be made under it"]),
    ("not-writable", ["is not writable (permission denied)"]),
])
def test_a_results_directory_that_cannot_be_written(tmp_path, where, parts):
    (tmp_path / "data.csv").write_bytes(GOOD)
    write_study(tmp_path)
    (tmp_path / "plain").write_text("a file\n")
    target = {"file": tmp_path / "plain", "under-file": tmp_path / "plain" / "results",
              "not-writable": _not_writable(tmp_path) / "results"}[where]
    before = snapshot(tmp_path)
    line = assert_one_line_error(harness_run(tmp_path, "study.toml", "--results", str(target)), parts)
    assert str(target) in line
    assert snapshot(tmp_path) == before


def test_load_runs_of_a_missing_directory_is_a_clear_error(tmp_path):
    from harness import load_runs

    with pytest.raises(HarnessError, match="no such results directory"):
        load_runs(tmp_path / "typo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no runs.jsonl"):
        load_runs(tmp_path / "empty")


def test_the_report_of_a_missing_directory_is_one_line_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness.report", str(tmp_path / "typo")], capture_output=True,
                          text=True, timeout=300)
    assert_one_line_error(done, [str(tmp_path / "typo"), "no manifest.json"])


def test_the_table_has_at_least_thirty_kinds_of_bad_input():
    assert len(CASES) + len(STUDY_CASES) + 6 + 3 + 2 >= 30


# --- the commands that read results folders: export, log, compare ----------------------------
# each on copies of the fixed store (tests/fixtures/report_store): nothing trains, nothing is written

FIXED = Path(__file__).parent / "fixtures" / "report_store"

READER_CASES = [
    ("export-unknown-cell", ["export", "{a}", "--out", "{tmp}/model", "--cell", "n=1|ep=1|freeze=all"], {},
     ["--cell n=1|ep=1|freeze=all: not a cell of", "its cells: n=64|ep=1|freeze=all"]),
    ("export-folder-without-runs", ["export", "{empty}", "--out", "{tmp}/model"], {},
     ["empty: no runs.jsonl records (run the study first)"]),
    ("log-folder-without-runs", ["log", "{empty}", "--to", "mlflow:{tmp}/mlruns"], {},
     ["empty: no runs.jsonl records (run the study first)"]),
    ("log-without-the-mlflow-extra", ["log", "{a}", "--to", "mlflow:{tmp}/mlruns"], {"PYTHONPATH": "{tmp}/site"},
     ["--to mlflow: MLflow is not installed", "pip install -e '.[mlflow]'"]),
    ("compare-folder-without-runs", ["compare", "{a}", "{empty}"], {},
     ["empty: no runs.jsonl records (run the study first)"]),
    ("compare-different-test-sets", ["compare", "{a}", "{other}"], {},
     ["other: its test set differs from", "compare needs the same test examples"]),
]


@pytest.mark.parametrize("args, extra_env, parts", [c[1:] for c in READER_CASES], ids=[c[0] for c in READER_CASES])
def test_bad_input_to_the_commands_that_read_results(tmp_path, args, extra_env, parts):
    import shutil

    shutil.copytree(FIXED, tmp_path / "a")
    (tmp_path / "empty").mkdir()
    shutil.copy(FIXED / "manifest.json", tmp_path / "empty")
    (tmp_path / "empty" / "runs.jsonl").write_text("")
    shutil.copytree(FIXED, tmp_path / "other")
    splits = json.loads((tmp_path / "other" / "splits.json").read_text())
    labels = splits["test_labels"]  # another draw of the test set: its first label differs
    splits["test_labels"] = ("1" if labels[0] == "0" else "0") + labels[1:]
    (tmp_path / "other" / "splits.json").write_text(json.dumps(splits))
    (tmp_path / "site" / "mlflow").mkdir(parents=True)  # an mlflow that cannot be imported
    (tmp_path / "site" / "mlflow" / "__init__.py").write_text("raise ImportError('No module named mlflow')\n")
    before = snapshot(tmp_path)
    fill = lambda text: text.format(a=tmp_path / "a", empty=tmp_path / "empty", other=tmp_path / "other",  # noqa: E731
                                    tmp=tmp_path)
    done = subprocess.run([sys.executable, "-m", "harness", *map(fill, args)], capture_output=True, text=True,
                          timeout=300, env=os.environ | {"HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "80",
                                                         "PYTHONDONTWRITEBYTECODE": "1"}
                          | {k: fill(v) for k, v in extra_env.items()})
    assert_one_line_error(done, parts)
    assert snapshot(tmp_path) == before  # nothing written beside the folders, nothing in them


@pytest.mark.parametrize("command", ["run", "report"])
def test_a_corrupt_record_in_the_middle_of_the_store_is_one_line_naming_it(tmp_path, command):
    """Not a torn last line (a crash mid-write, skipped) but a damaged one with records after it."""
    (tmp_path / "data.csv").write_bytes(GOOD)
    results = owned_results(tmp_path, write_study(tmp_path), [])
    for seed in (2, 3):
        Results(results).append(RunRecord(study="bad", cell="n=16|ep=1|freeze=all", axes={"data_size": 16, "epochs": 1,
                                          "freeze": "all"}, role="eval", seed=seed, params={}, device="cpu"))
    lines = (results / "runs.jsonl").read_text().splitlines(keepends=True)
    (results / "runs.jsonl").write_text(lines[0] + lines[1][:50] + "\n" + lines[2])
    before = snapshot(tmp_path)
    if command == "run":
        done = harness_run(tmp_path, "study.toml")
    else:
        done = subprocess.run([sys.executable, "-m", "harness.report", "results/bad"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert_one_line_error(done, ["results/bad/runs.jsonl: line 2: not a valid JSON record", "remove that line"])
    assert snapshot(tmp_path) == before


def test_a_hub_model_that_cannot_be_had_fails_at_once_without_retries(tmp_path):
    (tmp_path / "data.csv").write_bytes(GOOD)
    owned_results(tmp_path, write_study(tmp_path), [])
    before = snapshot(tmp_path)
    done = harness_run(tmp_path, "study.toml", "--set", "model.name=someone/no-such-model")
    assert_one_line_error(done, ["model.name 'someone/no-such-model': not a local directory, not in the Hugging Face "
                                 "cache", "(HF_HUB_OFFLINE is set)"])
    assert "Retry" not in done.stderr and snapshot(tmp_path) == before
