"""Grid expansion: every combination of the scientific axes, once, in a fixed order."""

from pathlib import Path

from harness.grid import expand
from harness.study import load_study


def test_default_grid_is_the_full_product():
    study = load_study(Path(__file__).parents[1] / "studies/default.toml")
    cells = expand(study)
    g = study.grid
    assert len(cells) == len(g.data_sizes) * len(g.epochs) * len(g.freeze)
    assert len({c.id for c in cells}) == len(cells)
    assert {(c.data_size, c.epochs, c.freeze) for c in cells} == {
        (n, e, f) for n in g.data_sizes for e in g.epochs for f in g.freeze}


def test_frozen_and_small_cells_come_first(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[grid]\ndata_sizes = ["all", 50]\nepochs = [3]\nfreeze = [0, "all", 2]\n')
    order = [(c.freeze, c.data_size) for c in expand(load_study(path))]
    assert order == [("all", 50), ("all", "all"), (2, 50), (2, "all"), (0, 50), (0, "all")]
    assert expand(load_study(path))[0].id == "n=50|ep=3|freeze=all"
