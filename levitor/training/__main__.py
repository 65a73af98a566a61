"""``python -m levitor.training CONFIG``: the same as ``levitor train CONFIG`` (for torchrun / accelerate launch)."""

import sys

from levitor.training.commands import main

sys.exit(main())
