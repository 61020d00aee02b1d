"""The data audit before any training: duplicates, conflicting labels, groups that straddle splits.

Texts are compared after normalisation (Unicode caseless form, whitespace collapsed). Exact
duplicates share a normalised text; near duplicates are found with MinHash-LSH (datasketch) on
character n-grams and verified with the exact Jaccard. The policy (data.dedupe) then keeps each
duplicate set in one split (``group``), keeps one row of it (``drop``), or leaves it (``off``).
The findings go to splits.json and the report. Details: docs/methods.md, "The data audit".
"""

from __future__ import annotations

import time
import unicodedata
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

POLICIES = ("group", "drop", "off")
THRESHOLD = 0.8  # Jaccard of character n-gram sets; a one-word edit of a 20-word sentence stays above it
NGRAM = 5  # characters per shingle
NUM_PERM = 128  # MinHash permutations: sd of a Jaccard estimate <= 0.5 / sqrt(128) = 0.044
MISS = 1e-3  # largest chance that LSH misses a pair exactly at the threshold
EXAMPLES = 3  # example pairs kept per kind


def normalise(text: str) -> str:
    """Canonical caseless form, NFC(casefold(NFD(text))) (Unicode Standard, sec. 3.13, D145), with
    runs of whitespace collapsed to one space and the ends stripped."""
    return " ".join(unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold()).split())


