#!/usr/bin/env bash
# Runs every test statecast has, on a fresh machine: lints, the Rust unit
# and integration tests (the cluster and deployment tests need Debian's
# redis-server and nginx, installed here when missing), the dashboard
# contract's own schema check, compression against Python's websockets, the
# page in Chromium, the Debian package (built with cargo-deb, installed from
# crates.io when missing) and its hardened unit, then the Autobahn
# conformance cases against the release binary (kosoku and jsonschema, from
# PyPI, in a local venv).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run: installed when absent (CI runs as root on a
# fresh machine). A missing one is a failure, never a skip.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v chromium >/dev/null || missing+=(chromium)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
# The package checks: systemd-analyze, and dpkg-deb (in dpkg, always there).
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    else
        echo "missing: ${missing[*]}: apt-get install ${missing[*]} (as root)" >&2
        exit 1
    fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
# The `tls` feature (--poll https://, --redis rediss://) is not in the
# default build; keep it clean too.
cargo clippy --quiet --all-targets --features tls,jwt -- -D warnings
# Nor is the leanest build, without the Redis client.
cargo clippy --quiet --no-default-features -- -D warnings
echo "== cargo test"
cargo test --all-targets
cargo test --doc
echo "== rediss:// against redis-server on a TLS port, TLS served (--tls-cert), and signed tokens (--features tls,jwt)"
cargo test --features tls,jwt --lib --test rediss --test tls --test jwt --test exec --test access

if [ ! -x .venv/bin/kosoku ] || ! .venv/bin/python -c "import jsonschema, prometheus_client, websockets" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check kosoku==0.1.0 jsonschema==4.26.0 \
        prometheus-client==0.26.0 websockets==17.4
fi

echo "== contract (every schema against its valid and crashing cases)"
.venv/bin/python contract/check_cases.py

echo "== /metrics through prometheus_client's parser"
# The release binary as the package ships it (signed tokens in), for this
# and every later step.
cargo build --release --quiet --features jwt
.venv/bin/python scripts/metrics_check.py target/release/statecast

echo "== permessage-deflate against Python's websockets"
.venv/bin/python scripts/deflate_check.py target/release/statecast

echo "== the live page in Chromium (playwright-core)"
# Debian's Chromium (installed above), never a downloaded browser.
(cd tests/browser && npm ci --silent --no-audit --no-fund && node page.test.mjs ../../target/release/statecast 60)

echo "== another site's page in Chromium: refused on every path (playwright-core)"
(cd tests/browser && node cross-site.test.mjs ../../target/release/statecast)

echo "== statecast.js in Chromium: retries by close code, refusals, tokens, SSE, deltas; its types (playwright-core, tsc)"
(cd tests/browser && node client.test.mjs ../../target/release/statecast)

echo "== the Debian package: contents, systemd-analyze verify and security, /healthz"
bash scripts/package_check.sh

echo "== conformance (Autobahn cases via kosoku)"
cargo build --release --quiet --features jwt
# The README's first command must keep resolving to the server binary.
cargo run --release --quiet --features jwt -- --version
.venv/bin/python scripts/conformance.py target/release/statecast target/conformance
