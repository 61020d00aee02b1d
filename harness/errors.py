"""The one exception type the command line turns into a one-line message and exit status 2."""

from __future__ import annotations


class HarnessError(Exception):
    """Bad input: a study file, a data file, a model name or a results directory.

    The message names the file, key or column and says what was expected; the
    command line prints it on one line and exits with status 2, before anything
    in ``results/`` is touched.
    """

    exit_code = 2
