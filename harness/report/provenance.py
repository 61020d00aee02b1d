"""The last sections: how to read the report's numbers, and where they came from."""

from __future__ import annotations

import pandas as pd

from harness.study import expand

from harness.report.frames import METRIC_NAMES, Stored


# results/<study>/report.md and docs/default-report/report.md are both two folders below the repository
METHODS = "../../docs/methods.md"


def methods(stored: Stored, notes: dict[str, str]) -> list[str]:
    a = stored.analysis
    groups = f"`{stored.study.data.group_column}`" if stored.study.data.group_column else "example"
    clustered = stored.splits.get("test_groups") is not None or stored.splits.get("val_groups") is not None
    return ["## How to read this report", "",
            f"- **Cell intervals** ({1 - a.alpha:.0%}): a cell's mean over its kept seeds; its variance is the "
            "seed-to-seed variance of its runs over their number plus the test set's sampling variance "
            + (f"clustered by {groups} (cluster-robust CR1 over the per-example results)" if clustered else
               "with every example counted as independent (this store records no groups)") +
            ", with Welch–Satterthwaite degrees of freedom; computed on the logit scale and mapped back, so it "
            "stays in [0, 1]. One seed has no seed variance: no interval.",
            "- **Effects** (section 2, and the answers): contrasts of cell means from one additive model of all "
            "runs (cell and seed effects: runs with the same seed are paired), each cell keeping its own seed "
            "variance, plus the test part, which the two cells share example by example. Intervals on Fisher's "
            f"atanh scale (they stay in [−1, 1]); each family's simultaneous {1 - a.alpha:.0%} intervals use one "
            "max-t critical value from the contrasts' correlation (Hothorn, Bretz & Westfall 2008).",
            f"- **Verdicts**, all from that simultaneous interval: *better*/*worse* when it excludes 0; *equivalent* "
            f"when it lies inside ±{a.smallest_effect:g} (two one-sided tests, Schuirmann 1987); else *undecided*, "
            f"with the seeds per cell (the seed part shrinks with seeds, the test part does not) or the larger test "
            f"set that would make the half-width under {a.smallest_effect / 2:g} and so decide it either way.",
            f"- **Metrics**: accuracy — {notes.get('accuracy', '')}; macro-F1 and ROC-AUC — "
            f"{notes.get('macro-F1', notes.get('ROC-AUC', 'not estimated'))}. Simulation tests of the error rates "
            "and coverages are in tests/test_estimate.py.",
            "- **Late peaks**: on the test set, each run's last-epoch weights against its restored epoch's, paired per "
            "example, per cell and pooled over the cells (seed part plus clustered test part, simultaneous); on "
            "validation, per run, the peak epoch is chosen on half of the validation groups and tested against the "
            "last epoch on the other half (exact sign-flip test over groups), Holm across runs.",
            f"- **Methods**: every estimator and test, its sources and the simulations that check it: "
            f"[docs/methods.md]({METHODS}) in the harness's repository.", ""]


def provenance(stored: Stored) -> list[str]:
    m, study, records = stored.manifest, stored.study, stored.records
    ran = [r for r in records if r.trained]
    seconds = pd.Series([r.seconds or 0.0 for r in ran])
    tune = sum(r.seconds or 0.0 for r in ran if r.role == "tune")
    reused = len(records) - len(ran)
    finished = sorted(r.finished for r in records if r.finished)
    devices = sorted({r.device for r in records if r.device})
    packages = ", ".join(f"{k} {v}" for k, v in sorted(m.get("packages", {}).items()))
    data = m.get("data") or {}
    return ["## Provenance", "",
            f"- Study file: `{m.get('study_file')}` (study `{study.name}`, fingerprint `{m.get('fingerprint')}`)",
            f"- Data: `{study.data.source}`" + (f", sha256 `{data['sha256'][:16]}…`" if data.get("sha256") else ""),
            f"- Git commit: `{m.get('git_commit')}`",
            f"- Python {m.get('python')}; packages: {packages}",
            f"- Device: {m.get('device')}" + (f"; runs on {', '.join(devices)}" if devices else ""),
            f"- Dates: store created {m.get('created')}, {len(m.get('sessions', []))} session(s); runs finished "
            f"{finished[0] if finished else 'n/a'} to {finished[-1] if finished else 'n/a'}",
            f"- Compute: {len(records)} runs, {seconds.sum() / 60:.1f} min of training ({tune / 60:.1f} min tuning, "
            f"{(seconds.sum() - tune) / 60:.1f} min evaluation)"
            + (f"; {reused} evaluation run(s) were their seed's best tuning trial (same seed, split, lr and batch "
               "size), scored on the test set held back from tuning, not trained again" if reused else ""),
            f"- Selection protocol: {protocol(stored)}"] + torn(stored) + [""]


def torn(stored: Stored) -> list[str]:
    """A record cut short by a crash at the end of runs.jsonl: skipped, and said so."""
    size = stored.results.torn_tail()
    return [f"- `runs.jsonl` ends in a torn line ({size:,} bytes without a newline: a record cut short by a crash); "
            "it was skipped, and the next run of the study cuts it off"] if size else []


def protocol(stored: Stored) -> str:
    """What was tuned on which split and seeds: one clause per grid block (blocks may set their own)."""
    splits = stored.splits
    sizes = (f" (train pool {splits.get('train_pool')}, validation {len(splits.get('val_labels', ''))}, test "
             f"{len(splits.get('test_labels', ''))} examples)") if splits else ""
    seen: dict[str, str] = {}
    for cell in expand(stored.study):
        name = dict(cell.values).get("grid", "")
        seen.setdefault(_clause(cell.study), name)
    clauses = [(f"grid {name}: " if name else "") + clause for clause, name in seen.items()]
    last = any(r.test_last for r in stored.evals)
    tested = ("each run's restored weights tested once, and its last epoch's weights too (declared before any run: "
              "they choose nothing and serve only the late-peak answer)") if last else "each run tested once"
    return "; ".join(clauses) + f"; {tested}{sizes}; tuning never sees the test split, nor does the " \
        "choice of which runs count."


def _clause(study) -> str:
    search, train, seeds = study.search, study.train, study.seeds
    if search.trials:
        tuned = (f"learning rate (log-uniform in {list(search.lr)}) and batch size ({list(search.batch_size)}) tuned "
                 f"per cell by Optuna ({search.sampler} sampler, {search.pruner} pruner, {search.trials} trials) on the "
                 f"validation split with tuning seed(s) {list(seeds.tune)}, objective validation "
                 f"{METRIC_NAMES.get(train.metric, train.metric)}")
    else:
        tuned = f"no tuning: fixed lr {search.fixed_lr} and batch size {search.fixed_batch_size}"
    more = f", up to {seeds.cap} where a comparison needed them" if seeds.adaptive else ""
    return (f"{tuned}; {train.optimizer} ({train.schedule} schedule), the chosen parameters rerun on evaluation "
            f"seeds {list(seeds.evaluate)}{more}, each run restoring its best epoch by {train.metric} (patience "
            f"{train.patience})")
