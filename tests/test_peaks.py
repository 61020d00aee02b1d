"""harness.stats.peaks: the exact sign-flip test, the split, the floor on a detectable change, and
simulated studies: flat true curves (false alarms) and a real late drop (power)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.special import ndtri

from harness.stats import peaks
from harness.stats.proportions import mcnemar_exact


ALPHA = 0.05


def mc_se(rate: float, runs: int) -> float:
    """Monte Carlo standard error of a rate estimated from `runs` simulated runs."""
    return math.sqrt(rate * (1 - rate) / runs)


def ar1(rng: np.random.Generator, epochs: int, width: int, r: float) -> np.ndarray:
    """(epochs, width) stationary Gaussian AR(1) series with lag-1 correlation r."""
    z = np.empty((epochs, width))
    z[0] = rng.standard_normal(width)
    for t in range(1, epochs):
        z[t] = r * z[t - 1] + math.sqrt(1 - r * r) * rng.standard_normal(width)
    return z


def simulate(rng: np.random.Generator, curve: list[float], n: int = 200, groups: int = 40, r: float = 0.8,
             share: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch correctness (E, N) of n examples in `groups` reviews whose true accuracy follows `curve`.

    Example i is right at epoch t when ability_i + noise_it > tau_t. Ability is a review effect plus
    an example effect (sentences of one review are alike); the noise is AR(1) over epochs (consecutive
    epochs mostly agree: about 94% of examples keep their outcome) with a review-level share (sentences
    of one review tend to flip together); tau_t sets the true accuracy of epoch t to curve[t].
    """
    g = rng.integers(0, groups, n)
    ability = 0.8 * rng.standard_normal(groups)[g] + 1.2 * rng.standard_normal(n)
    e = len(curve)
    noise = math.sqrt(share) * ar1(rng, e, groups, r)[:, g] + math.sqrt(1 - share) * ar1(rng, e, n, r)
    tau = -ndtri(np.asarray(curve)) * math.sqrt(0.8 ** 2 + 1.2 ** 2 + 1)
    return ability + noise > tau[:, None], g


def old_method_p(c: np.ndarray) -> float:
    """The former test: best epoch of all against the last, two-sided exact McNemar on the same examples."""
    acc = c.mean(axis=1)
    peak = int(np.argmax(acc))
    if peak == len(acc) - 1 or acc[peak] <= acc[-1]:
        return 1.0
    return mcnemar_exact(c[peak], c[-1])[2]


FLAT = [0.88] * 20


def test_flat_curves_false_alarm_rate_at_most_alpha():
    rng = np.random.default_rng(20)
    runs, new, old, agree = 1000, 0, 0, []
    for _ in range(runs):
        c, g = simulate(rng, FLAT)
        agree.append(np.mean(c[1:] == c[:-1]))
        new += peaks.split_drop_test(c, g)["p"] < ALPHA
        old += old_method_p(c) < ALPHA
    new_rate, old_rate = new / runs, old / runs
    print(f"\nflat curves, 20 epochs, 200 examples in 40 reviews, {runs} runs, consecutive epochs agree on "
          f"{np.mean(agree):.3f}: split test false alarms {new_rate:.3f} ± {mc_se(new_rate, runs):.3f}, "
          f"old method {old_rate:.3f} ± {mc_se(old_rate, runs):.3f}")
    assert 0.9 < np.mean(agree) < 0.97
    assert new_rate <= ALPHA + 3 * mc_se(ALPHA, runs)
    assert old_rate > ALPHA + 3 * mc_se(ALPHA, runs)  # the problem this test fixes


def test_holm_keeps_a_flat_study_below_alpha():
    """10 flat evaluation runs per study: the chance that any is called a real drop."""
    rng = np.random.default_rng(21)
    studies, per_study, any_new, any_old = 150, 10, 0, 0
    for _ in range(studies):
        sims = [simulate(rng, FLAT) for _ in range(per_study)]
        any_new += any(peaks.decide_across_runs([peaks.split_drop_test(c, g)["p"] for c, g in sims])[1])
        any_old += any(old_method_p(c) < ALPHA for c, _ in sims)
    rate = any_new / studies
    print(f"\nstudies of {per_study} flat runs, {studies} studies: any drop called real {rate:.3f} ± "
          f"{mc_se(rate, studies):.3f} with Holm; {any_old / studies:.3f} with the old uncorrected test")
    assert rate <= ALPHA + 3 * mc_se(ALPHA, studies)


def test_finds_a_real_late_drop_on_2000_examples():
    # plateau at 0.88 to epoch 16, then down to 0.84 by epoch 20
    curve = [0.88] * 16 + [0.87, 0.86, 0.85, 0.84]
    rng = np.random.default_rng(22)
    runs = 200
    found = sum(peaks.split_drop_test(*simulate(rng, curve, n=2000, groups=300))["p"] < ALPHA for _ in range(runs))
    power = found / runs
    print(f"\nreal drop 0.88 -> 0.84, 2000 examples in 300 reviews: found in {power:.3f} ± {mc_se(power, runs):.3f}")
    assert power > 0.6


