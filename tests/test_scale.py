"""bench/scale.py's generated review file: real sentences recombined, with the copies the audit must find."""

from __future__ import annotations

import pytest

from bench.scale import EXACT, NEAR, SOURCE, generate
from harness.data import audit


@pytest.fixture(scope="module")
def reviews():
    if not SOURCE.is_file():
        pytest.skip(f"no review file at {SOURCE}")
    return generate(6000, seed=0)


def test_the_file_is_reproducible_and_in_the_review_schema(reviews):
    assert list(reviews.columns) == ["reviewText", "summary", "isPositive", "asin"]
    assert len(reviews) == 6000 and set(reviews["isPositive"]) == {0, 1}
    assert generate(6000, seed=0).equals(reviews) and not generate(6000, seed=1).equals(reviews)
    assert 120 < reviews["reviewText"].str.len().mean() < 200  # short reviews: two sentences


def test_the_audit_finds_the_planted_copies(reviews):
    """3% exact copies (most respelt: other case or spacing) and 1% near copies (one word changed)."""
    found = audit.audit(reviews["reviewText"], reviews["isPositive"].to_numpy(), policy="group").findings
    assert found.exact_extra_rows >= EXACT * len(reviews) * 0.95  # a copy of a copy counts once
    assert NEAR * len(reviews) * 0.85 <= found.near_pairs <= NEAR * len(reviews) * 1.5
    assert found.conflict_sets > 0 and found.checked < found.candidates
