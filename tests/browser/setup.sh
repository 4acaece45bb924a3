#!/usr/bin/env bash
# What the page test needs, installed by the project itself: Debian's chromium (apt) and playwright-core (npm, pinned
# in package-lock.json). Idempotent and quick once installed; the page test runs it first.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/browser/setup.sh: chromium is missing; install it with 'sudo apt-get install -y chromium' (or run this script as root)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
[ -f node_modules/playwright-core/package.json ] || npm ci --no-audit --no-fund --loglevel=error
