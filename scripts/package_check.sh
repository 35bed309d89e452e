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
         usr/share/doc/statecast/LICENSE-APACHE usr/lib/systemd/system/statecast.service \
         usr/share/doc/statecast/SECURITY.md usr/share/doc/statecast/docs/protocol.md \
         usr/share/doc/statecast/docs/options.md usr/share/doc/statecast/docs/behaviour.md \
         usr/share/doc/statecast/docs/deployment.md; do
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

# The size a small host's package is held to (docs/lab/footprint.md): TLS and
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

# ==== /readyz 200 while a provider is degraded ====
# A load balancer reads /readyz: a polled URL that is down (port 9, which
# nothing listens on) makes /healthz 503 "degraded", yet the node still
# serves its clients, so /readyz stays 200 and the node stays in the pool.
degraded_log="$root/statecast-degraded.log"
"$root/usr/bin/statecast" --config "$root/etc/statecast/statecast.toml" --listen 127.0.0.1:0 \
    --preset none --topic x --poll x=http://127.0.0.1:9/ 2> "$degraded_log" &
degraded_pid=$!
eval "set -- $(trap -p EXIT)"
trap "kill \"\${degraded_pid:-}\" 2>/dev/null || true; $3" EXIT
degraded_addr=$(listening "$degraded_log" "$degraded_pid")
health=""
for _ in $(seq 100); do
    health=$(curl -sS -w ' %{http_code}' "http://$degraded_addr/healthz" 2>/dev/null || true)
    case "$health" in *'"status":"degraded"'*' 503') break ;; esac
    sleep 0.1
done
case "$health" in
    *'"status":"degraded"'*' 503') ;;
    *) cat "$degraded_log" >&2; fail "/healthz with a dead --poll URL answered ${health:-nothing}, not 503 degraded" ;;
esac
ready=$(curl -sS -w ' %{http_code}' "http://$degraded_addr/readyz" 2>/dev/null || true)
[ "$ready" = '{"status":"ready"} 200' ] \
    || { cat "$degraded_log" >&2; fail "/readyz while a provider is degraded answered ${ready:-nothing}, not 200"; }
kill "$degraded_pid" 2>/dev/null || true
wait "$degraded_pid" 2>/dev/null || true
degraded_pid=""
echo "package: /readyz 200 while a provider is degraded (/healthz 503)"
# ==== (end of /readyz while degraded) ====

# Signed tokens are built in: the packaged binary mints one.
token=$(STATECAST_JWT_SECRET=package-check-secret-0123456789ab "$root/usr/bin/statecast" token --topics queue) \
    || fail "the packaged binary has no signed tokens (built without --features jwt?)"
case "$token" in
    *.*.*) echo "package: the packaged binary mints signed tokens" ;;
    *) fail "statecast token printed $token" ;;
esac

# ==== The unit and the README's examples (kept apart from the blocks above) ====
# What the unit lets statecast do, read from the unit and its example
# drop-ins, then shown by running the packaged binary as the unit runs it.
dropins="$root/usr/share/doc/statecast/examples"
for f in usr/share/doc/statecast/CHANGELOG.md usr/share/doc/statecast/examples/jit.conf \
         usr/share/doc/statecast/examples/agents.conf; do
    test -f "$root/$f" || fail "$f is not in $deb"
done
# The last value the unit and the drop-ins after it give a property, as
# systemd reads them (a later assignment replaces an earlier one).
property() {
    local key=$1; shift
    sed -n "s/^$key=//p" "$@" | tail -1
}
# No state directory: systemd would chown it to the service's user at each
# start, making what is kept there writable by the network-facing process.
[ -z "$(property StateDirectory "$unit")" ] || fail "the unit has a StateDirectory=, which its user would own"
workdir=/usr/local/lib/statecast
[ "$(property WorkingDirectory "$unit")" = "-$workdir" ] \
    || fail "the unit does not run in $workdir (root's, missing allowed)"
[ "$(property ProtectHome "$unit")" = yes ] || fail "the unit no longer hides home directories"
[ "$(property MemoryDenyWriteExecute "$unit")" = yes ] || fail "the unit allows writable code"
[ "$(property MemoryDenyWriteExecute "$unit" "$dropins/jit.conf")" = no ] \
    || fail "jit.conf does not lift MemoryDenyWriteExecute"
[ "$(property BindReadOnlyPaths "$unit" "$dropins/agents.conf")" = /home/alice/adw/agents ] \
    || fail "agents.conf does not bind the agents' own directory at its own path"
for conf in jit.conf agents.conf; do
    mkdir -p "$root/with-$conf"
    cat "$root/statecast.service" "$dropins/$conf" > "$root/with-$conf/statecast.service"
    systemd-analyze verify "$root/with-$conf/statecast.service" \
        || fail "systemd-analyze verify refuses the unit with $conf"
    sed -n 's/^\([A-Za-z]*=.*\)/\1/p' "$dropins/$conf" | while IFS= read -r line; do
        grep -qF "$line" docs/deployment.md || fail "docs/deployment.md does not show $conf's $line"
    done
