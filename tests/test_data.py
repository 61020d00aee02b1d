"""Labels, the fixed group-aware split, and nested stratified training subsets."""

import numpy as np
import pandas as pd
import pytest

from harness.data import encode_labels, load_dataset, nested_order, split
from harness.errors import HarnessError
from harness.study import DataSpec

SNIPPETS = DataSpec(source="builtin:amazon-snippets", text_column="text", label_column="score",
                    group_column="review", thresholds=(0.0,), class_names=("negative", "positive"))


@pytest.fixture(scope="module")
def snippets():
    return load_dataset(SNIPPETS)


def test_builtin_amazon_snippets_are_the_vader_ground_truth(snippets):
    assert len(snippets.texts) == 3708
    # 2,128 sentences rated above 0 by the 20 raters' mean
    assert np.bincount(snippets.labels).tolist() == [1580, 2128]


def test_sentences_of_one_review_stay_in_one_split(snippets):
    frame = pd.read_csv(SNIPPETS_PATH(), sep="\t", header=None, names=["id", "score", "text"], dtype=str,
                        quoting=3)
    review = frame["id"].str.split("_").str[0].to_numpy()
    parts = [set(review[snippets.train_pool]), set(review[snippets.val]), set(review[snippets.test])]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    n = len(snippets.texts)
    assert abs(len(snippets.val) / n - 0.1) < 0.02 and abs(len(snippets.test) / n - 0.2) < 0.02


def SNIPPETS_PATH():
    from harness.data.sources import BUILTIN, cache_dir
    return cache_dir() / "vader" / BUILTIN["amazon-snippets"]


def test_split_is_fixed_by_its_seed():
    labels = np.array([0, 1] * 50)
    groups = np.arange(100)
    a, b = split(labels, groups, 0.1, 0.2, 0), split(labels, groups, 0.1, 0.2, 0)
    assert all((x == y).all() for x, y in zip(a, b))
    assert [len(p) for p in a] == [70, 10, 20]
    assert np.bincount(labels[a[2]]).tolist() == [10, 10]  # stratified


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_subsets_are_nested_and_stratified(snippets, seed):
    pool_share = np.bincount(snippets.labels[snippets.train_pool]) / len(snippets.train_pool)
    previous = set()
    for size in (50, 100, 300, 800):
        rows = snippets.subset(size, seed)
        assert len(rows) == size and len(set(rows)) == size
        assert previous <= set(rows)  # the smaller subset is part of the larger
        share = np.bincount(snippets.labels[rows], minlength=2) / size
        assert np.abs(share - pool_share).max() <= 1 / size + 1e-9
        assert set(rows) <= set(snippets.train_pool)
        previous = set(rows)


def test_different_seeds_draw_different_subsets(snippets):
    assert set(snippets.subset(100, 1)) != set(snippets.subset(100, 2))


def test_nested_order_prefix_holds_class_shares():
    labels = np.array([0] * 30 + [1] * 70)
    order = nested_order(labels, 3)
    for n in (10, 20, 50):
        assert abs(labels[order[:n]].mean() - 0.7) <= 1 / n + 1e-9


def test_size_larger_than_the_pool_is_an_error(snippets):
    with pytest.raises(HarnessError, match="larger than the training pool"):
        snippets.subset(100_000, 0)


@pytest.mark.parametrize("values, thresholds, expected", [
    ([-2.0, -0.5, 0.0, 0.4, 0.6, 3.0], (-0.5, 0.5), [0, 0, 1, 1, 2, 2]),
    ([-1.0, 0.0, 0.1], (0.0,), [0, 0, 1]),
])
def test_thresholds_cut_a_score_into_classes(values, thresholds, expected):
    spec = DataSpec(thresholds=thresholds)
    labels, names, *_ = encode_labels(pd.Series(values, name="score"), spec, "x")
    assert labels.tolist() == expected and len(names) == len(thresholds) + 1


def test_label_values_as_they_are():
    labels, names, *_ = encode_labels(pd.Series(["pos", "neg", "pos"], name="y"), DataSpec(), "x")
    assert labels.tolist() == [1, 0, 1] and names == ["neg", "pos"]


def test_split_thresholds_give_a_three_class_labelling_the_binary_splits(snippets):
    """The same score cut in three classes, split by the binary cut: the same validation and test
    sentences as the binary study, which its own three-class strata would not give."""
    import dataclasses

    three = dict(thresholds=(-0.5, 0.5), class_names=("negative", "neutral", "positive"))
    twin = load_dataset(dataclasses.replace(SNIPPETS, **three, split_thresholds=(0.0,)))
    assert twin.texts == snippets.texts
    for part in ("train_pool", "val", "test"):
        assert np.array_equal(getattr(twin, part), getattr(snippets, part)), part
    assert np.bincount(twin.labels).tolist() == [1235, 748, 1725]  # 748 near-neutral: (-0.5, 0.5]
    own = load_dataset(dataclasses.replace(SNIPPETS, **three))
    assert not np.array_equal(own.test, snippets.test)
