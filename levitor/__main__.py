"""``python -m levitor``: the same as the ``levitor`` command."""

import sys

from levitor.cli import main

sys.exit(main())
