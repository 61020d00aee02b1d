"""Pure statistics on arrays: nothing here reads the store or imports the rest of the harness.

The grid model in three layers: ``grid_model`` (one additive model of every run; a cell's and a
contrast's variance in a seed part and a clustered test-set part), ``contrasts`` (the grid's
questions as families: each axis's steps, interactions, every adjacent pair of cells) and
``verdicts`` (simultaneous bounded intervals, verdicts, what would decide). Adaptive seeds in
two: ``sequential`` (looks that spend alpha) and ``allocation`` (where the next seeds go).
One module per further question of the report: ``peaks``, ``bands``, ``labelling``,
``calibration``, ``forecast``, ``cost``, ``search`` (expected best of k trials), ``proportions``
and ``metrics``. Methods, sources and the simulations that check them: docs/methods.md.
"""
