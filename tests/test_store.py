"""The results folder: a torn last record is skipped and reported; the audit's pairs sit beside the splits."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.records import RunRecord
from harness.report.provenance import torn
from harness.store import Results


def stored(directory, n: int = 2) -> Results:
    results = Results(directory)
    for seed in range(n):
        results.append(RunRecord(study="s", cell="c", axes={}, role="eval", seed=seed, params={}, device="cpu"))
    return results


def test_a_torn_last_line_is_skipped_said_in_the_provenance_and_cut_by_the_next_append(tmp_path):
    results = stored(tmp_path)
    with open(results.runs, "a") as handle:
        handle.write('{"study": "s", "cell": "c", "ro')
    assert [r.seed for r in results.records()] == [0, 1] and results.torn_tail() == 31
    line = torn(SimpleNamespace(results=results))
    assert line == ["- `runs.jsonl` ends in a torn line (31 bytes without a newline: a record cut short by a crash); "
                    "it was skipped, and the next run of the study cuts it off"]
    stored(tmp_path, 1)
    assert results.torn_tail() == 0 and [r.seed for r in results.records()] == [0, 1, 0]
    assert torn(SimpleNamespace(results=results)) == []


@pytest.mark.parametrize("line, said", [("[1, 2]", "line 2: expected a JSON object, found list"),
                                        ('{"cell": "c"}', "line 2: not a run record")])
def test_a_line_that_is_json_but_not_a_record_is_named(tmp_path, line, said):
    results = stored(tmp_path, 1)
    with open(results.runs, "a") as handle:
        handle.write(line + "\n")
    stored(tmp_path, 1)
    with pytest.raises(HarnessError, match=said):
        results.records()


def test_the_pairs_are_written_once_beside_the_splits(tmp_path):
    results = Results(tmp_path)
    results.dir.mkdir(exist_ok=True)
    pairs = pd.DataFrame({"kind": ["near"], "row_a": [3], "row_b": [9], "jaccard": [0.85]})
    results.write_pairs(pairs)
    results.write_pairs(pairs.assign(row_b=10))  # a later session: the first session's pairs stay
    assert results.pairs().to_dict("records") == [{"kind": "near", "row_a": 3, "row_b": 9, "jaccard": 0.85}]
