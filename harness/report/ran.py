"""What was run: the model as loaded, the data as read, the labels, the split, truncation, the audit.

From what the run recorded (manifest.json: the models it loaded, the file it read, the texts cut
at max_length; splits.json: rows read and left out, the label mapping, the audit), not from the
study file's words: its description is shown as the author's note only.
"""

from __future__ import annotations

from harness.data import Findings
from harness.report.frames import Stored


def render(stored: Stored) -> list[str]:
    lines = ["## What was run", ""]
    lines += [f"- {line}" for line in models(stored) + data(stored) + labels(stored) + truncation(stored)]
    if stored.study.description:
        lines += [f"- Author's note (the study file's description, not checked against the run): "
                  f"*{' '.join(stored.study.description.split())}*"]
    return lines + [""]


def models(stored: Stored) -> list[str]:
    loaded = stored.manifest.get("models")
    if not loaded:
        names = sorted({str(r.axes.get("model.name", stored.study.model.name)) for r in stored.records})
        return [f"Model: `{n}` (this store does not record what it resolved to)" for n in names]
    out = []
    for m in loaded:
        where = f"`{m['name']}`" + (f", loaded from `{m['path']}`" if m.get("path") != m["name"] else "")
        made = ", ".join(x for x in (m.get("package"), m.get("revision") and f"revision {m['revision'][:12]}") if x)
        shape = f"{m.get('type')}, {m.get('blocks')} blocks, hidden {m.get('hidden')}, " \
                f"{m.get('parameters', 0) / 1e6:.1f}M parameters"
        out.append(f"Model: {where} ({made + '; ' if made else ''}{shape})")
    return out


def data(stored: Stored) -> list[str]:
    source = stored.manifest.get("study", {}).get("data", {}).get("source", stored.study.data.source)
    file = stored.manifest.get("data") or {}
    where = f"Data: `{source}`" + (f" (file `{file['file']}`, sha256 `{file['sha256'][:16]}…`)"
                                   if file.get("file") and file["file"] != source else
                                   f" (sha256 `{file['sha256'][:16]}…`)" if file.get("sha256") else "")
    counts, splits = stored.splits.get("counts") or {}, stored.splits
    out = [where]
    if counts:
        why = {"beyond_max_rows": "beyond data.max_rows", "empty_text": "with an empty text",
               "on_threshold": "with a score exactly on a threshold (on_threshold = \"drop\")",
               "dedupe": "dropped as duplicates (dedupe = \"drop\")"}
        left = [f"{counts[k]:,} {text}" for k, text in why.items() if counts.get(k)]
        out.append(f"Rows: {counts['read']:,} read, {counts['used']:,} used" +
                   (f"; left out: {'; '.join(left)}" if left else "; none left out"))
    elif splits.get("dropped_empty"):
        out.append(f"Rows: {splits['dropped_empty']:,} left out with an empty text")
    group = f", groups by `{stored.study.data.group_column}`" if stored.study.data.group_column else ""
    if splits:
        out.append(f"Split: training pool {splits.get('train_pool', 0):,}, validation "
                   f"{len(splits.get('val_labels', '')):,}, test {len(splits.get('test_labels', '')):,} "
                   f"(stratified, split seed {stored.study.data.split_seed}{group})")
    if splits.get("audit"):
        out.append("Duplicates: " + Findings(**splits["audit"]).lines()[0] +
                   (" (every pair: tables/duplicates.csv; section 7)" if stored.results.pairs_path.exists() else ""))
    return out


def labels(stored: Stored) -> list[str]:
    mapping = stored.splits.get("labelling") or {}
    if not mapping:
        return [f"Classes: {', '.join(f'{i} `{n}`' for i, n in enumerate(stored.class_names))}"]
    classes = "; ".join(f"{c['from']} → class {c['index']} `{c['name']}`" for c in mapping["classes"])
    out = [f"Labels: column `{mapping['column']}`: {classes}"]
    if mapping.get("order") == "sorted" and mapping.get("strings"):
        out.append("The text labels were put in sorted order because data.class_names did not give one: set it to "
                   "the values in the order you want (the last class is the positive one of ROC-AUC)")
    return out


def truncation(stored: Stored) -> list[str]:
    found = stored.manifest.get("encodings")
    if not found:
        return []
    return [f"Truncation: {e['truncated']:,} of {e['texts']:,} texts ({e['truncated'] / max(e['texts'], 1):.1%}) "
            f"are longer than max_length = {e['max_length']} tokens of `{e['model']}` and were cut"
            for e in found]
