"""Running a study: the training itself and the front ends that schedule it.

- ``hub``: where a model comes from, checked before anything heavy loads (fails fast offline);
- ``modeling``: loading a model, freezing depth, the frozen-prefix cache;
- ``packing``: how a batch reaches the model (padded, bucketed or packed) (``Inputs``);
- ``train``: one training run, written out: epochs, validation, early stopping, test once;
- ``tuning``: Optuna per cell (learning rate, batch size) on the validation set;
- ``execute``: the execution core (a context, one run, one trial, an evaluation, reuse) that
  every front end shares;
- ``runner`` (``harness run``) and ``worker`` (``harness worker``): who picks the next unit of
  work; ``distributed``: the work units shared through Optuna's storage; ``display``: progress;
  ``plan``: what a run will train and an estimate of its time, before it starts.
"""
