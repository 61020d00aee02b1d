"""python -m bench.scale [--rows 300000]: a study on a large review file, timed from the command line.

Writes a review CSV of ``--rows`` short reviews (about 56 MB at 300,000) recombined from the
sentences of ../shared/data/amazon_multidomain_8k.csv, with exact duplicates (some with other
case or spacing, some with the other label) and near duplicates (one word dropped, changed or
added) as a lab's file has them, reproducibly (``--seed``). The file goes to the cache folder
(``$HARNESS_CACHE/bench``), never into the repository. Then it runs ``harness run
bench/scale.toml`` on it (a tiny grid: load, audit, one frozen-prefix pass, a few trainings, the
report) as a child process and prints its wall time and peak memory (the largest resident set of
the whole process, ``getrusage``), with the machine's load before and after: the machine may
be shared, and a busy one is slower.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "data" / "amazon_multidomain_8k.csv"
STUDY = HERE / "scale.toml"
EXACT, NEAR, CONFLICT = 0.03, 0.01, 0.1  # shares of rows: exact copies, near copies; of the copies: other label
LONGEST = 130  # characters of a sentence: two of them make a short review


def sentences(source: Path) -> pd.DataFrame:
    """Every sentence of the source reviews with its review's label, domain and product."""
    frame = pd.read_csv(source)
    parts = frame["reviewText"].astype(str).str.split(r"(?<=[.!?])\s+")
    out = frame[["isPositive", "domain", "asin", "summary"]].assign(sentence=parts).explode("sentence")
    out = out[out["sentence"].str.len().between(20, LONGEST)]
    return out.reset_index(drop=True)


def generate(rows: int, seed: int, source: Path = SOURCE) -> pd.DataFrame:
    """``rows`` short reviews (reviewText, summary, isPositive, asin): two sentences of reviews of one label and
    domain, then exact and near copies of earlier rows (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    pool = sentences(source)
    strata = {key: part.index.to_numpy() for key, part in pool.groupby(["isPositive", "domain"])}
    keys = list(strata)
    which = rng.integers(len(keys), size=rows)
    first, second = np.empty(rows, dtype=np.int64), np.empty(rows, dtype=np.int64)
    for k, key in enumerate(keys):
        mine = np.flatnonzero(which == k)
        first[mine], second[mine] = strata[key][rng.integers(len(strata[key]), size=(2, len(mine)))]
    text = pool["sentence"].to_numpy(dtype=object)
    reviews = text[first] + " " + text[second]  # one sentence alone would repeat by chance
    labels = pool["isPositive"].to_numpy()[first]
    copies = rng.permutation(np.arange(1000, rows))[: int((EXACT + NEAR) * rows)]
    for i, row in enumerate(copies):  # numpy arrays: a pandas string column is slow to set item by item
        original = int(rng.integers(row))
        if i < EXACT * rows:
            reviews[row] = _respell(reviews[original], rng) if i % 4 else reviews[original]
        else:
            reviews[row] = _edit(reviews[original], rng)
        labels[row] = 1 - labels[original] if rng.random() < CONFLICT else labels[original]
    return pd.DataFrame({"reviewText": reviews, "summary": pool["summary"].to_numpy()[first], "isPositive": labels,
                         "asin": pool["asin"].to_numpy()[first]})


def _respell(text: str, rng: np.random.Generator) -> str:
    """The same text after normalisation: other case or spacing."""
    return text.upper() if rng.random() < 0.5 else "  " + text.replace(" ", "  ") + " "


def _edit(text: str, rng: np.random.Generator) -> str:
    """A near copy: one word dropped, repeated or replaced, or the ending changed."""
    words = text.split()
    k = int(rng.integers(len(words)))
    kind = int(rng.integers(4))
    if kind == 0 and len(words) > 4:
        del words[k]
    elif kind == 1:
        words.insert(k, words[k])
    elif kind == 2:
        words[k] = rng.choice(["really", "very", "quite", "not", "so"])
    else:
        return re.sub(r"[.!?]*$", "!!", text)
    return " ".join(words)


def measure(csv: Path, results: Path, extra: list[str]) -> dict:
    """Run the study on ``csv`` in a child process: its wall seconds, peak RSS and exit status."""
    command = [sys.executable, "-m", "harness", "run", str(STUDY), "--set", f"data.source=\"{csv}\"",
               "--results", str(results), *extra]
    load = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, the largest child
    return {"rows": None, "file_mb": round(csv.stat().st_size / 1e6, 1), "wall_s": round(seconds, 1),
            "peak_rss_gb": round(peak_kib * 1024 / 1e9, 2), "exit": done.returncode,
            "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
            "cores": os.cpu_count(), "command": " ".join(command[1:]), "output": done.stdout}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="reviews in the generated file (default 300,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="passed on to harness run, e.g. --set data.dedupe=off")
    parser.add_argument("--generate-only", action="store_true", help="write the file, print its path, stop")
    args = parser.parse_args(argv)
    from harness.data import cache_dir

    csv = cache_dir() / "bench" / f"scale-{args.rows}-{args.seed}.csv"
    if not csv.is_file():
        csv.parent.mkdir(parents=True, exist_ok=True)
        generate(args.rows, args.seed).to_csv(csv.with_suffix(".part"), index=False)
        csv.with_suffix(".part").replace(csv)
    if args.generate_only:
        print(csv)
        return 0
    with tempfile.TemporaryDirectory() as results:
        out = measure(csv, Path(results) / "scale", [x for o in args.overrides for x in ("--set", o)])
    out["rows"] = args.rows
    print(out.pop("output")[-3000:])
    print(json.dumps(out))
    return 0 if out["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
