"""report.html: the markdown page as one self-contained file for a browser.

It is report.md converted (Python-Markdown), never a second template of the numbers: the same
sections, the same sentences and tables. Figures are embedded as data URIs; tables longer than
``FOLD_ROWS`` rows are folded under <details>, except the cells table, which the answers point to.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

import markdown

FOLD_ROWS = 12  # body rows above which a table is folded
KEEP_OPEN = ("1. Cells",)  # sections whose tables stay open whatever their length

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a1a1a; max-width: 72rem;
       margin: 0 auto; padding: 0.5rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; margin: 0.6rem 0 0.2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d8d8d8; padding: 0.2rem 0.5rem; white-space: nowrap; }
td:last-child { white-space: normal; min-width: 16rem; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
details { margin: 0.4rem 0 1rem; }
summary { cursor: pointer; color: #0b5cad; }
code { background: #f3f3f3; padding: 0 0.2rem; border-radius: 3px; font-size: 0.92em; }
"""


def page(text: str, folder: Path, title: str) -> str:
    """The whole HTML document of markdown ``text`` whose figures are relative to ``folder``."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    body = _embed_images(body, folder)
    body = _fold_tables(body)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<link rel=\"icon\" href=\"data:,\">\n"  # no favicon request
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def write(text: str, folder: Path, path: Path, title: str) -> Path:
    """Write the page beside report.md (whole or not at all)."""
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page(text, folder, title), encoding="utf-8")
    tmp.replace(path)
    return path


def _embed_images(body: str, folder: Path) -> str:
    """Every <img src="relative path"> as a data URI of the file's bytes."""

    def embed(found: re.Match) -> str:
        src = html.unescape(found.group(2))
        path = folder / src
        if re.match(r"^[a-z]+:", src) or not path.is_file():
            return found.group(0)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{found.group(1)}data:{kind};base64,{data}{found.group(3)}'

    return re.sub(r'(<img[^>]*?\ssrc=")([^"]+)(")', embed, body)


def _fold_tables(body: str) -> str:
    """Tables of more than FOLD_ROWS body rows inside <details>, section by section."""
    parts = re.split(r"(?=<h2>)", body)
    out = []
    for part in parts:
        heading = re.match(r"<h2>(.*?)</h2>", part)
        name = html.unescape(re.sub(r"<[^>]+>", "", heading.group(1))) if heading else ""
        if name in KEEP_OPEN:
            out.append(part)
            continue
        out.append(re.sub(r"<table>.*?</table>", _fold, part, flags=re.S))
    return "".join(out)


def _fold(found: re.Match) -> str:
    table = found.group(0)
    body = table.split("<tbody>", 1)[-1]
    rows = body.count("<tr>")
    if rows <= FOLD_ROWS:
        return table
    return f"<details><summary>Table of {rows} rows (click to open)</summary>\n{table}\n</details>"


__all__ = ["FOLD_ROWS", "page", "write"]
