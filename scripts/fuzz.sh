#!/usr/bin/env bash
# Builds the cargo-fuzz targets (fuzz/, nightly toolchain) and runs each for a bounded time
# from its committed corpus; exits 1 when a target crashes (panic, failed check, timeout,
# out of memory), 2 when the fuzzers cannot be built. Run by scripts/test-all.sh.
#
#   FUZZ_SECONDS=20        seconds per target (fuzz/README.md: the long run)
#   FUZZ_TARGETS="a b"     only these targets (default: every target of `cargo fuzz list`)
#   FUZZ_SANITIZER=none    or address (slower; for the long run)
#   FUZZ_JOBS=1            libFuzzer processes per target
#
# New inputs libFuzzer finds go to target/fuzz/corpus/TARGET (kept between runs, never
# committed; fuzz/README.md says how to fold them into fuzz/corpus); crashes to
# target/fuzz/artifacts/TARGET/, printed with the command that replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${FUZZ_SECONDS:-20}
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
target_dir=$root/target/fuzz
export PATH="$root/target/peers/bin:$PATH"

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 2
fi
# cargo-fuzz, cached under target/ like the other peers built with cargo install.
if [ -x target/peers/bin/cargo-fuzz ]; then
  echo "peer cargo-fuzz: already installed (0 s)"
else
  started=$(date +%s)
  cargo install cargo-fuzz --version 0.13.2 --locked --root target/peers --quiet
  echo "peer cargo-fuzz: installed in $(( $(date +%s) - started )) s"
fi

cd fuzz
fuzz=(cargo +nightly fuzz)
build_flags=(--sanitizer "$sanitizer" --target-dir "$target_dir")
started=$(date +%s)
if ! "${fuzz[@]}" build "${build_flags[@]}"; then
  echo "fuzz: build failed" >&2
  exit 2
fi
echo "fuzz: built every target in $(( $(date +%s) - started )) s (sanitizer: $sanitizer)"

targets=${FUZZ_TARGETS:-$("${fuzz[@]}" list)}
failed=()
for t in $targets; do
  scratch=$target_dir/corpus/$t
  artifacts=$target_dir/artifacts/$t
  rm -rf "$artifacts"
  mkdir -p "$scratch" "$artifacts"
  log=$(mktemp)
  started=$(date +%s)
  # The scratch corpus comes first: libFuzzer writes what it finds into the first
  # directory only, so the committed one is read, never changed.
  set +e
  "${fuzz[@]}" run "${build_flags[@]}" "$t" "$scratch" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -jobs="$jobs" -workers="$jobs" \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  runs=$(awk '/stat::number_of_executed_units:/ { n += $2 } END { print n + 0 }' "$log" fuzz-*.log 2>/dev/null || true)
  rm -f fuzz-*.log
  if [ "$status" -eq 0 ]; then
    echo "fuzz $t: $runs runs in $(( $(date +%s) - started )) s, no crash"
  else
    failed+=("$t")
    echo "fuzz $t: CRASH (exit $status) after $(( $(date +%s) - started )) s"
    grep -E -A1 "panicked at" "$log" | head -6 | sed "s/^/  /" || true
    grep -E "ERROR: libFuzzer|Test unit written" "$log" | head -4 | sed 's/^/  /' || true
    for a in "$artifacts"/*; do
      [ -e "$a" ] && echo "  replay: (cd fuzz && cargo +nightly fuzz run ${build_flags[*]} $t $a)"
    done
  fi
  rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}"
  exit 1
fi
echo "fuzz: every target ran ${seconds} s without a crash"
