#!/usr/bin/env bash
# Chromium for the docs browser test (tests/integrators/test_docs_offline.py), run by
# `make install-dev`. Uses PACT_CHROMIUM when set, else a chromium already on PATH, else
# installs Debian's `chromium` package (as root, with apt-get). Playwright drives it; nothing
# downloads a browser of its own.
set -euo pipefail

if [[ -n "${PACT_CHROMIUM:-}" ]]; then
  [[ -x "$PACT_CHROMIUM" ]] && exit 0
  echo "make: PACT_CHROMIUM=$PACT_CHROMIUM is not an executable" >&2
  exit 1
fi
for candidate in chromium chromium-browser google-chrome; do
  command -v "$candidate" >/dev/null 2>&1 && exit 0
done
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Chromium for the docs browser test (apt-get install chromium) ..."
  export DEBIAN_FRONTEND=noninteractive
  # Another apt-get may hold the lock for a while (unattended upgrades, a parallel install).
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    chromium fonts-liberation >/dev/null
  command -v chromium >/dev/null && exit 0
fi
echo "make: the docs browser test needs Chromium: install it (Debian: apt-get install chromium)" \
  "or set PACT_CHROMIUM to a Chromium or Chrome executable" >&2
exit 1
