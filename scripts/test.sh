#!/usr/bin/env bash
# Runs every test statecast has, on a fresh machine: lints, the Rust unit
# and integration tests (the cluster and deployment tests need Debian's
# redis-server and nginx, installed here when missing), the dashboard
# contract's own schema check, compression against Python's websockets, the
# page in Chromium, the Debian package (built with cargo-deb, installed from
# crates.io when missing) and its hardened unit, then the Autobahn
# conformance cases against the release binary (kosoku and jsonschema, from
# PyPI, in a local venv). TLS (--tls-cert) is checked three ways beside the
# Rust tests: Python's websockets and ssl, the page in Chromium over
# https://, and the no-proxy recipe of docs/deployment.md.
#
# `scripts/test.sh --check` only checks the prerequisites (CONTRIBUTING.md
# lists them) and says in one line what is missing; it installs nothing.
set -euo pipefail
# The check runs before anything is known to be installed, so it needs
# bash alone (no dirname, sed or id): tests/scripts.rs runs it on an
# empty PATH.
case $0 in
    */*) cd "${0%/*}/.." ;;
    *) cd .. ;;
esac

check_only=false
[ "${1:-}" = --check ] && check_only=true

# The toolchain (rustup's, per user) and the system packages
# CONTRIBUTING.md installs before a first run (a C toolchain,
# python3-venv, nodejs and npm): never installed here, only named, all in
# one line.
rust_version() { # the rust-version Cargo.toml declares
    local line
    while IFS= read -r line; do
        if [[ $line =~ ^rust-version\ =\ \"([0-9.]+)\" ]]; then
            echo "${BASH_REMATCH[1]}"
            return
        fi
    done < Cargo.toml
}
older() { # whether version $1 is older than $2 (dotted numbers)
    local -a a b
    IFS=. read -ra a <<< "$1"
    IFS=. read -ra b <<< "$2"
    local i
    for i in 0 1 2; do
        if (( 10#${a[i]:-0} != 10#${b[i]:-0} )); then
            (( 10#${a[i]:-0} < 10#${b[i]:-0} ))
            return
        fi
    done
    return 1
}
need=$(rust_version)
absent=()
for tool in cargo rustc; do
    if ! found=$("$tool" --version 2>/dev/null); then
        absent+=("$tool $need or newer (rustup)")
    elif [[ $found =~ ([0-9]+\.[0-9]+\.[0-9]+) ]] && older "${BASH_REMATCH[1]}" "$need"; then
        absent+=("$tool $need or newer (found ${BASH_REMATCH[1]}; rustup update)")
    fi
done
cargo fmt --version >/dev/null 2>&1 || absent+=("rustfmt (rustup component add rustfmt)")
cargo clippy --version >/dev/null 2>&1 || absent+=("clippy (rustup component add clippy)")
command -v cc >/dev/null || absent+=("cc (apt-get install build-essential)")
if ! command -v python3 >/dev/null; then
    absent+=("python3 (apt-get install python3 python3-venv)")
elif [ ! -x .venv/bin/python ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    absent+=("python3 -m venv (apt-get install python3-venv)")
fi
command -v node >/dev/null || absent+=("node (apt-get install nodejs)")
command -v npm >/dev/null || absent+=("npm (apt-get install npm)")
# The package check forbids writable code with PR_SET_MDWE, which Linux
# gained in 6.3: an older kernel would fail the run at its last step.
# Read from /proc, as uname is not bash; TEST_SH_OSRELEASE names another
# file, so that tests/scripts.rs can plant an old kernel.
kernel=""
read -r kernel < "${TEST_SH_OSRELEASE:-/proc/sys/kernel/osrelease}" 2>/dev/null || true
if [[ $kernel =~ ^([0-9]+\.[0-9]+) ]] && older "${BASH_REMATCH[1]}" 6.3; then
    absent+=("Linux 6.3 or newer for the package check (found ${BASH_REMATCH[1]}; Debian 13, or 12 with a kernel from bookworm-backports)")
fi

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

if [ ${#absent[@]} -gt 0 ]; then
    line="test.sh: missing, install first (see CONTRIBUTING.md): ${absent[0]}"
    for item in "${absent[@]:1}"; do line+=", $item"; done
    echo "$line" >&2
    exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
    if $check_only || [ "$EUID" != 0 ]; then
        echo "test.sh: missing ${missing[*]}; as root, run: apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    services=""
    case " ${missing[*]} " in
        *" nginx "* | *" redis-server "*)
            services=" (nginx and redis-server start as services, on ports 80 and 6379: CONTRIBUTING.md says how to stop them)" ;;
    esac
    echo "test.sh: missing ${missing[*]}; installing with apt-get: ${missing[*]}$services" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
if $check_only; then
    echo "test.sh: every prerequisite is here"
    exit 0
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

echo "== wss:// and https:// with Python's websockets and ssl (--features tls)"
# target/debug/statecast is the tls,jwt build the TLS tests above made:
# reused here and by the Chromium TLS step, not built again.
.venv/bin/python scripts/tls_check.py target/debug/statecast

echo "== /metrics through prometheus_client's parser"
# The release binary as the package ships it (TLS and signed tokens in),
# for this and every later step.
cargo build --release --quiet --features tls,jwt
.venv/bin/python scripts/metrics_check.py target/release/statecast

echo "== permessage-deflate against Python's websockets"
.venv/bin/python scripts/deflate_check.py target/release/statecast

echo "== the live page in Chromium (playwright-core)"
# Debian's Chromium (installed above), never a downloaded browser.
(cd tests/browser && npm ci --silent --no-audit --no-fund && node page.test.mjs ../../target/release/statecast 60)

echo "== the README quickstart's page snippet in Chromium (playwright-core)"
(cd tests/browser && node readme.test.mjs ../../target/release/statecast)

echo "== another site's page in Chromium: refused on every path (playwright-core)"
(cd tests/browser && node cross-site.test.mjs ../../target/release/statecast)

echo "== the live page over https:// in Chromium, trusting a test-made key by its SPKI (playwright-core)"
# The tls,jwt debug build the TLS tests made (see the Python TLS step).
(cd tests/browser && node tls.test.mjs ../../target/debug/statecast)

echo "== the browser's delta applier (web/delta.js) against the server's deltas (node)"
(cd tests/browser && node delta.test.mjs ../../target/release/statecast)

echo "== statecast.js in Chromium: retries by close code, refusals, tokens, SSE, deltas; its types (playwright-core, tsc)"
(cd tests/browser && node client.test.mjs ../../target/release/statecast)

echo "== the Debian package: contents, systemd-analyze verify and security, /healthz"
bash scripts/package_check.sh

echo "== conformance (Autobahn cases via kosoku)"
cargo build --release --quiet --features tls,jwt
# The README's first command must keep resolving to the server binary.
cargo run --release --quiet --features tls,jwt -- --version
.venv/bin/python scripts/conformance.py target/release/statecast target/conformance
