#!/usr/bin/env bash
# Install the headless browser for the `browser`-marked tests: Debian's chromium + chromedriver
# (apt, as root) when the machine has none. Selenium itself is a dev dependency.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
t0=$(date +%s)
echo "browser: installing Debian's chromium + chromium-driver (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
echo "browser: installed in $(( $(date +%s) - t0 ))s" >&2