done
# systemd's own reading of the unit, and of it with each drop-in.
security() { systemd-analyze security --offline=true "$1" 2>&1; }
shipped=$(security "$root/statecast.service")
with_jit=$(security "$root/with-jit.conf/statecast.service")
with_agents=$(security "$root/with-agents.conf/statecast.service")
grep -q "Service cannot create writable executable memory" <<< "$shipped" \
    || fail "systemd does not read the unit as forbidding writable code"
grep -q "Service has no access to home directories" <<< "$shipped" \
    || fail "systemd does not read the unit as hiding home directories"
grep -q "Service may create writable executable memory" <<< "$with_jit" \
    || fail "systemd does not read jit.conf as allowing writable code"
grep -q "Service has access to fake empty home directories" <<< "$with_agents" \
    || fail "systemd does not read agents.conf as ProtectHome=tmpfs"
for conf in jit agents; do
    var="with_$conf"
    level=$(sed -n 's/.*Overall exposure level for statecast.service: \([0-9.]*\).*/\1/p' <<< "${!var}")
    awk -v e="$level" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure with $conf.conf is $level, over 2.0"
    echo "package: with $conf.conf, systemd-analyze security rates the unit's exposure $level"
done
echo "package: the unit owns no directory and runs in $workdir; jit.conf and agents.conf verify"

# A configuration error stops the unit: a 15-character token exits with a
# status the unit names in RestartPreventExitStatus=, so it is not
# restarted every second.
code=0
STATECAST_PUBLISH_TOKEN=fifteen-chars-x timeout 10 "$root/usr/bin/statecast" \
    --config "$root/etc/statecast/statecast.toml" --listen 127.0.0.1:0 2> "$root/short.log" || code=$?
grep -q "too short" "$root/short.log" || { cat "$root/short.log" >&2; fail "a short token is not refused as too short"; }
prevent=$(property RestartPreventExitStatus "$unit")
case " $prevent " in
    *" $code "*) ;;
    *) fail "a short token exits $code, which the unit restarts on (RestartPreventExitStatus=$prevent)" ;;
esac
echo "package: a 15-character token exits $code, which the unit does not restart on"

# The packaged binary as the unit runs it, without systemd (this check
# runs in containers that have none): a mount namespace (unshare) where
# home directories are empty tmpfs (ProtectHome=), the unit's
# BindReadOnlyPaths= are bound on top (each source taken from
# $root/binds, since this machine has no /home/alice), and the unit's
# WorkingDirectory= is a root-owned directory (made here, on a tmpfs over
# its parent, the real one left alone); a user that is not root
# (DynamicUser=) and owns nothing; and, for MemoryDenyWriteExecute=yes,
# the kernel's PR_SET_MDWE, which forbids writable executable memory to
# the process and every child, as systemd's own filter does. Needs root,
# as the package checks do.
[ "$(id -u)" = 0 ] || fail "running the binary as the unit does needs root (unshare, setpriv)"
mdwe_python=/usr/bin/python3
[ -x "$mdwe_python" ] || fail "$mdwe_python is missing (it sets PR_SET_MDWE for the sandbox)"
chmod 755 "$root"
sandbox_uid=61999
# The sandboxed server is stopped on the way out too, before what the
# script's first trap does.
eval "set -- $(trap -p EXIT)"
trap "kill \"\${sandbox_pid:-}\" 2>/dev/null || true; $3" EXIT
# sandboxed LOG UNIT... -- ARGS: starts the packaged binary with ARGS under
# the properties the unit files give, its log in LOG; sets $sandbox_pid
# and $addr.
sandboxed() {
    local log=$1; shift
    local units=()
    while [ "$1" != -- ]; do units+=("$1"); shift; done
    shift
    local cwd; cwd=$(property WorkingDirectory "${units[@]}")
    local binds; binds=$(property BindReadOnlyPaths "${units[@]}")
    local mdwe; mdwe=$(property MemoryDenyWriteExecute "${units[@]}")
    [ "$(property DynamicUser "${units[@]}")" = yes ] || fail "the unit has a fixed user"
    [ -z "$(property StateDirectory "${units[@]}")" ] || fail "the unit gives its user a directory"
    SANDBOX_CWD="${cwd#-}" SANDBOX_BINDS="$binds" SANDBOX_MDWE="$mdwe" \
    SANDBOX_WORKDIR="$root/workdir" SANDBOX_BINDS_FROM="$root/binds" \
    SANDBOX_UID="$sandbox_uid" SANDBOX_PY="$mdwe_python" \
    unshare --mount --propagation private bash -c '
        set -e
        for home in /home /root /run/user; do
            [ ! -d "$home" ] || mount -t tmpfs -o mode=0755 tmpfs "$home"
        done
        for bind in $SANDBOX_BINDS; do
            mkdir -p "${bind#*:}"
            mount --bind "$SANDBOX_BINDS_FROM${bind%%:*}" "${bind#*:}"
            mount -o remount,bind,ro "${bind#*:}"
        done
        mount -t tmpfs -o mode=0755 tmpfs "$(dirname "$SANDBOX_CWD")"
        mkdir "$SANDBOX_CWD"
        mount --bind "$SANDBOX_WORKDIR" "$SANDBOX_CWD"
        cd "$SANDBOX_CWD"
        mdwe=0
        [ "$SANDBOX_MDWE" = yes ] && mdwe=1
        exec setpriv --reuid="$SANDBOX_UID" --regid="$SANDBOX_UID" --clear-groups \
            "$SANDBOX_PY" -c "
import ctypes, os, sys
# PR_SET_MDWE (65), PR_MDWE_REFUSE_EXEC_GAIN (1)
if int(sys.argv[1]) and ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(\"PR_SET_MDWE failed: the kernel is older than 6.3\")
os.execv(sys.argv[2], sys.argv[2:])" "$mdwe" "$@"
    ' sandboxed "$root/usr/bin/statecast" --listen 127.0.0.1:0 "$@" 2> "$log" &
    sandbox_pid=$!
    addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$log" | head -1)
        [ -n "$addr" ] && return
        kill -0 "$sandbox_pid" 2>/dev/null || { cat "$log" >&2; fail "the sandboxed binary exited"; }
        sleep 0.1
    done
    cat "$log" >&2
    fail "the sandboxed binary did not say where it listens within 10 s"
}
# get_state PATH: the body of a GET on the sandboxed server, whatever its
# status (/healthz is 503 while a provider fails), or nothing.
get_state() { curl -sS "http://$addr$1" 2>/dev/null || true; }
# wait_for WHAT PATH NEEDLE: until GET PATH holds NEEDLE, within 10 s.
wait_for() {
    local body=""
    for _ in $(seq 100); do
        body=$(get_state "$2")
        case "$body" in *"$3"*) return 0 ;; esac
        sleep 0.1
    done
    fail "$1: GET $2 answered ${body:-nothing}"
}
stop_sandboxed() {
    kill "$sandbox_pid" 2>/dev/null || true
    wait "$sandbox_pid" 2>/dev/null || true
    sandbox_pid=""
}

