"""python -m harness.report RESULTS_DIR [--set analysis.KEY=VALUE ...]"""

import sys

from harness.report import main

sys.exit(main())
