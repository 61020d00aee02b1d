"""Section 3: overfitting and early stopping, from the logged validation curves.

The per-run diagnostics (peak, late drop, replayed patience) live in harness.diagnostics;
this module gathers them over the store and lays out the per-cell and per-run tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness import diagnostics, stats
from harness.report_format import label, md_table, num, pval, signed
from harness.report_frames import Stored, Tables


def run_diagnostics(stored: Stored) -> pd.DataFrame:
    return pd.DataFrame([diagnostics.run_row(r, stored.metric) for r in stored.records])


def curves(stored: Stored) -> pd.DataFrame:
    """Long form: one row per (evaluation run, epoch) with validation metrics and the train-validation gap."""
    flagged = {(r["cell"], r["seed"]) for r in stored.records if r["role"] == "eval" and diagnostics.degenerate(r)}
    rows = [{"cell": r["cell"], "label": label(r["cell"]), "seed": r["seed"], **h, **g}
            for r in stored.records if r["role"] == "eval" and (r["cell"], r["seed"]) not in flagged
            for h, g in zip(diagnostics.validated(r.get("history") or []), diagnostics.gaps(r.get("history") or []))]
    return pd.DataFrame(rows).drop(columns=["val_correct"], errors="ignore")


def section_overfitting(t: Tables) -> list[str]:
    lines = ["## 3. Overfitting and early stopping", ""]
    diag, cells = t.runs_diag[t.runs_diag["role"] == "eval"], t.cells_diag
    if cells.empty or "peak_epoch" not in diag:
        return lines + ["No evaluation run logged a validation curve.", ""]
    val_size = int(next((r.get("val_size") for r in t.stored.records if r.get("val_size")), 0))
    acc = float(np.nanmedian(diag["peak_acc"].astype(float)))
    se = stats.proportion_se(acc, val_size)
    lines += [f"The validation set has {val_size} examples: near accuracy {acc:.2f} one binomial standard "
              f"error is {se:.3f} ({se * val_size:.0f} examples), so a peak-to-last drop counts as real only "
              f"when the exact McNemar test on the two epochs' per-example predictions gives p < {stats.ALPHA}. "
              "Training accuracy is a running figure over each epoch with dropout on. Excluded runs are "
              "counted per cell and kept out of the medians and means.", ""]
    rows = [[label(r.cell), str(r.runs), _excluded(r), num(r.peak_epoch, "g"), num(r.min_loss_epoch, "g"),
             signed(r.drop), f"{r.real_drops}", _gap_by_epoch(t.curves, r.cell)] for r in cells.itertuples()]
    lines += md_table(["cell", "runs", "excluded", "peak val-acc epoch (median)", "min val-loss epoch (median)",
                       "peak − last (mean)", "real drops", "train − val acc by epoch (mean)"], rows)
    lines += ["### Per run", ""]
    ok = diag[diag["flag"].isna() & diag["peak_epoch"].notna()]
    rows = [[label(r.cell), str(r.seed), num(r.peak_epoch, "g"), num(r.min_loss_epoch, "g"), num(r.best_epoch, "g"),
             num(r.last_epoch, "g"), f"{num(r.peak_acc)} → {num(r.last_acc)}",
             f"{signed(r.drop)} ({int(r.drop_examples):+d})", num(r.se), pval(r.mcnemar_p), r.verdict]
            for r in ok.itertuples()]
    lines += md_table(["cell", "seed", "peak epoch", "min-loss epoch", "restored", "last", "val acc peak → last",
                       "drop (examples)", "1 SE at peak", "McNemar p", "verdict"], rows)
    lines += _replay_lines(t, cells)
    return lines


def _gap_by_epoch(curves: pd.DataFrame, cell: str) -> str:
    if curves.empty or cell not in set(curves["cell"]):
        return "n/a"
    gap = curves[curves["cell"] == cell].groupby("epoch")["acc_gap"].mean()
    return " / ".join(f"{g:+.2f}" for g in gap)


def _excluded(r) -> str:
    return ", ".join(f"{getattr(r, k)} {k}" for k in diagnostics.EXCLUDED if getattr(r, k)) or "none"


def _replay_lines(t: Tables, cells: pd.DataFrame) -> list[str]:
    train = t.stored.manifest["study"].get("train", {})
    lines = ["### Early stopping replayed", "",
             f"The training loop stops after `patience` epochs without improving {t.stored.metric} (this study: "
             f"patience {train.get('patience', 'n/a')}) and restores the best epoch. Replayed on the logged "
             "curves with patience 1, 3 and 5: the mean stopping epoch, in how many runs the rule fired before the "
             "curve ended (a curve already cut by the study's own patience cannot show a later stop), and the "
             "mean validation accuracy given up against the best epoch of the whole logged curve.", ""]
    ps = diagnostics.PATIENCES
    rows = [[label(r.cell)] + [f"{num(getattr(r, f'p{p}_stop'), '.1f')} ({getattr(r, f'p{p}_fired')}) "
                               f"{signed(getattr(r, f'p{p}_cost'))}" for p in ps] for r in cells.itertuples()]
    return lines + md_table(["cell"] + [f"patience {p}: stop (fired) cost" for p in ps], rows)
