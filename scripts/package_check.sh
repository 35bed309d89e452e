#!/usr/bin/env bash
# Builds the Debian package and checks what it installs, without installing
# it: the files are where the README says, the config is a conffile, systemd
# accepts the unit and rates its exposure 2.0 or less, and the packaged
# binary started on the packaged config answers /healthz.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(bash scripts/package.sh)
root=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$root"' EXIT
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

# The packaged config, as the unit gives it; only the port is ours (0: any
# free one), read back from the log line.
log="$root/statecast.log"
"$root/usr/bin/statecast" --config "$root/etc/statecast/statecast.toml" --listen 127.0.0.1:0 \
    2> "$log" &
pid=$!
addr=""
for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "the packaged binary exited on the packaged config"; }
    sleep 0.1
done
[ -n "$addr" ] || { cat "$log" >&2; fail "no 'listening on' line within 10 s"; }
health=$(curl -fsS "http://$addr/healthz") || fail "/healthz did not answer 200"
case "$health" in
    *'"status":"ok"'*) ;;
    *) fail "/healthz answered $health" ;;
esac
echo "package: the packaged binary on the packaged config answers /healthz: $health"

# Signed tokens are built in: the packaged binary mints one.
token=$(STATECAST_JWT_SECRET=package-check-secret-0123 "$root/usr/bin/statecast" token --topics queue) \
    || fail "the packaged binary has no signed tokens (built without --features jwt?)"
case "$token" in
    *.*.*) echo "package: the packaged binary mints signed tokens" ;;
    *) fail "statecast token printed $token" ;;
esac
