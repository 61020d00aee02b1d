"""Where a study's rows come from: a builtin set, a local file or a URL, as a DataFrame.

Builtin sets are the human-rated snippet files of the VADER paper (Hutto and
Gilbert, ICWSM 2014), shipped inside the vaderSentiment 3.3.2 source
distribution on PyPI (MIT). They are fetched once with pip and cached.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import pandas as pd

from harness.errors import HarnessError, redact

VADER = "vaderSentiment==3.3.2"
# builtin name -> file inside additional_resources/hutto_ICWSM_2014.tar.gz
BUILTIN = {
    "amazon-snippets": "amazonReviewSnippets_GroundTruth.txt",  # 3,708 sentences of 300 reviews
    "movie-snippets": "movieReviewSnippets_GroundTruth.txt",  # 10,605 sentences
    "nyt-snippets": "nytEditorialSnippets_GroundTruth.txt",  # 5,190 sentences
    "tweets": "tweets_GroundTruth.txt",  # 4,200 tweets
}


def cache_dir() -> Path:
    root = Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "ablation-harness"))
    root.mkdir(parents=True, exist_ok=True)
    return root


Progress = Callable[[str, int, "int | None"], None]  # (what, done so far, total or None)
CHUNK_ROWS = 100_000  # rows of a CSV read at a time, so that a long read shows progress


def read_source(source: str, sha256: str = "", progress: Progress | None = None) -> tuple[pd.DataFrame, dict]:
    """Rows of ``source`` (builtin:NAME, a path or an http(s) URL), checked against ``sha256``,
    and the file they came from with its checksum (a study's results belong to that content)."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        frame = read_builtin(name)
        path = _vader_file(BUILTIN[name])
    else:
        path = download(source, progress) if source.startswith(("http://", "https://")) else Path(source)
        if not path.is_file():
            raise HarnessError(f"data.source '{redact(source)}': no such file")
        frame = None
    digest = file_sha256(path)
    if sha256 and digest != sha256.lower():
        raise HarnessError(f"data.source '{redact(source)}': sha256 is {digest}, expected {sha256}")
    return (read_table(path, progress) if frame is None else frame), {"file": str(path), "sha256": digest}


def read_table(path: Path, progress: Progress | None = None) -> pd.DataFrame:
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if path.stat().st_size == 0:
        raise HarnessError(f"{path}: the file is empty")
    try:
        if suffix in (".csv", ".csv.gz"):
            frame = _read_csv(path, ",", progress)
        elif suffix in (".tsv", ".tsv.gz", ".txt"):
            frame = _read_csv(path, "\t", progress)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=suffix == ".jsonl")
        else:
            raise HarnessError(f"{path}: unknown file type '{suffix}' (expected .csv, .tsv, .parquet or .jsonl)")
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise HarnessError(f"{path}: cannot be read as {suffix} ({str(exc).splitlines()[0]})") from None
    if frame.empty:
        raise HarnessError(f"{path}: the file has no rows")
    return frame


def _read_csv(path: Path, sep: str, progress: Progress | None) -> pd.DataFrame:
    """pd.read_csv in chunks of CHUNK_ROWS rows, telling ``progress`` the bytes read so far."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        reader = pd.read_csv(handle, sep=sep, chunksize=CHUNK_ROWS,
                             compression="gzip" if path.suffix == ".gz" else None)
        chunks = []
        for chunk in reader:
            chunks.append(chunk)
            if progress:
                progress(f"reading {path.name}", handle.tell(), size)
    if not chunks:
        return pd.DataFrame()
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def read_builtin(name: str) -> pd.DataFrame:
    """A VADER ground-truth file: id, mean rating of 20 raters (-4..+4), text; group = review id."""
    if name not in BUILTIN:
        raise HarnessError(f"data.source 'builtin:{name}': unknown builtin (expected one of {sorted(BUILTIN)})")
    path = _vader_file(BUILTIN[name])
    frame = pd.read_csv(path, sep="\t", header=None, names=["id", "score", "text"],
                        dtype={"id": str}, quoting=3, encoding="utf-8", encoding_errors="replace")
    frame["text"] = frame["text"].astype(str).str.strip()
    # "12_3" is sentence 3 of review 12: sentences of one review stay in one split
    frame["review"] = frame["id"].str.split("_").str[0]
    return frame


def _vader_file(member: str) -> Path:
    target = cache_dir() / "vader" / member
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    sdist_dir = cache_dir() / "vader" / "sdist"
    sdist = next(sdist_dir.glob("vaderSentiment-*.tar.gz"), None)
    if sdist is None:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               VADER, "-d", str(sdist_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdist = next(sdist_dir.glob("vaderSentiment-*.tar.gz"), None)
        if done.returncode != 0 or sdist is None:
            raise HarnessError(f"builtin data: 'pip download {VADER}' failed: {done.stderr.strip()[-300:]}")
    with tarfile.open(sdist) as outer:
        inner_member = next(m for m in outer.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
        with tarfile.open(fileobj=outer.extractfile(inner_member)) as inner:
            for m in inner.getmembers():
                if m.name.endswith("_GroundTruth.txt"):
                    data = inner.extractfile(m).read()
                    _atomic_write(target.parent / Path(m.name).name, data)
    return target


def download(url: str, progress: Progress | None = None) -> Path:
    """Fetch ``url`` once into the cache, telling ``progress`` the bytes so far; later calls reuse the file."""
    name = Path(url.split("?")[0]).name or "download"
    target = cache_dir() / "downloads" / hashlib.sha256(redact(url).encode()).hexdigest()[:16] / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(_request(url), timeout=30) as response, open(partial, "wb") as out:
            total, done = int(response.headers.get("Content-Length") or 0) or None, 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(f"download {name}", done, total)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise HarnessError(f"data.source '{redact(url)}': cannot download ({exc})") from None
    partial.replace(target)
    return target


def _request(url: str) -> urllib.request.Request:
    """A request for ``url`` with any user:password@ moved into a basic-auth header.

    urllib would take the password for part of the host name and put it in its error.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return urllib.request.Request(url)
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    return urllib.request.Request(bare, headers={"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()})




def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
