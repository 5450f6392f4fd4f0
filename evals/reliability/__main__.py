"""``python -m evals.reliability``: see the package docstring."""

import sys

from evals.reliability.cli import main

sys.exit(main())
