#!/usr/bin/env bash
# Quick start 1: set up, then run the demo on the embedded default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/kenprune demo "$@"