# The working directory as root makes it, with a tool that says where it
# runs and whether it may write there; and an agent's file in the
# directory agents.conf binds, as the agents (root here) write it.
mkdir -p "$root/workdir/tools"
cat > "$root/workdir/tools/where.sh" <<'EOF'
writable=false
touch ./probe 2>/dev/null && writable=true
printf '{"cwd":"%s","writable":%s}' "$(pwd)" "$writable"
EOF
agents=/home/alice/adw/agents
mkdir -p "$root/binds$agents/a1b2c3d4"
echo '{"adw_id":"a1b2c3d4","issue_number":"142","branch_name":"feat-142"}' \
    > "$root/binds$agents/a1b2c3d4/adw_state.json"
sandboxed "$root/sandbox.log" "$unit" "$dropins/agents.conf" -- \
    --config "$root/etc/statecast/statecast.toml" \
    --agents-dir "$agents" --topic where --exec 'where=sh tools/where.sh@1h'
wait_for "the agents directory agents.conf binds" /api/v1/state/adw-state/a1b2c3d4 '"feat-142"'
echo "package: under the unit's sandbox with agents.conf, --agents-dir $agents is read (adw-state/a1b2c3d4)"
wait_for "the --exec tool's directory" /api/v1/state/where "{\"cwd\":\"$workdir\",\"writable\":false}"
echo "package: under the unit's sandbox, --exec runs tools/where.sh in $workdir, which it cannot write"
stop_sandboxed

# The sandbox covers the working directory's parent: a node kept there
# would be hidden from it.
node_path=$(readlink -f "$(command -v node || echo /nonexistent)")
if command -v node >/dev/null && [[ "$node_path" != "$(dirname "$workdir")"/* ]]; then
    jit='jit=node -e "console.log(JSON.stringify({jit:true}))"@1h'
    sandboxed "$root/sandbox-mdwe.log" "$unit" -- --config "$root/etc/statecast/statecast.toml" \
        --topic jit --exec "$jit"
    wait_for "node without jit.conf" /healthz '"exec jit":{"ok":false'
    case "$(get_state /api/v1/state/jit)" in
        *'"jit":true'*) fail "node published under MemoryDenyWriteExecute=yes" ;;
    esac
    why=$(get_state /healthz | sed -n 's/.*"exec jit":{\([^}]*\)}.*/\1/p')
    echo "package: under the unit as shipped, a node --exec fails (MemoryDenyWriteExecute=yes): $why"
    stop_sandboxed
    sandboxed "$root/sandbox-jit.log" "$unit" "$dropins/jit.conf" -- \
        --config "$root/etc/statecast/statecast.toml" --topic jit --exec "$jit"
    wait_for "node with jit.conf" /api/v1/state/jit '"jit":true'
    echo "package: with jit.conf, a node --exec runs and publishes"
    stop_sandboxed
else
    echo "package: node is not installed (or is under $(dirname "$workdir")): the JIT drop-in was verified, not run"
fi
# ==== (end of the unit and the README's examples) ====
