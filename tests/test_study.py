"""Study files: every shipped file loads; bad keys, types and values fail naming file and key."""

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.study import expand, load_study

STUDIES = sorted((Path(__file__).parents[1] / "studies").glob("*.toml"))

MINIMAL = 'name = "t"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_every_shipped_study_loads(path):
    study = load_study(path)
    assert study.name == path.stem
    assert path.read_text().startswith("# python -m harness run studies/" + path.name)


def test_default_study_meets_the_design_card():
    """The lab's questions: every data size up to the pool, 20 epochs classifier-only with 8 runs a cell or more
    and adaptive seeds, and unfreezing (classifier only, top 2 blocks, full) at two sizes; every cell tuned by
    two searches or more, so that the searches' luck is in every interval."""
    study = load_study(Path(__file__).parents[1] / "studies/default.toml")
    lab, finetune = study.grid
    assert lab.name == "lab" and "all" in lab.data_sizes and len(lab.data_sizes) >= 4 and 20 in lab.epochs
    assert dict(lab.fixed)["train.optimizer"] == "sgd" and dict(lab.fixed)["train.schedule"] == "constant"
    assert len(lab.seeds.evaluate) * dict(lab.fixed)["search.replicates"] >= 8 and lab.freeze == ("all",)
    assert {"all", 0} <= set(finetune.freeze) and len(finetune.freeze) >= 3 and len(finetune.data_sizes) >= 2
    assert lab.seeds.adaptive and study.search.trials >= 2 and dict(finetune.fixed)["search.trials"] >= 2
    assert all(c.study.search.replicates >= 2 for c in expand(study))


def test_defaults_follow_the_mlu_review_schema(tmp_path):
    study = load_study(write(tmp_path, MINIMAL))
    assert (study.data.text_column, study.data.label_column) == ("reviewText", "isPositive")
    assert study.model.name == "builtin:all-MiniLM-L6-v2"


@pytest.mark.parametrize("text, key", [
    ('[grid]\nepochz = [1]\n', "grid.epochz"),
    ('[grid]\nepochs = [-1]\n', "grid.epochs"),
    ('[grid]\nepochs = 3\n', "grid.epochs"),
    ('[grid]\nfreeze = ["most"]\n', "grid.freeze"),
    ('[grid]\ndata_sizes = [0]\n', "grid.data_sizes"),
    ('[search]\nlr = [0.0, 0.1]\n', "search.lr"),
    ('[search]\nlr = [1e-3, 1e-4]\n', "search.lr"),
    ('[search]\nsampler = "grid"\n', "search.sampler"),
    ('[search]\ntrials = "four"\n', "search.trials"),
    ('[train]\noptimizer = "adam"\n', "train.optimizer"),
    ('[train]\npatience = 0\n', "train.patience"),
    ('[data]\nval_fraction = 1.5\n', "data.val_fraction"),
    ('[data]\nthresholds = [1.0, 0.0]\n', "data.thresholds"),
    ('[model]\nmax_length = 2\n', "model.max_length"),
    ('[seeds]\nevaluate = []\n', "seeds.evaluate"),
    ('[seeds]\ntune = []\n', "seeds.tune"),
    ('[seeds]\ntune = [0, 0]\n', "seeds.tune"),
    ('[grid.vary]\n"train.optimiser" = ["sgd"]\n', "grid.vary.train.optimiser"),
    ('[grid.vary]\n"data.max_rows" = [10, 20]\n', "grid.vary.data.max_rows"),
    ('[grid.vary]\n"train.optimizer" = ["sgd", "adam"]\n', "grid.vary.train.optimizer"),
    ('[grid.vary]\n"train.warmup_ratio" = ["none"]\n', "grid.vary.train.warmup_ratio"),
    ('[grid.vary]\n"train.optimizer" = "sgd"\n', "grid.vary.train.optimizer"),
    ('[grid.vary]\n"train.optimizer" = ["sgd", "sgd"]\n', "grid.vary.train.optimizer"),
    ('[[grid]]\nepochs = [1]\n[[grid]]\nepochs = [0]\n', "grid[1].epochs"),
    ('[[grid]]\nepochs = [1]\n[grid.seeds]\nevaluate = []\n', "grid.seeds.evaluate"),
    ('[seeds]\nevaluate = [1, 2, 3]\nmax_evaluate = 2\n', "seeds.max_evaluate"),
    ('[seeds]\nmax_evaluate = -1\n', "seeds.max_evaluate"),
    ('[seeds]\nevaluate = [1]\nmax_evaluate = 4\n', "seeds.max_evaluate"),
    ('[seeds]\nmax_evaluate = 6\nbudget_minutes = -1\n', "seeds.budget_minutes"),
    ('[seeds]\nbudget_minutes = 10\n', "seeds.budget_minutes"),
    ('[seeds]\nmax_evaluate = 6.5\n', "seeds.max_evaluate"),
    ('[[grid]]\nepochs = [1]\n[grid.seeds]\nmax_evaluate = 1\n', "grid.seeds.max_evaluate"),
    ('[analysis]\nsmallest_effect = 0\n', "analysis.smallest_effect"),
    ('colour = "red"\n', "colour"),
    ('[grid]\nepochs = [true]\n', "grid.epochs"),
])
def test_bad_study_names_file_and_key(tmp_path, text, key):
    path = write(tmp_path, MINIMAL + text)
    with pytest.raises(HarnessError) as err:
        load_study(path)
    message = str(err.value)
    assert str(path) in message and f"key '{key}'" in message and "\n" not in message


