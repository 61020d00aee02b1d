"""Simulated ablation grids: per-example correctness with the structure of the real store.

Correctness is a threshold on a latent score (a probit model). For run (cell c, seed s) on
test example i of review g:

    latent = base + shift[c] + review[g] + example[i] + seed[s] + run[c, s] + noise[c, s, i]
             + search[c, r] + cell_review[c, g] + lean[c] * class[i]
    correct = latent > 0

- review and example make the difficulty; review / (review + example) variance is the
  latent intra-class correlation (0.3 by default, as measured on the default study's
  test set: STATS.md);
- seed is shared by every cell run with that seed (the same initialisation);
- run is the (cell, seed) interaction: how one training run turned out;
- noise is the run x example interaction: which examples this particular model gets right;
- search is the luck of a cell's hyperparameter search r (each cell may run several searches,
  each evaluated on the same seeds): a search that found a better learning rate lifts all its runs;
- cell_review is the cell x review interaction: some reviews suit some cells (the real data's test
  part of a contrast is large: median 58% of its variance, up to 95%, STATS.md);
- lean[c] * class[i]: a cell leaning to one class (+-1, mostly shared within a review) gets
  that class's examples right more often.

Every term is an independent normal (class a fair +-1 independent of the rest), so a cell's
population accuracy (the expectation over new searches, seeds, reviews and examples) is the mean
over the two classes of Phi((base + shift +- lean) / sqrt(total variance)).
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
    searches: int = 1  # independent searches per cell, each run on every seed
    search_sd: float | np.ndarray = 0.0  # (cell, search) effect; an array (C,) for unequal search luck
    cell_review_sd: float = 0.0  # (cell, review) effect
    lean: float | np.ndarray = 0.0  # (C,) how far a cell leans to the positive class
    class_agreement: float = 0.8  # chance that a sentence has its review's class

    @property
    def groups(self) -> np.ndarray:
        """(N,) review id of each test example."""
        return np.repeat(np.arange(len(self.sizes)), self.sizes)

    @property
    def replicates(self) -> np.ndarray:
        """(R * S,) the search of each column of a simulated grid."""
        return np.repeat(np.arange(self.searches), self.seeds)

    @property
    def seed_numbers(self) -> np.ndarray:
        """(R * S,) the seed of each column: every search runs the same seeds."""
        return np.tile(np.arange(self.seeds), self.searches)

    def truth(self) -> np.ndarray:
        """(C,) population accuracy of each cell (over new searches too), analytically."""
        cells = self.shifts.shape
        run_sd, search_sd, lean = (np.broadcast_to(np.asarray(x, dtype=float), cells)
                                   for x in (self.run_sd, self.search_sd, self.lean))
        total = self.review_sd ** 2 + self.example_sd ** 2 + self.seed_sd ** 2 + run_sd ** 2 + self.noise_sd ** 2 \
            + search_sd ** 2 + self.cell_review_sd ** 2
        m = self.base + self.shifts
        return (stats.norm.cdf((m + lean) / np.sqrt(total)) + stats.norm.cdf((m - lean) / np.sqrt(total))) / 2


def simulate(design: Design, n_grids: int, rng: np.random.Generator, chunk: int = 50) -> np.ndarray:
    """(n_grids, C, R * S, N) boolean correctness of every run of every simulated grid (columns: search-major,
    ``Design.replicates`` and ``Design.seed_numbers``)."""
    return np.concatenate([_chunk(design, min(chunk, n_grids - start), rng)
                           for start in range(0, n_grids, chunk)])


def _chunk(d: Design, n: int, rng: np.random.Generator) -> np.ndarray:
    C, S, R, G, N = len(d.shifts), d.seeds, d.searches, len(d.sizes), int(d.sizes.sum())
    f4 = np.float32
    difficulty = (rng.standard_normal((n, G), dtype=f4) * f4(d.review_sd))[:, d.groups] \
        + rng.standard_normal((n, N), dtype=f4) * f4(d.example_sd)  # (n, N)
    run_sd, search_sd, lean = (np.broadcast_to(np.asarray(x, dtype=f4), (C,)) for x in (d.run_sd, d.search_sd, d.lean))
    seed = rng.standard_normal((n, 1, S), dtype=f4) * f4(d.seed_sd)  # one seed number, one effect
    search = np.repeat(rng.standard_normal((n, C, R), dtype=f4) * search_sd[None, :, None], S, axis=2) \
        if search_sd.any() else f4(0)  # drawn only when used, as below
    runs = (d.base + d.shifts.astype(f4)[None, :, None]  # (n, C, R * S)
            + np.tile(seed, (1, 1, R)) + search
            + rng.standard_normal((n, C, R * S), dtype=f4) * run_sd[None, :, None])
    per_example = np.broadcast_to(difficulty[:, None, :], (n, C, N))  # (n, C, N)
    if lean.any():  # drawn only when used, so that designs without it keep their random streams
        polarity = rng.choice(np.array([-1, 1], dtype=f4), (n, G))[:, d.groups]  # (n, N) a review's class
        label = np.where(rng.random((n, N)) < d.class_agreement, polarity, -polarity)
        per_example = per_example + lean[None, :, None] * label[:, None, :]
    if d.cell_review_sd:
        per_example = per_example + (rng.standard_normal((n, C, G), dtype=f4) * f4(d.cell_review_sd))[..., d.groups]
    noise = rng.standard_normal((n, C, R * S, N), dtype=f4) * f4(d.noise_sd)
    return runs[..., None] + per_example[:, :, None, :] + noise > 0


def shifts_for(cells: pd.DataFrame, effects: dict[str, dict] | None = None,
               interaction: dict[tuple, float] | None = None) -> np.ndarray:
    """(C,) latent shifts: a main effect per axis level, plus shifts for given (axis value, axis value) pairs."""
    out = np.zeros(len(cells))
    for axis, by_level in (effects or {}).items():
        out += cells[axis].map(lambda v: by_level.get(v, 0.0)).to_numpy(dtype=float)
    for ((a, va), (b, vb)), shift in (interaction or {}).items():
        out += np.where((cells[a] == va) & (cells[b] == vb), shift, 0.0)
    return out
