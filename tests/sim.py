"""Simulated ablation grids: per-example correctness with the structure of the real store.

Correctness is a threshold on a latent score (a probit model). For run (cell c, seed s) on
test example i of review g:

    latent = base + shift[c] + review[g] + example[i] + seed[s] + run[c, s] + noise[c, s, i]
    correct = latent > 0

- review and example make the difficulty; review / (review + example) variance is the
  latent intra-class correlation (0.3 by default, as measured on the default study's
  test set: STATS.md);
- seed is shared by every cell run with that seed (the same initialisation);
- run is the (cell, seed) interaction: how one training run turned out;
- noise is the run x example interaction: which examples this particular model gets right.

Every term is an independent normal, so a cell's population accuracy (the expectation
over new seeds, new reviews and new examples) is Phi((base + shift) / sqrt(total variance)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

# The default study's grid: 3 data sizes x 2 epoch budgets x 3 freezing depths = 18 cells.
AXES = {"data_size": [50, 150, 500], "epochs": [1, 3], "freeze": ["all", 4, 0]}
ORDER = {"data_size": float, "epochs": float, "freeze": lambda v: -np.inf if v == "all" else -float(v)}


def grid_cells(axes: dict[str, list] = AXES) -> pd.DataFrame:
    """One row per cell, every combination of the axes' levels (the last axis varying fastest)."""
    return pd.MultiIndex.from_product(list(axes.values()), names=list(axes)).to_frame(index=False)


def review_sizes(n_examples: int = 720, n_reviews: int = 64, seed: int = 0) -> np.ndarray:
    """Sentences per review: at least one each, the rest spread at random (mean 11.25, sd ~3)."""
    rng = np.random.default_rng(seed)
    return 1 + rng.multinomial(n_examples - n_reviews, np.full(n_reviews, 1 / n_reviews))


@dataclass(frozen=True)
class Design:
    """One simulated study: cell shifts on the latent scale and every variance component's sd."""

    shifts: np.ndarray  # (C,) latent shift of each cell
    seeds: int = 3
    sizes: np.ndarray = field(default_factory=review_sizes)  # (G,) test examples per review
    base: float = 0.6  # latent intercept: accuracy ~0.71 at shift 0
    review_sd: float = 0.3 ** 0.5  # with example_sd: difficulty variance 1, latent ICC 0.3
    example_sd: float = 0.7 ** 0.5
    seed_sd: float = 0.05  # shared by all cells run with one seed
    run_sd: float | np.ndarray = 0.08  # (cell, seed) effect; an array (C,) for unequal seed variance
    noise_sd: float = 0.3  # run x example: two runs of one cell disagree on ~9% of examples

    @property
    def groups(self) -> np.ndarray:
        """(N,) review id of each test example."""
        return np.repeat(np.arange(len(self.sizes)), self.sizes)

    def truth(self) -> np.ndarray:
        """(C,) population accuracy of each cell, analytically."""
        run_sd = np.broadcast_to(np.asarray(self.run_sd, dtype=float), self.shifts.shape)
        total = self.review_sd ** 2 + self.example_sd ** 2 + self.seed_sd ** 2 + run_sd ** 2 + self.noise_sd ** 2
        return stats.norm.cdf((self.base + self.shifts) / np.sqrt(total))


def simulate(design: Design, n_grids: int, rng: np.random.Generator, chunk: int = 50) -> np.ndarray:
    """(n_grids, C, S, N) boolean correctness of every run of every simulated grid."""
    return np.concatenate([_chunk(design, min(chunk, n_grids - start), rng)
                           for start in range(0, n_grids, chunk)])


def _chunk(d: Design, n: int, rng: np.random.Generator) -> np.ndarray:
    C, S, G, N = len(d.shifts), d.seeds, len(d.sizes), int(d.sizes.sum())
    f4 = np.float32
    difficulty = (rng.standard_normal((n, G), dtype=f4) * f4(d.review_sd))[:, d.groups] \
        + rng.standard_normal((n, N), dtype=f4) * f4(d.example_sd)  # (n, N)
    run_sd = np.broadcast_to(np.asarray(d.run_sd, dtype=f4), (C,))
    runs = (d.base + d.shifts.astype(f4)[None, :, None]  # (n, C, S)
            + rng.standard_normal((n, 1, S), dtype=f4) * f4(d.seed_sd)
            + rng.standard_normal((n, C, S), dtype=f4) * run_sd[None, :, None])
    noise = rng.standard_normal((n, C, S, N), dtype=f4) * f4(d.noise_sd)
    return runs[..., None] + difficulty[:, None, None, :] + noise > 0


def shifts_for(cells: pd.DataFrame, effects: dict[str, dict] | None = None,
               interaction: dict[tuple, float] | None = None) -> np.ndarray:
    """(C,) latent shifts: a main effect per axis level, plus shifts for given (axis value, axis value) pairs."""
    out = np.zeros(len(cells))
    for axis, by_level in (effects or {}).items():
        out += cells[axis].map(lambda v: by_level.get(v, 0.0)).to_numpy(dtype=float)
    for ((a, va), (b, vb)), shift in (interaction or {}).items():
        out += np.where((cells[a] == va) & (cells[b] == vb), shift, 0.0)
    return out
