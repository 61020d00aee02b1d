"""Grid expansion: every combination of the scientific axes, once, in a fixed order."""

from pathlib import Path

import pytest

from harness.study import conflict, expand, load_study


def test_default_grid_is_the_union_of_its_blocks():
    study = load_study(Path(__file__).parents[1] / "studies/default.toml")
    cells = expand(study)
    assert len({c.id for c in cells}) == len(cells)
    for block in study.grid:
        mine = {(c.data_size, c.epochs, c.freeze) for c in cells if c["grid"] == block.name}
        assert mine == {(n, e, f) for n in block.data_sizes for e in block.epochs for f in block.freeze}
    lab = next(c for c in cells if c["grid"] == "lab")
    assert (lab.study.train.optimizer, lab.study.train.patience, lab.study.seeds.cap) == ("sgd", 20, 8)
    assert (lab.study.search.replicates, lab.study.search.replicate_cap) == (2, 3)


def test_a_block_with_settings_of_its_own_names_its_cells(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[[grid]]\nname = "a"\nepochs = [3]\n[grid.fixed]\n"train.optimizer" = "sgd"\n'
                    '[[grid]]\nepochs = [3]\n')
    cells = expand(load_study(path))
    assert [(c.id, c.study.train.optimizer) for c in cells] == [
        ("n=500|ep=3|freeze=all|grid=a", "sgd"), ("n=500|ep=3|freeze=all|grid=2", "adamw")]


def test_frozen_and_small_cells_come_first(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[grid]\ndata_sizes = ["all", 50]\nepochs = [3]\nfreeze = [0, "all", 2]\n')
    order = [(c.freeze, c.data_size) for c in expand(load_study(path))]
    assert order == [("all", 50), ("all", "all"), (2, 50), (2, "all"), (0, 50), (0, "all")]
    assert expand(load_study(path))[0].id == "n=50|ep=3|freeze=all"


def test_vary_any_study_key_with_no_code_change(tmp_path):
    """A key no code names (train.warmup_ratio) becomes an axis: cells, ids and per-cell studies."""
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[grid]\ndata_sizes = [50]\nepochs = [3]\nfreeze = ["all"]\n'
                    '[grid.vary]\n"train.warmup_ratio" = [0.0, 0.2]\n"model.max_length" = [32, 64]\n')
    cells = expand(load_study(path))
    assert [c.id for c in cells] == [
        "n=50|ep=3|freeze=all|warmup_ratio=0.0|max_length=32", "n=50|ep=3|freeze=all|warmup_ratio=0.0|max_length=64",
        "n=50|ep=3|freeze=all|warmup_ratio=0.2|max_length=32", "n=50|ep=3|freeze=all|warmup_ratio=0.2|max_length=64"]
    assert [(c.study.train.warmup_ratio, c.study.model.max_length) for c in cells] == [
        (0.0, 32), (0.0, 64), (0.2, 32), (0.2, 64)]


def test_several_grids_run_a_shared_cell_once(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[[grid]]\ndata_sizes = [50, 100]\nepochs = [20]\nfreeze = ["all"]\n'
                    '[grid.seeds]\nevaluate = [1, 2, 3, 4]\n'
                    '[[grid]]\ndata_sizes = [100]\nepochs = [3]\nfreeze = ["all", 0]\n')
    cells = expand(load_study(path))
    assert [c.id for c in cells] == ["n=50|ep=20|freeze=all", "n=100|ep=3|freeze=all", "n=100|ep=20|freeze=all",
                                     "n=100|ep=3|freeze=0"]
    assert cells[0].study.seeds.evaluate == (1, 2, 3, 4) and cells[1].study.seeds.evaluate == (1, 2, 3)


def test_a_cell_in_two_grids_with_different_seeds_is_refused(tmp_path):
    import pytest

    from harness.errors import HarnessError

    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[[grid]]\nepochs = [3]\n[grid.seeds]\nevaluate = [1]\n[[grid]]\nepochs = [3]\n')
    with pytest.raises(HarnessError, match="two grid blocks with different seeds"):
        load_study(path)


# --- a study grows into its results folder (harness.study.conflict) ---------------------------

SMOKE = Path(__file__).parents[1] / "studies/smoke.toml"
TWO_BLOCKS = ['grid=[{data_sizes=[64], epochs=[3], freeze=["all"]}, {data_sizes=[128], epochs=[3], freeze=[5]}]']


@pytest.mark.parametrize("change", [
    ["grid.data_sizes=[64, 128, 256]"],  # a value added to an axis
    ["grid.freeze=[\"all\", 5, 4]"],
    ["seeds.evaluate=[1, 2, 3, 4]", "seeds.max_evaluate=6"],  # more seeds, added waves
    ["grid.data_sizes=[64]"],  # fewer cells: the stored runs stay, nothing is trained
    ["description=\"another note\"", "analysis.smallest_effect=0.02"],  # report-only keys
    TWO_BLOCKS,  # the same cells, and more, in two blocks
])
def test_growing_a_study_alters_no_stored_cell(change):
    assert conflict(load_study(SMOKE), load_study(SMOKE, change)) is None


@pytest.mark.parametrize("change, said", [
    (["train.patience=3"], "cell n=64|ep=3|freeze=all: train.patience was 2, now 3"),
    (["search.trials=4"], "cell n=64|ep=3|freeze=all: search.trials was 2, now 4"),
    (["model.max_length=64"], "cell n=64|ep=3|freeze=all: model.max_length was 48, now 64"),
    (["seeds.tune=[0, 9]"], "cell n=64|ep=3|freeze=all: seeds.tune was [0], now [0, 9]"),
    (["data.max_rows=100"], "data.max_rows was 0, now 100"),
    (["data.class_names=[\"neg\", \"pos\"]"], 'data.class_names was ["negative", "positive"], now ["neg", "pos"]'),
    (['grid.vary={"train.optimizer"=["adamw", "sgd"]}'], "grid: axis train.optimizer added, which renames"),
])
def test_a_change_to_a_stored_cell_is_named_with_its_old_and_new_value(change, said):
    assert conflict(load_study(SMOKE), load_study(SMOKE, change)).startswith(said)


def test_a_data_source_is_compared_and_shown_without_its_password():
    stored = load_study(SMOKE, ['data.source="http://***@example.org/d.csv"'])  # as the manifest keeps it
    assert conflict(stored, load_study(SMOKE, ['data.source="http://ann:s3cret@example.org/d.csv"'])) is None
    said = conflict(stored, load_study(SMOKE, ['data.source="http://ann:s3cret@example.org/e.csv"']))
    assert said == 'data.source was "http://***@example.org/d.csv", now "http://***@example.org/e.csv"'
