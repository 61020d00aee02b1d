"""The speed benchmark: the harness against Hugging Face Trainer + Optuna, side by side.

``python -m bench --cells head-only,top-2,full``; see bench/RESULTS.md for the last run.

The protocol. The peer is ``Trainer.hyperparameter_search(backend="optuna")`` written as its
documentation shows: ``model_init`` builds a fresh classifier per trial and freezes with
``requires_grad_(False)``, dynamic padding, evaluation every epoch, the best model loaded at the
end, early stopping with patience 3, a log-uniform learning rate and a categorical batch size,
validation accuracy as the objective; the same data, splits, max_length, epochs, trials and seeds
as the harness. The data: 8,000 Amazon reviews (Blitzer et al. 2007, four domains), a fixed
stratified test set of 500 reviews; each seed draws its training subset and its 10% validation
split from the other 7,500. The cells (500 reviews, max_length 128):

    cell       freezing                       max epochs  trials  seeds
    head-only  every encoder block frozen             20       4      3
    top-2      all but the top 2 blocks frozen        10       2      2
    full       nothing frozen                          3       1      1

Each cell reports both sides' wall seconds (medians of 3 repetitions, interleaved; a side over 5
minutes runs once), the ratio, both test accuracies with the standard error of their difference,
and for head-only the ratio to the least possible work (one forward pass through the frozen
part). On a GPU: training samples/s and model FLOPs utilisation of full fine-tuning in bf16.
"""
