"""harness.data.audit: planted duplicates and conflicts are found, LSH agrees with brute force, the policies hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from harness.data import audit, minhash
from harness.data import split
from harness.data import read_builtin

# the shared review file beside the project (HARNESS_REVIEWS overrides, e.g. from a second checkout)
REVIEWS = Path(os.environ.get("HARNESS_REVIEWS", Path(__file__).parents[2] / "shared" / "data" /
                              "amazon_multidomain_8k.csv"))


@pytest.fixture(scope="module")
def snippets() -> pd.DataFrame:
    frame = read_builtin("amazon-snippets")
    return frame.assign(label=(frame["score"] > 0).astype(int))


@pytest.fixture(scope="module")
def grouped(snippets) -> audit.Audit:
    return audit.audit(snippets["text"], snippets["label"].to_numpy(), snippets["review"].to_numpy(), policy="group")


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    if not REVIEWS.is_file():
        pytest.skip(f"no review file at {REVIEWS}")
    return pd.read_csv(REVIEWS, nrows=500)  # 2 texts of these are held twice already


def brute_force_pairs(texts, threshold: float = audit.THRESHOLD) -> set[tuple[int, int]]:
    """Every pair of distinct normalised texts with Jaccard >= threshold, by a sparse product of all pairs."""
    normal = [audit.normalise(t) for t in texts]
    first = {t: row for row, t in reversed(list(enumerate(normal)))}
    distinct = list(first)
    sets = [audit.shingles(t) for t in distinct]
    vocab: dict[bytes, int] = {}
    rows, cols = zip(*[(i, vocab.setdefault(s, len(vocab))) for i, shingle_set in enumerate(sets) for s in shingle_set])
    x = sparse.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(sets), len(vocab)))
    common = sparse.triu(x @ x.T, k=1).tocoo()
    size = np.array([len(s) for s in sets])
    keep = common.data / (size[common.row] + size[common.col] - common.data) >= threshold
    return {tuple(sorted((first[distinct[a]], first[distinct[b]]))) for a, b in zip(common.row[keep], common.col[keep])}


@pytest.mark.parametrize("raw, normal", [
    ("Caf\u00e9  au LAIT\n", "caf\u00e9 au lait"),
    ("Cafe\u0301 au lait", "caf\u00e9 au lait"),  # decomposed e + combining acute: NFC composes it
    ("STRASSE", "strasse"), ("Stra\u00dfe", "strasse"),  # casefold, not lower
    ("\ttabs\u00a0and\u2003spaces ", "tabs and spaces"),
])
def test_normalise(raw, normal):
    assert audit.normalise(raw) == normal


@pytest.mark.parametrize("threshold, num_perm, expect", [(0.8, 128, (25, 5)), (0.6, 128, (42, 3)), (0.9, 128, (16, 8))])
def test_bands_miss_a_pair_at_the_threshold_rarely(threshold, num_perm, expect):
    b, r = audit.bands(threshold, num_perm)
    assert (b, r) == expect and (1 - threshold ** r) ** b <= audit.MISS


@pytest.fixture(scope="module")
def planted(reviews):
    """The reviews plus an exact copy (case and spacing changed), a near copy (one word replaced) and
    a copy with the other label; their audit under policy "off"."""
    texts, labels = reviews["reviewText"].astype(str).tolist(), reviews["isPositive"].to_numpy()
    words = texts[20].split()
    words[len(words) // 2] = "banana"
    extra = [("  " + texts[10].upper() + " ", labels[10]), (" ".join(words), labels[20]), (texts[30], 1 - labels[30])]
    n = len(texts)
    texts, labels = texts + [t for t, _ in extra], np.concatenate([labels, [lab for _, lab in extra]])
    where = {"exact": (10, n), "near": (20, n + 1), "conflict": (30, n + 2)}
    return texts, labels, where, audit.audit(texts, labels), audit.find_duplicates(texts)


def test_planted_duplicates_and_conflicts_are_found(planted):
    texts, labels, where, got, dups = planted
    f = got.findings
    assert where["exact"] in {tuple(e["rows"]) for e in f.examples if e["kind"] == "exact"}
    assert [tuple(e["rows"]) for e in f.examples if e["kind"] == "conflict"] == [where["conflict"]]
    near = {(a, b) for a, b, _ in dups.near}
    assert near == {where["near"]} == brute_force_pairs(texts)  # no false positive, nothing missed
    # the 500 reviews hold 2 texts twice; planted: one more exact copy and one copy with the other label
    assert (f.exact_sets, f.exact_extra_rows, f.conflict_sets, f.conflict_rows) == (2 + 2, 2 + 2, 1, 2)
    assert (f.near_pairs, f.duplicate_sets) == (1, 5)
    assert len(got.keep) == len(texts) and f.rows_dropped == 0  # policy "off"


def test_lsh_agrees_with_brute_force_on_the_real_sentences(snippets):
    dups = audit.find_duplicates(snippets["text"])
    found = {(a, b) for a, b, _ in dups.near}
    assert found == brute_force_pairs(snippets["text"])
    assert len(found) == 5  # e.g. "what a disappointment!" / "what a disappointment."


def test_group_policy_keeps_every_text_in_one_split(snippets, grouped):
    texts, labels, reviews = snippets["text"], snippets["label"].to_numpy(), snippets["review"].to_numpy()
    normal = pd.Series([audit.normalise(t) for t in texts])

    def texts_in_two_parts(groups) -> int:
        where = audit.parts(len(texts), *split(labels, groups, 0.1, 0.2, 0))
        return int((pd.Series(where).groupby(normal).nunique() > 1).sum())

    assert texts_in_two_parts(reviews) == 4  # the review groups alone let 4 texts into two parts
    assert texts_in_two_parts(grouped.groups) == 0
    where = audit.parts(len(texts), *split(labels, grouped.groups, 0.1, 0.2, 0))
    assert (pd.Series(where).groupby(reviews).nunique() == 1).all()  # reviews still whole
    assert grouped.findings.groups_merged == 11 and len(grouped.keep) == len(texts)


def test_drop_policy_keeps_one_row_per_set_and_drops_conflicts(planted):
    texts, labels, where, _, dups = planted
    keep, groups = audit.dedupe(dups, labels, np.arange(len(texts)), "drop")
    kept = [audit.normalise(texts[i]) for i in keep]
    assert len(kept) == len(set(kept)) and groups.tolist() == keep.tolist()
    assert where["exact"][0] in keep and where["exact"][1] not in keep
    assert where["near"][0] in keep and where["near"][1] not in keep
    assert where["conflict"][0] not in keep and where["conflict"][1] not in keep
    assert not brute_force_pairs([texts[i] for i in keep])
    assert len(texts) - len(keep) == 4 + 2  # the planted copies and one of each real pair


def test_straddling_groups_and_duplicates_with_a_given_split():
    texts = ["good product", "Good  product", "bad", "fine", "fine enough", "meh"]
    labels, groups = [1, 1, 0, 1, 1, 0], ["r1", "r2", "r1", "r3", "r3", "r4"]
    where = ["train", "test", "val", "train", "train", "test"]  # r1 has rows in train and val
    f = audit.audit(texts, labels, groups, split=where).findings
    assert (f.groups_straddling, f.duplicates_straddling) == (1, 1)


def test_findings_print_and_serialise(grouped):
    f = grouped.findings
    assert json.loads(json.dumps(f.as_dict()))["exact_extra_rows"] == 11
    lines = f.lines()
    assert lines[0].startswith("3,708 rows: 11 exact duplicates of other rows (10 texts), 5 near-duplicate pairs")
    assert lines[1] == "conflicting labels: 1 texts (2 rows); near pairs with different labels: 0"
    assert lines[-1].startswith("policy 'group': 11 groups merged")


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="dedupe policy 'merge'"):
        audit.audit(["a"], [0], policy="merge")


# --- the vectorised MinHash (harness.data.minhash) -------------------------------------------

def random_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Pairs of word texts that share a random share of their words: Jaccards from about 0 to 1."""
    rng = np.random.default_rng(seed)
    words = [f"w{k:04d}" for k in range(3000)]
    out = []
    for _ in range(n):
        shared = list(rng.choice(words, rng.integers(0, 30)))
        a = shared + list(rng.choice(words, rng.integers(1, 20)))
        b = shared + list(rng.choice(words, rng.integers(1, 20)))
        out.append((" ".join(a), " ".join(b)))
    return out


