"""`python -m kenprune`: the same as the `kenprune` command."""
import signal
import sys

try:
    from .cli import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C outside a command's own handling (while starting up or finishing)
    print("kenprune: interrupted; nothing half-written was kept", file=sys.stderr)
    code = 130
# The command's outcome is decided: a Ctrl-C while the interpreter shuts down (joining library threads,
# atexit hooks) would otherwise end the process by SIGINT and hide that outcome.
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(code)
