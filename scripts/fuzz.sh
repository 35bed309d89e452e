#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) with cargo-fuzz (libFuzzer).
# Not part of the test command: cargo-fuzz needs nightly features, which
# RUSTC_BOOTSTRAP=1 unlocks on this stable toolchain. The seeds in
# fuzz/seeds/ are committed; what a run learns goes to fuzz/corpus/ (ignored).
# A crash stops the run and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in request_path client_frames config_file; do
    mkdir -p "fuzz/corpus/$target"
    echo "== $target for ${seconds}s"
    (cd fuzz && cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | grep -E "^#[0-9]+ +DONE|Done|SUMMARY|ERROR|panicked" || true)
    if ls "fuzz/artifacts/$target"/crash-* >/dev/null 2>&1; then
        echo "crash found in $target: fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
