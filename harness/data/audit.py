"""The data audit before any training: duplicates, conflicting labels, groups that straddle splits.

Texts are compared after normalisation (Unicode caseless form, whitespace collapsed). Exact
duplicates share a normalised text; near duplicates are found with MinHash-LSH on character
n-grams (harness.data.minhash), screened by their MinHash estimate and verified with the exact
Jaccard. The policy (data.dedupe) then keeps each duplicate set in one split (``group``), keeps
one row of it (``drop``), or leaves it (``off``, where the study skips the search). The findings
go to splits.json, every pair found to the results folder and the report. Details:
docs/methods.md, "The data audit".
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import asdict, dataclass, field
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from harness.data import minhash
from harness.data.minhash import bands as _bands
from harness.data.sources import Progress

POLICIES = ("group", "drop", "off")
THRESHOLD = 0.8  # Jaccard of character n-gram sets; a one-word edit of a 20-word sentence stays above it
NGRAM = 5  # characters per shingle
NUM_PERM = 128  # MinHash permutations: sd of a Jaccard estimate <= 0.5 / sqrt(128) = 0.044
MISS = 1e-3  # largest chance that LSH misses a pair exactly at the threshold
SCREEN = 4.0  # a candidate whose estimate is this many sds below the threshold is not checked exactly
MAX_EXACT = 200_000  # exact Jaccards computed at most; pairs beyond are judged by their estimate
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


def bands(threshold: float, num_perm: int, miss: float = MISS) -> tuple[int, int]:
    """(b, r) of the LSH bands: see harness.data.minhash.bands."""
    return _bands(threshold, num_perm, miss)


@dataclass(frozen=True)
class Near:
    """Verified near pairs of distinct normalised texts, i < j."""

    i: np.ndarray  # (P,) index of text a among the distinct texts
    j: np.ndarray  # (P,) of text b
    jaccard: np.ndarray  # (P,) exact, or the MinHash estimate where ``exact`` is False
    exact: np.ndarray  # (P,) bool
    candidates: int = 0  # LSH candidate pairs
    checked: int = 0  # exact Jaccards computed
    capped: int = 0  # LSH buckets too large to pair every text in (harness.data.minhash.WINDOW)


@dataclass(frozen=True)
class Duplicates:
    key: np.ndarray  # (N,) index of each row's normalised text among the distinct texts
    component: np.ndarray  # (N,) duplicate-set id: equal texts, and texts joined by near pairs, share one
    near: list[tuple[int, int, float]]  # verified near pairs (first row of text a, of text b, Jaccard)
    search: Near | None = None  # how they were found


def find_duplicates(texts, threshold: float = THRESHOLD, ngram: int = NGRAM, num_perm: int = NUM_PERM,
                    seed: int = 1, progress: Progress | None = None) -> Duplicates:
    """Exact duplicates (equal normalised texts) and verified near duplicates, joined into sets."""
    normal = [normalise(str(t)) for t in texts]
    key, distinct = pd.factorize(pd.Series(normal, dtype=object))
    first = pd.Series(np.arange(len(normal))).groupby(key).min().to_numpy()  # first row of each text
    found = near_pairs(list(distinct), threshold, ngram, num_perm, seed, progress)
    n = len(distinct)
    edges = coo_matrix((np.ones(len(found.i)), (found.i, found.j)), shape=(n, n))
    _, label = connected_components(edges, directed=False)
    near = [(int(first[i]), int(first[j]), round(float(s), 4)) for i, j, s in zip(found.i, found.j, found.jaccard)]
    return Duplicates(key, label[key], near, found)


def near_pairs(distinct: list[str], threshold: float, ngram: int, num_perm: int, seed: int,
               progress: Progress | None = None) -> Near:
    """Pairs of distinct texts with Jaccard >= threshold: LSH candidates (harness.data.minhash), screened
    by their MinHash estimate, then verified with the exact Jaccard.

    The screen drops a candidate whose estimate lies SCREEN sds below the threshold (a pair at the
    threshold falls there with chance < 1e-4); the exact check is bounded by MAX_EXACT, the most
    likely pairs first, and pairs beyond it are kept on their estimate (``Near.exact`` False).
    """
    tell = progress or (lambda *_: None)
    sig = minhash.signatures(distinct, ngram, num_perm, seed, lambda done, total: tell("audit: MinHash", done, total))
    tell("audit: LSH candidates", 0, None)
    codes, capped = minhash.candidates(sig, *bands(threshold, num_perm))
    estimate = minhash.agreement(sig, codes)
    screen = estimate >= threshold - SCREEN * np.sqrt(threshold * (1 - threshold) / num_perm)
    codes, estimate = codes[screen], estimate[screen]
    order = np.argsort(-estimate, kind="stable")[:MAX_EXACT]
    exact = np.full(len(codes), np.nan)
    cache: dict[int, set] = {}

    def sets(k: int) -> set:
        if k not in cache:
            cache[k] = shingles(distinct[k], ngram)
        return cache[k]

    n = len(distinct)
    for done, c in enumerate(codes[order]):
        exact[order[done]] = jaccard(sets(int(c // n)), sets(int(c % n)))
        if done % 20_000 == 0:
            tell("audit: exact Jaccard", done, len(order))
    tell("audit: exact Jaccard", len(order), len(order))
    checked = ~np.isnan(exact)
    value = np.where(checked, exact, estimate)
    keep = value >= threshold
    i, j = np.divmod(codes[keep], n)
    return Near(i, j, value[keep], checked[keep], len(screen), int(checked.sum()), capped)


@dataclass
class Findings:
    """What the audit found and what the policy did; `as_dict` goes into splits.json."""

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
    searched: bool = True  # False: data.dedupe = "off" skipped the search
    candidates: int = 0  # LSH candidate pairs of distinct texts
    checked: int = 0  # of them, exact Jaccards computed (the rest screened out by their MinHash estimate)
    estimated: int = 0  # near pairs kept on their MinHash estimate (beyond MAX_EXACT exact checks)
    capped_buckets: int = 0  # LSH buckets too large to pair every text in (harness.data.minhash.WINDOW)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        if not self.searched:
            return [f"{self.rows:,} rows: not searched for duplicates (data.dedupe = \"off\")"]
        out = [f"{self.rows:,} rows: {self.exact_extra_rows:,} exact duplicates of other rows ({self.exact_sets:,} "
               f"texts), {self.near_pairs:,} near-duplicate pairs (Jaccard of character {self.ngram}-grams >= "
               f"{self.threshold:g}), {self.duplicate_sets:,} duplicate sets in all",
               f"conflicting labels: {self.conflict_sets:,} texts ({self.conflict_rows:,} rows); near pairs with "
               f"different labels: {self.near_conflict_pairs:,}"]
        if self.candidates:
            out.append(f"near-duplicate search: {self.candidates:,} MinHash-LSH candidate pairs, {self.checked:,} "
                       "checked with the exact Jaccard (the others' MinHash estimates were far below the threshold)"
                       + (f", {self.estimated:,} kept on their estimate alone" if self.estimated else "")
                       + (f"; {self.capped_buckets:,} LSH buckets too large to compare every pair in"
                          if self.capped_buckets else ""))
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
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)  # every pair found (``pairs_table``)


def audit(texts, labels, groups=None, split=None, policy: str = "off", threshold: float = THRESHOLD,
          ngram: int = NGRAM, num_perm: int = NUM_PERM, progress: Progress | None = None) -> Audit:
    """Find duplicates and conflicts in `texts`, report them, and apply the dedupe `policy`.

    `groups` (N,): rows that must share a split (None: every row its own group). `split` (N,): the
    part each row is in, when a split is already known (see `parts`).
    """
    if policy not in POLICIES:
        raise ValueError(f"dedupe policy '{policy}': expected one of {', '.join(POLICIES)}")
    start = time.perf_counter()
    texts, labels = [str(t) for t in texts], np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    dups = find_duplicates(texts, threshold, ngram, num_perm, progress=progress)
    findings = _count(dups, labels, texts, Findings(len(labels), threshold, ngram, policy=policy))
    if split is not None:
        findings.groups_straddling = _straddling(groups, np.asarray(split))
        findings.duplicates_straddling = _straddling(dups.component, np.asarray(split))
    keep, new_groups = dedupe(dups, labels, groups, policy)
    findings.rows_dropped = len(labels) - len(keep)
    findings.groups_merged = int(len(np.unique(groups)) - len(np.unique(new_groups))) if policy == "group" else 0
    findings.seconds = time.perf_counter() - start
    return Audit(findings, keep, new_groups, dups.component[keep], pairs_table(dups, labels, texts))


def skipped(labels, groups=None) -> Audit:
    """No search (data.dedupe = "off"): every row kept, each its own duplicate set."""
    n = len(labels)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    return Audit(Findings(n, THRESHOLD, NGRAM, searched=False), np.arange(n), groups, np.arange(n))


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
    a, b = _near_rows(dups)
    f.near_conflict_pairs = int(np.count_nonzero(labels[a] != labels[b]))
    f.duplicate_sets = int((np.bincount(dups.component) > 1).sum())
    if dups.search is not None:
        found = dups.search
        f.candidates, f.checked, f.capped_buckets = found.candidates, found.checked, found.capped
        f.estimated = int(np.count_nonzero(~found.exact))
    f.examples = _examples(dups, labels, texts, size, kinds)
    return f


def _near_rows(dups: Duplicates) -> tuple[np.ndarray, np.ndarray]:
    near = np.asarray([(a, b) for a, b, _ in dups.near], dtype=np.int64).reshape(-1, 2)
    return near[:, 0], near[:, 1]


def pairs_table(dups: Duplicates, labels: np.ndarray, texts) -> pd.DataFrame:
    """Every pair the audit found, one row each: ``exact`` (a row whose normalised text an earlier row
    holds, paired with the first such row) and ``near`` (the first rows of two near-duplicate texts),
    with the Jaccard of their character n-grams, whether it was computed exactly, labels and texts."""
    rows = np.arange(len(dups.key))
    first = pd.Series(rows).groupby(dups.key).transform("min").to_numpy()
    extra = rows[first != rows]
    a, b = _near_rows(dups)
    near_exact = dups.search.exact if dups.search is not None else np.ones(len(a), dtype=bool)
    frame = pd.DataFrame({
        "kind": ["exact"] * len(extra) + ["near"] * len(a),
        "row_a": np.concatenate([first[extra], a]), "row_b": np.concatenate([extra, b]),
        "jaccard": np.concatenate([np.ones(len(extra)), [s for _, _, s in dups.near]]),
        "jaccard_exact": np.concatenate([np.ones(len(extra), dtype=bool), near_exact]),
    })
    frame["label_a"], frame["label_b"] = labels[frame["row_a"]], labels[frame["row_b"]]
    frame["text_a"] = [_show(texts[i], 300) for i in frame["row_a"]]
    frame["text_b"] = [_show(texts[i], 300) for i in frame["row_b"]]
    return frame


def _show(text: str, width: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _examples(dups: Duplicates, labels: np.ndarray, texts, size: pd.Series, kinds: pd.Series) -> list[dict]:
    out = []
    for kind, keys in (("exact", size.index[size > 1]), ("conflict", kinds.index[kinds > 1])):
        for k in keys[:EXAMPLES]:
            a, b = np.flatnonzero(dups.key == k)[:2]
            out.append({"kind": kind, "rows": [int(a), int(b)], "texts": [_show(texts[a]), _show(texts[b])],
                        "labels": [_plain(labels[a]), _plain(labels[b])]})
    for a, b, s in dups.near[:EXAMPLES]:
        out.append({"kind": "near", "rows": [a, b], "texts": [_show(texts[a]), _show(texts[b])],
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
