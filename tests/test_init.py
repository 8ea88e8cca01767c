"""The lazy public API: every export resolves, and a function named like a subpackage stays the function."""
import subprocess
import sys

import kenprune


def test_every_export_resolves():
    for name in kenprune.__all__:
        assert getattr(kenprune, name) is not None, name


def test_a_function_named_like_a_subpackage_is_not_rebound_by_importing_the_subpackage():
    # kenprune.structured / kenprune.ken are API functions and subpackages; importing the subpackage after the
    # function was bound used to replace kenprune.structured with the module (fresh interpreter: no import cache)
    code = ("import kenprune\n"
            "f, g = kenprune.structured, kenprune.ken\n"
            "import kenprune.structured.prune, kenprune.structured.polarize, kenprune.ken.selections\n"
            "assert kenprune.structured is f and callable(f), type(kenprune.structured)\n"
            "assert kenprune.ken is g and callable(g), type(kenprune.ken)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
