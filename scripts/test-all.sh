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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary, the last of which
# is often a crate's empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