def shingles(text: str, n: int = NGRAM) -> set[bytes]:
    """Character n-grams of a normalised text; a text shorter than n is its own single shingle."""
    if len(text) < n:
        return {text.encode("utf-8")}
    return {text[i:i + n].encode("utf-8") for i in range(len(text) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass(frozen=True)
class Duplicates:
    key: np.ndarray  # (N,) index of each row's normalised text among the distinct texts
    component: np.ndarray  # (N,) duplicate-set id: equal texts, and texts joined by near pairs, share one
    near: list[tuple[int, int, float]]  # verified near pairs (first row of text a, of text b, Jaccard)


def find_duplicates(texts, threshold: float = THRESHOLD, ngram: int = NGRAM, num_perm: int = NUM_PERM,
                    seed: int = 1) -> Duplicates:
    """Exact duplicates (equal normalised texts) and verified near duplicates, joined into sets."""
    normal = [normalise(str(t)) for t in texts]
    key, distinct = pd.factorize(pd.Series(normal))
    first = pd.Series(np.arange(len(normal))).groupby(key).min().to_numpy()  # first row of each text
    sets = [shingles(t, ngram) for t in distinct]
    pairs = _near_pairs(sets, threshold, num_perm, seed)
    n = len(distinct)
    edges = coo_matrix((np.ones(len(pairs)), ([i for i, _, _ in pairs], [j for _, j, _ in pairs])), shape=(n, n))
    _, label = connected_components(edges, directed=False)
    return Duplicates(key, label[key], [(int(first[i]), int(first[j]), s) for i, j, s in pairs])


def _near_pairs(sets: list[set], threshold: float, num_perm: int, seed: int) -> list[tuple[int, int, float]]:
    """Pairs (i < j) of shingle sets with Jaccard >= threshold: LSH candidates, each verified exactly.

    zlib.crc32 as the shingle hash: a 32-bit hash like datasketch's default SHA-1 one, 3x faster.
    """
    from datasketch import MinHash, MinHashLSH  # here: only a study's data loading needs it

    signatures = MinHash.bulk(sets, num_perm=num_perm, seed=seed, hashfunc=zlib.crc32)
    lsh = MinHashLSH(num_perm=num_perm, params=bands(threshold, num_perm))
    with lsh.insertion_session() as session:
        for i, signature in enumerate(signatures):
            session.insert(i, signature)
    out = []
    for i, signature in enumerate(signatures):
        for j in lsh.query(signature):
            if j > i and (s := jaccard(sets[i], sets[j])) >= threshold:
                out.append((i, j, round(s, 4)))
    return sorted(out)


def bands(threshold: float, num_perm: int, miss: float = MISS) -> tuple[int, int]:
    """(b, r): b bands of r rows each, the most rows per band that still miss a pair of Jaccard
    `threshold` with chance at most `miss`.

    Two sets of Jaccard J share a band with chance 1 - (1 - J^r)^b (Leskovec, Rajaraman & Ullman,
    Mining of Massive Datasets, sec. 3.4.2). datasketch's own choice for threshold 0.8 (9 bands of
    13) weighs misses and false candidates equally and misses 60% of the pairs at J = 0.8 and 43%
    at 0.83; a false candidate only costs one exact Jaccard. At 0.8 and 128 permutations this gives
    25 bands of 5: a pair at 0.8 is missed with chance 5e-5, one at 0.5 is a candidate with chance
    0.54, one at 0.3 with 0.06.
    """
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if (1 - threshold ** r) ** b <= miss:
            return b, r
    return num_perm, 1


@dataclass
class Findings:
    """What the audit found and what the policy did; `as_dict` goes into the manifest."""

    rows: int
    threshold: float
    ngram: int
    exact_sets: int = 0  # normalised texts held by two or more rows
    exact_extra_rows: int = 0  # rows beyond the first of each such text
    near_pairs: int = 0  # distinct normalised texts with Jaccard >= threshold
    duplicate_sets: int = 0  # sets of two or more rows joined by exact or near duplication
    conflict_sets: int = 0  # normalised texts whose rows carry different labels
    conflict_rows: int = 0
    near_conflict_pairs: int = 0  # near pairs whose labels differ
    groups_straddling: int | None = None  # groups with rows in two or more splits (None: no split given)
    duplicates_straddling: int | None = None  # duplicate sets with rows in two or more splits
    policy: str = "off"
    rows_dropped: int = 0
    groups_merged: int = 0  # groups that lost their own id to a merged one
    seconds: float = 0.0
    examples: list[dict] = field(default_factory=list)
    test_rows_seen_in_training: list[int] = field(default_factory=list)  # test positions whose text is in the pool

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"{self.rows:,} rows: {self.exact_extra_rows:,} exact duplicates of other rows ({self.exact_sets:,} "
               f"texts), {self.near_pairs:,} near-duplicate pairs (Jaccard of character {self.ngram}-grams >= "
               f"{self.threshold:g}), {self.duplicate_sets:,} duplicate sets in all",
               f"conflicting labels: {self.conflict_sets:,} texts ({self.conflict_rows:,} rows); near pairs with "
               f"different labels: {self.near_conflict_pairs:,}"]
        if self.groups_straddling is not None:
            out.append(f"across the given split: {self.groups_straddling:,} groups and {self.duplicates_straddling:,}"
                       f" duplicate sets have rows in more than one part")
        done = {"group": f"{self.groups_merged:,} groups merged so that each duplicate set stays in one split",
                "drop": f"{self.rows_dropped:,} rows dropped (one row kept per set; sets with conflicting labels "
                        f"dropped whole)", "off": "nothing changed"}[self.policy]
        leaked = len(self.test_rows_seen_in_training)
        out.append(f"policy '{self.policy}': {done} (audit took {self.seconds:.1f} s)")
        return out + ([f"{leaked:,} test rows have their text (or a near duplicate) in the training pool"]
                      if leaked else [])


@dataclass(frozen=True)
class Audit:
    findings: Findings
    keep: np.ndarray  # row indices that stay, ascending (every row unless the policy is "drop")
    groups: np.ndarray  # group id of each kept row, for harness.data.split
    component: np.ndarray  # duplicate set of each kept row (rows of one set are exact or near duplicates)


def audit(texts, labels, groups=None, split=None, policy: str = "off", threshold: float = THRESHOLD,
          ngram: int = NGRAM, num_perm: int = NUM_PERM) -> Audit:
    """Find duplicates and conflicts in `texts`, report them, and apply the dedupe `policy`.

    `groups` (N,): rows that must share a split (None: every row its own group). `split` (N,): the
    part each row is in, when a split is already known (see `parts`).
    """
    if policy not in POLICIES:
        raise ValueError(f"dedupe policy '{policy}': expected one of {', '.join(POLICIES)}")
    start = time.perf_counter()
    texts, labels = [str(t) for t in texts], np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    dups = find_duplicates(texts, threshold, ngram, num_perm)
    findings = _count(dups, labels, texts, Findings(len(labels), threshold, ngram, policy=policy))
    if split is not None:
        findings.groups_straddling = _straddling(groups, np.asarray(split))
        findings.duplicates_straddling = _straddling(dups.component, np.asarray(split))
    keep, new_groups = dedupe(dups, labels, groups, policy)
    findings.rows_dropped = len(labels) - len(keep)
    findings.groups_merged = int(len(np.unique(groups)) - len(np.unique(new_groups))) if policy == "group" else 0
    findings.seconds = time.perf_counter() - start
    return Audit(findings, keep, new_groups, dups.component[keep])


def dedupe(dups: Duplicates, labels: np.ndarray, groups: np.ndarray, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, their group ids) under `policy` (see the module's docstring)."""
    rows = np.arange(len(labels))
    if policy == "off":
        return rows, groups
    if policy == "group":
        # rows are nodes; a row is joined to its group's and to its duplicate set's node
        group_id, _ = pd.factorize(pd.Series(groups).astype(str))
        n, g = len(rows), group_id.max() + 1
        edges = coo_matrix((np.ones(2 * n), (np.tile(rows, 2), np.concatenate([n + group_id, n + g + dups.component]))),
                           shape=(n + g + dups.component.max() + 1,) * 2)
        return rows, connected_components(edges, directed=False)[1][:n]
    frame = pd.DataFrame({"set": dups.component, "label": labels})
    agree = frame.groupby("set")["label"].transform("nunique") == 1
    first = ~frame.duplicated("set")
    keep = rows[(agree & first).to_numpy()]
    return keep, groups[keep]


def _count(dups: Duplicates, labels: np.ndarray, texts, f: Findings) -> Findings:
    by_text = pd.DataFrame({"key": dups.key, "label": labels}).groupby("key")["label"]
    size, kinds = by_text.size(), by_text.nunique()
    f.exact_sets, f.exact_extra_rows = int((size > 1).sum()), int((size[size > 1] - 1).sum())
    f.conflict_sets, f.conflict_rows = int((kinds > 1).sum()), int(size[kinds > 1].sum())
    f.near_pairs = len(dups.near)
    f.near_conflict_pairs = int(sum(labels[a] != labels[b] for a, b, _ in dups.near))
    f.duplicate_sets = int((np.bincount(dups.component) > 1).sum())
    f.examples = _examples(dups, labels, texts, size, kinds)
    return f


def _examples(dups: Duplicates, labels: np.ndarray, texts, size: pd.Series, kinds: pd.Series) -> list[dict]:
    def show(row: int) -> str:
        text = " ".join(str(texts[row]).split())
        return text if len(text) <= 100 else text[:97] + "..."

    out = []
    for kind, keys in (("exact", size.index[size > 1]), ("conflict", kinds.index[kinds > 1])):
        for k in keys[:EXAMPLES]:
            a, b = np.flatnonzero(dups.key == k)[:2]
            out.append({"kind": kind, "rows": [int(a), int(b)], "texts": [show(a), show(b)],
                        "labels": [_plain(labels[a]), _plain(labels[b])]})
    for a, b, s in dups.near[:EXAMPLES]:
        out.append({"kind": "near", "rows": [a, b], "texts": [show(a), show(b)],
                    "labels": [_plain(labels[a]), _plain(labels[b])], "jaccard": s})
    return out


def _plain(value):
    """A numpy scalar as the Python value a JSON manifest can hold."""
    return value.item() if isinstance(value, np.generic) else value


def _straddling(ids: np.ndarray, split: np.ndarray) -> int:
    """How many ids have rows in more than one part of `split`."""
    return int((pd.Series(split).groupby(ids).nunique() > 1).sum())


def parts(n: int, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The (n,) part of each row ('train', 'val', 'test'; '' for none) from harness.data.split's output."""
    out = np.full(n, "", dtype=object)
    for name, rows in (("train", train), ("val", val), ("test", test)):
        out[rows] = name
    return out
