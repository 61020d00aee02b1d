"""The rows a study trains and tests on: where they come from, their labels, the audit and the splits.

- ``sources``: a builtin set, a local file or a URL as a DataFrame (downloaded once, cached);
- ``thresholds``: classes cut from a numeric score, with a stated rule for a score on a threshold;
- ``audit``: duplicates (exact and near), conflicting labels and groups that straddle splits;
- ``dataset``: labels, the audit's policy, the fixed validation/test split and the nested training
  subsets of every seed (``load_dataset``).

Nothing here imports the layers that use it (run, stats, report).
"""

from harness.data.audit import Findings
from harness.data.dataset import Dataset, encode_labels, load_dataset, nested_order, split
from harness.data.sources import cache_dir, read_builtin, read_source, read_table

__all__ = ["Dataset", "Findings", "cache_dir", "encode_labels", "load_dataset", "nested_order", "read_builtin",
           "read_source", "read_table", "split"]
