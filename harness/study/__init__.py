"""What a study is: its file, its axes and its grid of cells.

- ``schema``: one frozen dataclass per section of a study file, each with its checks;
- ``loader``: a TOML file (and ``--set`` overrides) into those dataclasses, one line per bad key;
- ``axes``: the study's axes declared once (order, names, questions), read by everything downstream;
- ``grid``: every cell of every grid block, with the study as that cell runs.

Nothing here imports the layers that use it (data, run, stats, report).
"""

from harness.study.axes import Axis, axes_of, block_name, cell_id, filled, sort_key
from harness.study.grid import Cell, conflict, expand, settings
from harness.study.loader import build, load_study
from harness.study.schema import (ALL, NOT_RUN, REPLICATE_STRIDE, VARIABLE, AnalysisSpec, DataSpec, GridSpec, ModelSpec, SearchSpec,
                                  SeedSpec, Study, StudyError, TrainSpec, delta, setting, vary_section, with_values)

__all__ = ["ALL", "NOT_RUN", "REPLICATE_STRIDE", "VARIABLE", "AnalysisSpec", "Axis", "Cell", "DataSpec", "GridSpec", "ModelSpec",
           "SearchSpec", "SeedSpec", "Study", "StudyError", "TrainSpec", "axes_of", "block_name", "build", "cell_id",
           "conflict", "delta", "expand", "filled", "load_study", "setting", "settings", "sort_key", "vary_section", "with_values"]
