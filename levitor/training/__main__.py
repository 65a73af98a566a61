"""``python -m levitor.training CONFIG``: the same as ``levitor train CONFIG`` (for torchrun / accelerate launch)."""

import sys

from levitor.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