def test_overrides_are_typed_and_validated(tmp_path):
    path = write(tmp_path, MINIMAL)
    study = load_study(path, ["search.trials=7", "grid.freeze=[\"all\", 2]", "model.name=distilbert-base-uncased"])
    assert study.search.trials == 7 and study.grid[0].freeze == ("all", 2)
    assert study.model.name == "distilbert-base-uncased"
    with pytest.raises(HarnessError, match="search.trials"):
        load_study(path, ["search.trials=-1"])


def test_fingerprint_changes_with_the_study(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert load_study(path).fingerprint() == load_study(path).fingerprint()
    assert load_study(path).fingerprint() != load_study(path, ["search.trials=2"]).fingerprint()


def test_fingerprint_ignores_report_only_keys_and_new_defaults(tmp_path):
    path = write(tmp_path, MINIMAL)
    base = load_study(path).fingerprint()
    assert load_study(path, ["analysis.smallest_effect=0.02", "description=x"]).fingerprint() == base
    assert load_study(path, ["train.optimizer=adamw"]).fingerprint() == base  # the default, spelled out
    assert load_study(path, ["train.optimizer=sgd"]).fingerprint() != base


def test_to_dict_builds_the_same_study_again(tmp_path):
    from harness.study import Study, build

    path = write(tmp_path, MINIMAL + '[[grid]]\nepochs = [1]\n[grid.vary]\n"train.optimizer" = ["sgd", "adamw"]\n'
                                    '[[grid]]\nepochs = [2]\n[grid.seeds]\nevaluate = [5]\n')
    study = load_study(path)
    assert build(Study, study.to_dict(), "x", "") == study


def test_a_grid_override_applies_to_every_block(tmp_path):
    path = write(tmp_path, MINIMAL + '[[grid]]\nepochs = [3]\n[[grid]]\nepochs = [5]\nfreeze = [0]\n')
    study = load_study(path, ["grid.epochs=[1]"])
    assert [g.epochs for g in study.grid] == [(1,), (1,)]


@pytest.mark.parametrize("seeds, cap, candidates", [
    ('tune = [0]\nevaluate = [1, 2, 3]\n', 3, (1, 2, 3)),  # no max_evaluate: the first wave only
    ('tune = [0]\nevaluate = [1, 2, 3]\nmax_evaluate = 3\n', 3, (1, 2, 3)),
    ('tune = [0]\nevaluate = [1, 2, 3]\nmax_evaluate = 6\nbudget_minutes = 30\n', 6, (1, 2, 3, 4, 5, 6)),
    ('tune = [9]\nevaluate = [1, 2]\nmax_evaluate = 4\n', 4, (1, 2, 10, 11)),  # never a tuning seed
    ('tune = [1]\nevaluate = [1, 5]\nmax_evaluate = 3\n', 3, (1, 5, 6)),
])
def test_added_seeds_follow_the_largest_seed_used(tmp_path, seeds, cap, candidates):
    study = load_study(write(tmp_path, MINIMAL + "[seeds]\n" + seeds))
    assert study.seeds.cap == cap and study.seeds.candidates == candidates
    assert study.seeds.adaptive == (cap > len(study.seeds.evaluate))
    assert not set(candidates[len(study.seeds.evaluate):]) & set(study.seeds.tune)


def test_adding_seeds_keeps_the_fingerprint_of_a_study_that_adds_none(tmp_path):
    path = write(tmp_path, MINIMAL)
    base = load_study(path).fingerprint()
    assert load_study(path, ["seeds.max_evaluate=0"]).fingerprint() == base
    assert load_study(path, ["seeds.max_evaluate=6"]).fingerprint() != base
