"""`python -m kenprune`: the same as the `kenprune` command."""
import sys

from .cli import main

try:
    code = main()
except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (while starting up or finishing)
    print("kenprune: interrupted", file=sys.stderr)
    code = 130
sys.exit(code)
