#!/usr/bin/env bash
# Runs every test statecast has, on a fresh machine: lints, the Rust unit
# and integration tests, the dashboard contract's own schema check, then the
# Autobahn conformance cases against the release binary (kosoku and
# jsonschema, from PyPI, in a local venv).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
# The `https` feature (TLS for --poll) is not in the default build; keep it
# compiling.
cargo check --quiet --features https
echo "== cargo test"
cargo test --all-targets
cargo test --doc

if [ ! -x .venv/bin/kosoku ] || ! .venv/bin/python -c "import jsonschema, prometheus_client, websockets" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check kosoku==0.1.0 jsonschema==4.26.0 \
        prometheus-client==0.26.0 websockets==17.4
fi

echo "== contract (every schema against its valid and crashing cases)"
.venv/bin/python contract/check_cases.py

echo "== /metrics through prometheus_client's parser"
cargo build --release --quiet
.venv/bin/python scripts/metrics_check.py target/release/statecast

echo "== permessage-deflate against Python's websockets"
.venv/bin/python scripts/deflate_check.py target/release/statecast

echo "== the live page in Chromium (playwright-core)"
# Debian's Chromium, never a downloaded browser; installed here when absent
# (CI runs as root on a fresh machine). No browser is a failure, not a skip.
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && apt-get install -y -q chromium
    else
        echo "chromium is not installed: apt-get install chromium (as root)" >&2
        exit 1
    fi
fi
(cd tests/browser && npm ci --silent --no-audit --no-fund && node page.test.mjs ../../target/release/statecast 60)

echo "== conformance (Autobahn cases via kosoku)"
cargo build --release --quiet
# The README's first command must keep resolving to the server binary.
cargo run --release --quiet -- --version
.venv/bin/python scripts/conformance.py target/release/statecast target/conformance
