#!/usr/bin/env bash
# make fuzz: every target of crates/dps-fuzz under libFuzzer (cargo-fuzz, nightly, AddressSanitizer) for
# FUZZ_SECONDS each (default 600), one after another, then the executions and corpus size per target.
#   FUZZ_TARGETS="sas_token x509_chain"  only these targets
#   FUZZ_KEEP=1   merge the inputs that found new coverage into the committed corpus (crates/dps-fuzz/corpus)
#   FUZZ_NICE=19  run at this niceness (other work on the machine keeps its CPU)
# New inputs go to a scratch directory first; crashes to crates/dps-fuzz/fuzz/artifacts/<target>/. A crash
# found makes the script exit non-zero after every target ran: minimise it (cargo +nightly fuzz tmin), add it
# to corpus/<target>/ as crash-<what>, fix the code with a named regression test beside it.
# Leak detection is off: the stateful targets share one long-lived service whose state (records, the live-log
# ring, caches) legitimately outlives an input; memory is bounded by libFuzzer's -rss_limit_mb (2 GB) instead.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-600}
targets=${FUZZ_TARGETS:-http_request websocket mqtt_session amqp_frames sas_token x509_chain json_documents tpm_structures}
fuzz_dir=crates/dps-fuzz/fuzz
corpus=crates/dps-fuzz/corpus
# Its own target directory: nightly and sanitizer flags would rebuild the shared one's artifacts.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dps-target}/fuzz"
export CARGO_INCREMENTAL=0
scratch=$(mktemp -d "${TMPDIR:-/tmp}/dps-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || exit 1
# Built once: `cargo fuzz run` would rebuild before each target whenever a source changed meanwhile.
cargo +nightly fuzz build --fuzz-dir "$fuzz_dir" || exit 1
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"

failed=()
summary=()
for t in $targets; do
  mkdir -p "$scratch/$t" "$fuzz_dir/artifacts/$t"
  log="$scratch/$t.log"
  echo "== $t: ${seconds}s"
  nice -n "${FUZZ_NICE:-0}" "$bin/$t" "$scratch/$t" "$corpus/$t" \
    -max_total_time="$seconds" -timeout=60 -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$fuzz_dir/artifacts/$t/" 2>&1 | tee "$log" | grep -E "^#[0-9]+.*(INITED|DONE)|ERROR|panicked|SUMMARY" || true
  rc=${PIPESTATUS[0]}
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  units=$(grep -oE '^#[0-9]+.*corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*')
  [ "$rc" -eq 0 ] || failed+=("$t")
  if [ "${FUZZ_KEEP:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
    "$bin/$t" "$corpus/$t" "$scratch/$t" -merge=1 >/dev/null 2>&1
  fi
  summary+=("$(printf '%-16s %8ss %12s executions  %s  %s' "$t" "$seconds" "${execs:-?}" "${units:-}" "$([ "$rc" -eq 0 ] && echo ok || echo CRASH)")")
done

echo
echo "target           duration   executions  corpus (inputs/bytes)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]} (inputs in $fuzz_dir/artifacts/)" >&2
  exit 1
fi
