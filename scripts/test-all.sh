#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, then runs every test.
# Usage: scripts/test-all.sh            (as root, or with sudo available)
# Missing packages are installed first. Tests that need a peer fail (never skip) when it is
# missing and CI=true; without CI they skip with a printed reason.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test suite uses (peer servers and tools the tests start themselves).
PACKAGES=(openssl ca-certificates
  git                     # the end-to-end tests commit to a desired-state repository
  prometheus              # prometheus + promtool: alert rules, /metrics lint, dashboard PromQL
  chromium chromium-driver  # headless browser + chromedriver: the System Health page
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

export CARGO_TERM_COLOR=never
cargo test --workspace --locked
