#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, then runs every test.
# Usage: scripts/test-all.sh            (as root, or with sudo available)
# Missing packages are installed first. Tests that need a peer fail (never skip) when it is
# missing and CI=true; without CI they skip with a printed reason.
set -euo pipefail
cd "$(dirname "$0")/.."

# Peers and tools the test suite uses, one group per peer: "name: packages". Each group is
# installed (when missing) and timed on its own, so a slow install shows up by name.
PEERS=(
  "tools: openssl ca-certificates git"            # git: e2e tests commit to a desired-state repo
  "prometheus: prometheus"                        # prometheus + promtool: rules, /metrics lint, PromQL
  "chromium: chromium chromium-driver"            # headless browser + chromedriver: the System Health page
  "ldap: slapd ldap-utils"                        # OpenLDAP slapd + ldapmodify: generic LDAP, directory seeding
  "samba: samba-ad-dc samba-ad-provision"         # a real Active Directory domain controller
  "haproxy: haproxy"                              # HAProxy 2.6: load-balancer farms, reloads, runtime API
  "etcd: etcd-server etcd-client"                 # etcd 3.4 + etcdctl: controller HA's leader election
  "protoc: protobuf-compiler"                     # builds etcd-client's gRPC code (steward-leader)
)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
updated=""
# Without this preseed slapd's package creates a default database and wants an admin
# password; the tests write their own slapd.conf instead.
echo "slapd slapd/no_configuration boolean true" | $SUDO debconf-set-selections
for group in "${PEERS[@]}"; do
  name=${group%%:*}
  missing=()
  for pkg in ${group#*:}; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "peer $name: already installed (0 s)"
    continue
  fi
  started=$(date +%s)
  if [ -z "$updated" ]; then
    $SUDO apt-get update -qq
    updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "peer $name: installed ${missing[*]} in $(( $(date +%s) - started )) s"
done

# Python peers, one group per line, pinned: "name: package==version ...".
PIP_PEERS=(
  "sqlfluff: sqlfluff==4.5.0 sqlglot==30.30.0"     # two independent T-SQL parsers: the database crate's generated statements
  "aiosmtpd: aiosmtpd==1.4.6"                       # a real SMTP server (STARTTLS, SMTPS, AUTH): the notify crate's delivery tests
)
for group in "${PIP_PEERS[@]}"; do
  name=${group%%:*}
  missing=()
  for pin in ${group#*:}; do
    [ "$(python3 -m pip show "${pin%%==*}" 2>/dev/null | awk '/^Version:/ { print $2 }')" = "${pin#*==}" ] || missing+=("$pin")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "peer $name: already installed (0 s)"
    continue
  fi
  started=$(date +%s)
  python3 -m pip install -q --disable-pip-version-check "${missing[@]}" >/dev/null
  echo "peer $name: installed ${missing[*]} in $(( $(date +%s) - started )) s"
done

# iridium_server: a real TDS (SQL Server wire protocol) server for the database tests. It is
# built with `cargo install` into target/peers, which CI keeps with target/, so only the first run
# pays the build (minutes on two cores).
if [ -x target/peers/bin/iridium-server ]; then
  echo "peer iridium: already installed (0 s)"
else
  started=$(date +%s)
  cargo install iridium_server --version 0.1.13 --locked --root target/peers --quiet
  echo "peer iridium: installed in $(( $(date +%s) - started )) s"
fi

export CARGO_TERM_COLOR=never
log=$(mktemp)
# Tests that cannot run here (a peer missing outside CI) append one line each to this file
# (steward-testkit's `skip`): libtest hides a passing test's output, so this is how the
# closing line can count them.
export STEWARD_SKIPPED_LOG
STEWARD_SKIPPED_LOG=$(mktemp)
trap 'rm -f "$log" "$STEWARD_SKIPPED_LOG"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Every cargo-fuzz target for FUZZ_SECONDS (default 20) each: docs/testing.md.
scripts/fuzz.sh
fuzz_status=$?
[ "$status" -ne 0 ] || status=$fuzz_status
set -e
if [ -s "$STEWARD_SKIPPED_LOG" ]; then
  echo "skipped tests:"
  sed 's/^/  /' "$STEWARD_SKIPPED_LOG"
fi
skipped=$(wc -l < "$STEWARD_SKIPPED_LOG")
# One closing line for the whole run (cargo prints one per test binary, the last of which
# is often a crate's empty doc-test run). A skipped test also counts as passed in libtest's
# own tally, so it is taken out of "passed" here; `#[ignore]`d tests count as skipped too.
awk -v skipped="$skipped" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1); if ($i ~ /^ignored;?$/) g += $(i-1) } }
     END { printf "%d passed, %d failed, %d skipped\n", p - skipped, f, skipped + g }' "$log"
exit "$status"
