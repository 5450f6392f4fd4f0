"""``python -m evals.evolution``: see the package docstring."""

import sys

from evals.evolution.cli import main

sys.exit(main())
