#!/usr/bin/env bash
# What the test suite needs beyond Python: Debian's Chromium and its driver (the console's browser tests;
# nothing may download a browser) and h2load (bench/grpc_load.py's smoke run). Installed when missing and
# we may; otherwise the command to run is printed and `make test` stops - the browser tests never skip.
set -euo pipefail
have() { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && command -v h2load >/dev/null; }
have && exit 0
packages="chromium chromium-driver nghttp2-client"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q $packages >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q $packages >/dev/null; }
fi
have && exit 0
echo "the test suite needs Debian's $packages; install them with:" >&2
echo "  sudo apt-get install -y $packages" >&2
exit 1