def test_minhash_estimates_the_exact_jaccard_without_bias():
    """On pairs not chosen by LSH, the share of equal signature rows estimates the exact Jaccard: mean error
    within 4 standard errors of 0, spread near the binomial sd sqrt(J(1-J)/128) (Broder 1997)."""
    pairs = random_pairs(400)
    texts = [t for pair in pairs for t in pair]
    sig = minhash.signatures(texts, audit.NGRAM, audit.NUM_PERM, seed=1)
    codes = np.arange(0, len(texts), 2, dtype=np.int64) * len(texts) + np.arange(1, len(texts), 2)
    estimate = minhash.agreement(sig, codes)
    exact = np.array([audit.jaccard(audit.shingles(a), audit.shingles(b)) for a, b in pairs])
    error = estimate - exact
    assert exact.min() < 0.2 and exact.max() > 0.7  # the pairs span the range
    assert abs(error.mean()) < 4 * error.std() / np.sqrt(len(error))
    theory = np.sqrt(exact * (1 - exact) / audit.NUM_PERM).mean()
    assert 0.7 * theory < error.std() < 1.3 * theory


def test_window_hashes_do_not_depend_on_the_chunk():
    texts = ["short", "a longer text of words", "abc", "caf\u00e9 \U0001F600 ok"]
    whole = minhash.signatures(texts, 5, 16, seed=3)
    alone = np.concatenate([minhash.signatures([t], 5, 16, seed=3) for t in texts])
    assert (whole == alone).all()
    hashes, first = minhash.window_hashes(texts, 5)
    assert first.tolist() == [0, 1, 19, 20] and len(hashes) == 1 + 18 + 1 + 5  # "abc": one padded window


