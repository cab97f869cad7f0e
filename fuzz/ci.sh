#!/usr/bin/env bash
# The short, bounded fuzz run for CI: every fuzz target for a few seconds, starting from
# the committed seed corpus. Installs cargo-fuzz if it is missing.
#
#   bash fuzz/ci.sh [seconds per target]      (default 4; about 2 minutes in all)
#
# A finding fails the run, prints the target's log and leaves the input in
# fuzz/artifacts/<target>/; README.md here says how to reproduce and fix it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-4}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes nightly-only flags (sanitizer, coverage instrumentation); this lets
# the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

# Many codegen units: a build twice as fast, for runs a little slower. `run` is given the
# same flags, or it would build again.
flags=(--codegen-units 16)
started=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz: built every target in $((SECONDS - started)) s"

# New inputs go to a scratch directory (the first one given), so the committed corpus
# is only read.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0
for target in $(cargo fuzz list); do
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    if cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
        echo "fuzz $target: ${runs:-?} runs in ${seconds} s, nothing found"
        passed=$((passed + 1))
    else
        echo "fuzz $target: FAILED"
        tail -n 60 "$log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $((SECONDS - started)) s in all"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
