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


def test_text_labels_in_sorted_order_are_said_and_class_names_set_the_order():
    column = pd.Series(["positive", "negative", "positive"], name="sentiment")
    labels, names, _, _, mapping = encode_labels(column, DataSpec(), "x")
    assert labels.tolist() == [1, 0, 1] and names == ["negative", "positive"] and mapping["order"] == "sorted"
    labels, names, _, _, mapping = encode_labels(column, DataSpec(class_names=("positive", "negative")), "x")
    assert labels.tolist() == [0, 1, 0] and names == ["positive", "negative"] and mapping["order"] == "class_names"
    assert [c["from"] for c in mapping["classes"]] == ["value 'positive'", "value 'negative'"]


@pytest.mark.parametrize("values, names", [([0.0, 1.0, 1.0], ["0", "1"]), ([1, 0, 1], ["0", "1"]),
                                           ([0.5, 2.0, 0.5], ["0.5", "2"]), ([2, 10, 2], ["2", "10"])])
def test_number_labels_are_named_as_written(values, names):
    assert encode_labels(pd.Series(values, name="y"), DataSpec(), "x")[1] == names


def test_rows_left_out_are_counted_and_noted(tmp_path):
    rows = ["text,label"] + [f"text number {i},{['negative', 'positive'][i % 2]}" for i in range(50)] + \
        ['"  ",positive', ",negative"] + [f"late row {i},positive" for i in range(10)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(DataSpec(source=str(tmp_path / "d.csv"), text_column="text", label_column="label",
                                 max_rows=52, dedupe="off"))
    assert data.counts == {"read": 62, "beyond_max_rows": 10, "empty_text": 2, "on_threshold": 0, "dedupe": 0,
                           "used": 50}
    assert data.notes[0] == "62 rows read, 50 used: 10 beyond data.max_rows; 2 with an empty text"
    assert "text labels mapped in sorted order ('negative' -> class 0, 'positive' -> class 1)" in \
        data.notes[1].replace("value ", "")
    assert data.splits()["counts"] == data.counts and data.splits()["labelling"]["column"] == "label"


def reference_split(labels, groups, val_fraction, test_fraction, seed):
    """The split as first written: a group's stratum by Series.mode per group (slow at 300,000 groups)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"label": labels, "group": groups})
    majority = frame.groupby("group", sort=True)["label"].agg(lambda s: s.mode().iloc[0])
    sizes = frame.groupby("group", sort=True).size()
    part = {}
    for _, members in majority.groupby(majority):
        names = members.index.to_numpy()[rng.permutation(len(members))]
        counts = np.cumsum(sizes[names].to_numpy())
        for name, upto in zip(names, counts):
            part[name] = 2 if upto <= round(test_fraction * counts[-1]) else (
                1 if upto <= round((test_fraction + val_fraction) * counts[-1]) else 0)
    where = frame["group"].map(part).to_numpy()
    return tuple(np.flatnonzero(where == k) for k in (0, 1, 2))


@pytest.mark.parametrize("seed", range(6))
def test_the_split_is_the_reference_split(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 2000))
    labels = rng.integers(0, int(rng.integers(2, 4)), n)
    groups = rng.integers(0, max(2, n // int(rng.integers(1, 6))), n).astype(str)
    got, expected = split(labels, groups, 0.1, 0.2, seed), reference_split(labels, groups, 0.1, 0.2, seed)
    assert all((a == b).all() for a, b in zip(got, expected))
