#!/usr/bin/env bash
# Install Debian's chromium and chromium-driver for the report's browser test (tests/report/test_browser.py).
# Never downloads a browser of its own: /usr/bin/chromium + /usr/bin/chromedriver from apt only.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no apt-get here; install chromium and chromium-driver with your package manager" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "install-browser: needs root: run 'sudo apt-get install -y chromium chromium-driver'" >&2
    exit 1
  fi
fi
${SUDO:-} apt-get update -q
DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -q --no-install-recommends chromium chromium-driver
