"""``python -m agent.cli``: the ``tunesmith`` command without its installed script."""

import sys

from agent.cli import main

sys.exit(main())
