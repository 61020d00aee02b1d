"""harness.stats.one_run: the chance that one run of B beats one run of A, against simulated fresh pairs
of runs on fresh test sets, and its arithmetic on fixed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.stats import grid_model, one_run

REVIEWS, PER = 60, 12


def test_beats_is_the_normal_probability_of_the_difference():
    got = one_run.beats(np.array([0.02, -0.02, 0.0, 0.01, 0.01]), np.array([0.0003, 0.0003, 0.0003, 0.0, np.nan]),
                        np.array([0.0001, 0.0001, 0.0001, 0.0, 0.0001]))
    assert got[:3] == pytest.approx([stats.norm.cdf(1.0), stats.norm.cdf(-1.0), 0.5])
    assert got[3] == 1.0 and np.isnan(got[4])  # no spread: the sign decides; unknown spread: unknown


def test_spread_adds_the_two_sides_run_variances_averaged_over_a_step_s_pairs():
    runs = np.array([[0.60, 0.62, 0.64], [0.70, 0.70, 0.73], [0.50, 0.56, np.nan], [0.9, 0.9, 0.9]])
    comp = grid_model.components(runs, np.zeros((4, 4)), 59)
    var = np.nanvar(runs, axis=1, ddof=1)
    W = np.array([[-1, 1, 0, 0], [-0.5, 0.5, -0.5, 0.5]])
    assert one_run.spread(comp, W) == pytest.approx([var[0] + var[1], (var.sum()) / 2])


def draw(rng, r1, r0, sd, seeds, shape=()):
    """Correctness (cells, *shape, seeds, N) on a fresh test set per leading index: labels cluster by review
    (share of positives ~ Beta(3, 2)), a review shifts every model's chance by +-0.06, a sentence by +-0.04."""
    groups = np.repeat(np.arange(REVIEWS), PER)
    share = rng.beta(3, 2, (*shape, REVIEWS))[..., groups]
    labels = rng.random(share.shape) < share
    shift = rng.uniform(-0.06, 0.06, (*shape, REVIEWS))[..., groups] + rng.uniform(-0.04, 0.04, share.shape)
    out = []
    for a, b, s in zip(r1, r0, sd):
        chance = np.where(labels, a, b)[..., None, :] + shift[..., None, :] + rng.normal(0, s, (*shape, seeds, 1))
        out.append(rng.random(chance.shape) < chance)
    return np.array(out, dtype=float), groups


@pytest.mark.parametrize("r1, r0, sd", [
    ((0.75, 0.78), (0.60, 0.62), (0.03, 0.01)),  # B a little better, A's seeds spread 3x (lab against fine-tuning)
    ((0.75, 0.82), (0.60, 0.64), (0.02, 0.02)),  # B clearly better
    ((0.80, 0.70), (0.55, 0.70), (0.01, 0.03)),  # as good on average, not on the same sentences
])
def test_the_estimate_matches_fresh_pairs_of_runs_on_fresh_test_sets(r1, r0, sd):
    """The chance, over 20,000 fresh test sets, that one fresh run of B scores above one of A on it, against
    the mean estimate from 150 simulated studies of 5 seeds per cell: within 0.03."""
    rng = np.random.default_rng(7)
    fresh, _ = draw(rng, r1, r0, sd, 1, (20_000,))  # (2, 20000, 1, N)
    acc = fresh.mean(axis=-1)[..., 0]
    truth = float(np.mean(acc[1] > acc[0]) + 0.5 * np.mean(acc[1] == acc[0]))
    estimates = []
    for _ in range(150):
        Y, groups = draw(rng, r1, r0, sd, 5)
        comp = grid_model.accuracy_components(Y, groups)
        e = grid_model.contrasts(comp, np.array([[-1.0, 1.0]]))
        estimates.append(one_run.for_contrasts(comp, np.array([[-1.0, 1.0]]), e.estimate, e.var_test)[0])
    print(f"\nP(run of B > run of A): fresh pairs {truth:.3f}, mean estimate {np.mean(estimates):.3f} "
          f"(sd over studies {np.std(estimates):.3f})")
    assert abs(np.mean(estimates) - truth) < 0.03
