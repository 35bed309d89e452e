#!/usr/bin/env bash
# Builds the Debian package and checks what it installs, without installing
# it: the files are where the README says, the config is a conffile, systemd
# accepts the unit and rates its exposure 2.0 or less, the binary is within
# its 4,000,000-byte budget, and the packaged binary started on the
# packaged config answers /healthz, over https too with a certificate made
# here, and mints a signed token.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(bash scripts/package.sh)
root=$(mktemp -d)
trap 'kill ${pid:-} ${tls_pid:-} 2>/dev/null || true; rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$root/DEBIAN"
fail() { echo "package_check: $*" >&2; exit 1; }

unit="$root/usr/lib/systemd/system/statecast.service"
for f in usr/bin/statecast etc/statecast/statecast.toml usr/share/doc/statecast/statecast.txt \
         usr/share/doc/statecast/README.md usr/share/doc/statecast/LICENSE-MIT \
         usr/share/doc/statecast/LICENSE-APACHE usr/lib/systemd/system/statecast.service; do
    test -f "$root/$f" || fail "$f is not in $deb"
done
grep -qx /etc/statecast/statecast.toml "$root/DEBIAN/conffiles" || fail "the config is not a conffile"
grep -q '^ExecStart=/usr/bin/statecast --config /etc/statecast/statecast.toml$' "$unit" \
    || fail "the unit does not run the packaged binary on the packaged config"
for key in DynamicUser ProtectSystem ProtectHome PrivateTmp NoNewPrivileges \
           RestrictAddressFamilies SystemCallFilter MemoryMax LimitNOFILE; do
    grep -q "^$key=" "$unit" || fail "the unit does not set $key"
done
echo "package: $deb holds the binary, the unit, the conffile and the docs"

# The size a small host's package is held to (docs/footprint.md): TLS and
# signed tokens share one crypto library, ring, to stay under it.
size=$(stat -c %s "$root/usr/bin/statecast")
[ "$size" -le 4000000 ] || fail "the packaged binary is $size bytes, over its 4,000,000"
echo "package: the binary is $size bytes stripped (at most 4,000,000)"

# verify checks that ExecStart's program exists: this machine has not
# installed the package, so a copy of the unit names the extracted files.
sed "s#/usr/bin/statecast#$root/usr/bin/statecast#; s#/etc/statecast/#$root/etc/statecast/#g" \
    "$unit" > "$root/statecast.service"
systemd-analyze verify "$root/statecast.service"
echo "package: systemd-analyze verify accepts the unit"

exposure=$(systemd-analyze security --offline=true "$unit" \
    | sed -n 's/.*Overall exposure level for statecast.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze security printed no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure $exposure is over 2.0"
echo "package: systemd-analyze security rates the unit's exposure $exposure (at most 2.0)"

# The address in the "listening on" line of the log $1 of process $2,
# waiting up to 10 s for it.
listening() {
    local addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$1" | head -1)
        [ -n "$addr" ] && { echo "$addr"; return; }
        kill -0 "$2" 2>/dev/null || { cat "$1" >&2; fail "the packaged binary exited on the packaged config"; }
        sleep 0.1
    done
    cat "$1" >&2
    fail "no 'listening on' line within 10 s"
}

# The packaged config, as the unit gives it; only the port is ours (0: any
# free one), read back from the log line.
log="$root/statecast.log"
"$root/usr/bin/statecast" --config "$root/etc/statecast/statecast.toml" --listen 127.0.0.1:0 \
    2> "$log" &
pid=$!
addr=$(listening "$log" "$pid")
health=$(curl -fsS "http://$addr/healthz") || fail "/healthz did not answer 200"
case "$health" in
    *'"status":"ok"'*) ;;
    *) fail "/healthz answered $health" ;;
esac
echo "package: the packaged binary on the packaged config answers /healthz: $health"

# TLS is built in: with a self-signed certificate made here, the same
# config serves https, and curl, trusting only that certificate, gets
# /healthz through it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$root/tls.key" -out "$root/tls.crt" 2>/dev/null \
    || fail "openssl could not make a test certificate"
tls_log="$root/statecast-tls.log"
"$root/usr/bin/statecast" --config "$root/etc/statecast/statecast.toml" --listen 127.0.0.1:0 \
    --tls-cert "$root/tls.crt" --tls-key "$root/tls.key" 2> "$tls_log" &
tls_pid=$!
tls_addr=$(listening "$tls_log" "$tls_pid")
grep -q "listening on $tls_addr with TLS" "$tls_log" \
    || { cat "$tls_log" >&2; fail "the packaged binary does not say it serves TLS"; }
health=$(curl -fsS --cacert "$root/tls.crt" "https://$tls_addr/healthz") \
    || { cat "$tls_log" >&2; fail "/healthz over https did not answer 200 (built without --features tls?)"; }
case "$health" in
    *'"status":"ok"'*) ;;
    *) fail "/healthz over https answered $health" ;;
esac
echo "package: the packaged binary serves https with a certificate given to it: $health"

# Signed tokens are built in: the packaged binary mints one.
token=$(STATECAST_JWT_SECRET=package-check-secret-0123 "$root/usr/bin/statecast" token --topics queue) \
    || fail "the packaged binary has no signed tokens (built without --features jwt?)"
case "$token" in
    *.*.*) echo "package: the packaged binary mints signed tokens" ;;
    *) fail "statecast token printed $token" ;;
esac
