#!/usr/bin/env bash
# Builds the Debian package: target/debian/statecast_<version>_<arch>.deb,
# holding /usr/bin/statecast, the hardened unit statecast.service, the
# commented config /etc/statecast/statecast.toml (a conffile) and the docs
# under /usr/share/doc/statecast. Needs cargo-deb (installed here from
# crates.io when missing) and dpkg.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb from crates.io" >&2
    cargo install --locked cargo-deb
fi
# TLS (--tls-cert, --poll https://, rediss://) and signed tokens are in the
# package (the default build leaves both out); package_check.sh holds the
# binary to 4,000,000 bytes.
cargo build --release --locked --bin statecast --features tls,jwt
mkdir -p target/debian-doc
./target/release/statecast --help > target/debian-doc/statecast.txt
cargo deb --no-build --locked --output target/debian/ >&2
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
deb="target/debian/statecast_${version}_${arch}.deb"
test -f "$deb" || { echo "package.sh: expected $deb" >&2; ls target/debian >&2; exit 1; }
echo "$deb"
