#!/usr/bin/env bash
# Runs every test statecast has, on a fresh machine: lints, the Rust unit
# and integration tests, then the Autobahn conformance cases against the
# release binary (kosoku, from PyPI, in a local venv).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
cargo test --doc

echo "== conformance (Autobahn cases via kosoku)"
if [ ! -x .venv/bin/kosoku ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check kosoku==0.1.0
fi
cargo build --release --quiet
# The README's first command must keep resolving to the server binary.
cargo run --release --quiet -- --version
.venv/bin/python scripts/conformance.py target/release/statecast target/conformance