def test_a_huge_bucket_is_paired_within_the_window_and_stays_joined():
    sig = np.zeros((500, 10), dtype=np.uint32)  # 500 texts with one signature: one bucket in each band
    codes, capped = minhash.candidates(sig, b=2, r=5, window=8)
    i, j = np.divmod(codes, len(sig))
    assert capped == 2 and (j - i).max() == 7 and len(codes) == sum(500 - d for d in range(1, 8))
    from scipy.sparse.csgraph import connected_components
    graph = sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(500, 500))
    assert connected_components(graph, directed=False)[0] == 1


def test_the_pairs_table_lists_every_exact_and_near_pair(planted):
    texts, labels, where, got, dups = planted
    table = got.pairs
    assert len(table) == got.findings.exact_extra_rows + got.findings.near_pairs
    near = table[table["kind"] == "near"]
    assert [tuple(r) for r in near[["row_a", "row_b"]].to_numpy()] == [where["near"]]
    assert near["jaccard"].iloc[0] >= audit.THRESHOLD and near["jaccard_exact"].all()
    conflict = table[(table["row_a"] == where["conflict"][0]) & (table["row_b"] == where["conflict"][1])]
    assert conflict[["label_a", "label_b"]].to_numpy().tolist() == [[labels[30], 1 - labels[30]]]


def test_off_skips_the_search(tmp_path):
    from harness.data import load_dataset
    from harness.study import DataSpec

    rows = ["text,label"] + [f"same text here,{i % 2}" for i in range(40)] + [f"other {i},{i % 2}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(DataSpec(source=str(tmp_path / "d.csv"), text_column="text", label_column="label",
                                 dedupe="off"))
    found = audit.Findings(**data.audit)
    assert not found.searched and found.exact_sets == 0 and data.pairs.empty
    assert found.lines() == ["80 rows: not searched for duplicates (data.dedupe = \"off\")"]
