"""One module per command: `run(settings...) -> RunRecord`, written as OUT/run.json. The CLI and the
Python API both call these; benchmarks too."""
