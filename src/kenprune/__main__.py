"""`python -m kenprune`: the same as the `kenprune` command."""
import sys

from .cli import main

sys.exit(main())