def brute_force(diffs: list[int]) -> float:
    """P(sum s_g d_g >= sum d_g) over all 2^G sign vectors."""
    observed = sum(diffs)
    sums = [sum(s * d for s, d in zip(signs, diffs)) for signs in itertools.product((1, -1), repeat=len(diffs))]
    return float(np.mean(np.asarray(sums) >= observed))


@pytest.mark.parametrize("diffs", [[3, -1, 2, 0, 1], [1, 1, 1, 1, 1], [-2, -1, 4], [5], [0, 0],
                                   [2, 2, -2, 3, 1, -1, 4]])
def test_sign_flip_p_matches_enumeration(diffs):
    assert peaks.sign_flip_p(diffs) == pytest.approx(brute_force(diffs))


@pytest.mark.parametrize("lost, gained", [(9, 1), (5, 0), (3, 3), (12, 30), (25, 0)])
def test_sign_flip_with_one_example_per_group_is_the_one_sided_sign_test(lost, gained):
    diffs = [1] * lost + [-1] * gained + [0] * 7
    want = sps.binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue if lost + gained else 1.0
    assert peaks.sign_flip_p(diffs) == pytest.approx(want)


def test_group_halves_keep_groups_whole_and_balance_examples():
    groups = np.repeat(np.arange(30), np.random.default_rng(0).integers(3, 20, 30))
    a = peaks.group_halves(groups)
    for g in np.unique(groups):
        assert len(set(a[groups == g])) == 1
    assert abs(a.mean() - 0.5) < 0.1
    assert (peaks.group_halves(groups) == a).all() and not (peaks.group_halves(groups, seed=1) == a).all()


def test_split_drop_test_on_a_constructed_drop():
    # 400 examples, 40 reviews of 10; epoch 2 right on 360, the last epoch loses 60 of them, 6 per review
    groups = np.repeat(np.arange(40), 10)
    peak = np.tile([True] * 9 + [False], 40)
    last = np.tile([False] * 6 + [True] * 3 + [False], 40)
    out = peaks.split_drop_test(np.stack([peak & (groups % 2 == 0), peak, last]), groups)
    assert out["chosen"] == 1 and out["drop_a"] == pytest.approx(0.6) and out["drop_b"] == pytest.approx(0.6)
    assert out["groups_b"] == 20 and out["n_b"] == 200
    assert out["p"] == pytest.approx(0.5 ** 20)  # every review of half B lost: one sign vector in 2^20


def test_no_drop_on_the_choosing_half_is_not_tested():
    c = np.ones((3, 50), dtype=bool)
    assert peaks.split_drop_test(c)["p"] == 1.0
    assert math.isnan(peaks.split_drop_test(c[:1])["p"])


def test_groups_must_match_examples():
    with pytest.raises(ValueError, match="groups has 3 entries for 50"):
        peaks.split_drop_test(np.ones((2, 50), dtype=bool), [1, 2, 3])


@pytest.mark.parametrize("net, groups, two_sided, want", [
    (2, None, True, 0.5),  # the lab's 0.88 -> 0.89 on 200 reviews: McNemar can never go below 0.5
    (6, None, True, 2 / 64), (5, None, False, 1 / 32), (10, 3, False, 1 / 8), (0, None, True, 1.0)])
def test_min_p(net, groups, two_sided, want):
    assert peaks.min_p(net, groups, two_sided) == pytest.approx(want)


@pytest.mark.parametrize("n, groups, alpha, two_sided, net", [
    (200, None, 0.05, True, 6),  # 2 / 2^6 = 0.031; 2 / 2^5 = 0.0625 is not enough
    (200, None, 0.05, False, 5),
    (100, 30, 0.05 / 20, False, 9),  # Holm's first step over 20 runs: 2^-9 = 0.002
    (200, 4, 0.05, False, None),  # four reviews: 1/16 at best
])
def test_smallest_real_change(n, groups, alpha, two_sided, net):
    out = peaks.smallest_real_change(n, groups, alpha, two_sided)
    assert out["net"] == net
    if net is not None:
        assert out["accuracy"] == pytest.approx(net / n) and out["min_p"] <= alpha
    else:
        assert out["min_p"] == pytest.approx(1 / 16)


def test_decide_across_runs_keeps_nan_out():
    adjusted, real = peaks.decide_across_runs([0.01, math.nan, 0.02, 0.3])
    assert adjusted == pytest.approx([0.03, math.nan, 0.04, 0.3], nan_ok=True)
    assert real == [True, False, True, False]


def test_peak_and_min_loss():
    rows = [{"epoch": e, "val_accuracy": a, "val_loss": l}
            for e, a, l in [(1, 0.7, 0.6), (2, 0.8, 0.5), (3, 0.8, 0.55), (4, 0.75, 0.7)]]
    assert peaks.peak_and_min_loss(rows) == {"acc_peak_epoch": 2, "loss_min_epoch": 2, "lag": 0}
    rows[0]["val_loss"] = 0.4
    assert peaks.peak_and_min_loss(rows)["lag"] == 1
    assert peaks.peak_and_min_loss([{"epoch": 1, "train_loss": 1.0}])["lag"] is None
