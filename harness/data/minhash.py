"""MinHash signatures of character n-gram sets, many texts at once, and their LSH candidate pairs.

A chunk of texts becomes one array of Unicode code points; every n-gram window is hashed at
once (a polynomial over its code points, then MurmurHash3's 64-bit finaliser), and each of the
``num_perm`` hash functions h_k(x) = a_k x + b_k mod 2^32 (a_k odd: a permutation of the 32-bit
values) takes its minimum over each text's windows with one ``np.minimum.reduceat``. Written by
hand because datasketch's ``MinHash.bulk`` hashes one set at a time in Python: minutes and
gigabytes of shingle sets for 300,000 texts, where this takes seconds and a few arrays.
Candidates are the pairs of texts that agree on every row of a band (Leskovec, Rajaraman &
Ullman, Mining of Massive Datasets, sec. 3.4), found by sorting each band's keys.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

CHUNK = 4096  # texts per array: a chunk's windows fit in a few MB
WINDOW = 64  # in a bucket of more texts than this, each is paired with the next WINDOW - 1 only
_PRIME = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial window hash


def _fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser: every input bit flips each output bit with probability ~1/2."""
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def window_hashes(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every n-gram window (W,) uint32, index of each text's first window (len(texts),)).

    A text shorter than n is padded with NULs to n: its one window stands for the whole text.
    """
    padded = [t if len(t) >= n else t + "\0" * (n - len(t)) for t in texts]
    lengths = np.fromiter(map(len, padded), dtype=np.int64, count=len(padded))
    points = np.frombuffer("".join(padded).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    counts = lengths - n + 1
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    at = np.arange(counts.sum()) + np.repeat(starts - first, counts)  # (W,) position of each window
    value = points[at]
    for i in range(1, n):
        value = value * _PRIME + points[at + i]
    return (_fmix64(value) >> np.uint64(32)).astype(np.uint32), first


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the hash functions a x + b mod 2^32, a odd."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2 ** 32, num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    return a, rng.integers(0, 2 ** 32, num_perm, dtype=np.uint64).astype(np.uint32)


def signatures(texts: list[str], n: int, num_perm: int, seed: int,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(len(texts), num_perm) uint32: the minimum of each hash function over each text's n-grams."""
    a, b = permutations(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    for start in range(0, len(texts), CHUNK):
        hashes, first = window_hashes(texts[start:start + CHUNK], n)
        for k in range(num_perm):  # one column at a time: a (W, num_perm) block is several times slower
            permuted = hashes * a[k]
            permuted += b[k]
            out[start:start + len(first), k] = np.minimum.reduceat(permuted, first)
        if progress:
            progress(min(start + CHUNK, len(texts)), len(texts))
    return out


def bands(threshold: float, num_perm: int, miss: float) -> tuple[int, int]:
    """(b, r): b bands of r rows each, the most rows per band that still miss a pair of Jaccard
    `threshold` with chance at most `miss`.

    Two sets of Jaccard J share a band with chance 1 - (1 - J^r)^b (Mining of Massive Datasets,
    sec. 3.4.2). datasketch's own choice for threshold 0.8 (9 bands of 13) weighs misses and false
    candidates equally and misses 60% of the pairs at J = 0.8 and 43% at 0.83; a false candidate
    only costs a comparison of signatures. At 0.8 and 128 permutations this gives 25 bands of 5:
    a pair at 0.8 is missed with chance 5e-5, one at 0.5 is a candidate with chance 0.54, one at
    0.3 with 0.06.
    """
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if (1 - threshold ** r) ** b <= miss:
            return b, r
    return num_perm, 1


def candidates(sig: np.ndarray, b: int, r: int, window: int = WINDOW) -> tuple[np.ndarray, int]:
    """(pair codes i * N + j with i < j, sorted and distinct; the number of buckets of more than
    ``window`` texts): the pairs of texts that share all r rows of some band.

    In a bucket of up to ``window`` texts every pair is a candidate; in a larger one each text is
    paired with the next ``window - 1`` (by index), so that the pairs stay within N * window per
    band whatever the data, and a run of near duplicates stays joined.
    """
    n = len(sig)
    found, capped = [], 0
    for band in range(b):
        key = sig[:, band * r].astype(np.uint64)
        for col in range(band * r + 1, (band + 1) * r):
            key = key * _PRIME + sig[:, col]
        order = np.argsort(key, kind="stable")  # equal keys keep ascending text order: i < j below
        key = key[order]
        for d in range(1, window):
            same = np.flatnonzero(key[d:] == key[:-d])
            if not len(same):
                break
            found.append(order[same].astype(np.int64) * n + order[same + d])
        else:
            sizes = np.diff(np.flatnonzero(np.r_[True, key[1:] != key[:-1], True]))
            capped += int(np.count_nonzero(sizes > window))
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    return codes, capped


def agreement(sig: np.ndarray, codes: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
    """The MinHash estimate of the Jaccard of each pair (i * N + j): the share of equal signature rows."""
    out = np.empty(len(codes))
    for start in range(0, len(codes), chunk):
        i, j = np.divmod(codes[start:start + chunk], len(sig))
        out[start:start + len(i)] = (sig[i] == sig[j]).mean(axis=1)
    return out
