#!/usr/bin/env bash
# A real S3 server on 127.0.0.1 for tests and local runs: Ceph radosgw on a one-node
# cluster (one monitor, one memstore OSD, no mgr, cephx off). Data lives in memory and is
# discarded by `stop`.
#
#   scripts/s3_server.sh install   # Debian packages radosgw ceph-mon ceph-osd (~270 MB)
#   scripts/s3_server.sh start     # no-op when already healthy; installs if needed
#   scripts/s3_server.sh status    # exit 0 when healthy
#   scripts/s3_server.sh env       # prints `export AWS_...` lines: eval "$(... env)"
#   scripts/s3_server.sh stop
#   scripts/s3_server.sh gateway-stop    # radosgw only: stop answering, keep the data
#   scripts/s3_server.sh gateway-start   # radosgw only: answer again, same buckets/objects
#
# Settings: UNIEMBED_S3_DIR (state, default /tmp/uniembed-s3), UNIEMBED_S3_PORT (S3 port,
# default 7480; the monitor listens on port+1), UNIEMBED_S3_BACKEND=moto to run moto's
# emulator from .venv instead (for machines where the Debian packages cannot be installed).
set -Eeuo pipefail

DIR="${UNIEMBED_S3_DIR:-/tmp/uniembed-s3}"
PORT="${UNIEMBED_S3_PORT:-7480}"
MON_PORT="$((PORT + 1))"
BACKEND="${UNIEMBED_S3_BACKEND:-radosgw}"
ACCESS_KEY="uniembedtestkey"
SECRET_KEY="uniembedtestsecret0123456789"
REGION="us-east-1"
ENDPOINT="http://127.0.0.1:${PORT}"
[[ "$DIR" == /*/* ]] || { echo "UNIEMBED_S3_DIR must be an absolute path below /: $DIR" >&2; exit 2; }
CONF="$DIR/ceph.conf"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { echo "[s3_server] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
trap 'log "ERROR: \"$BASH_COMMAND\" failed (line $LINENO); logs in $DIR/log"' ERR

healthy() {
    # An anonymous GET / answers with an XML bucket list (radosgw) or a 200 (moto).
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$ENDPOINT/" 2>/dev/null | grep -qE '^(200|403)$'
}

installed() {
    command -v radosgw >/dev/null && command -v ceph-mon >/dev/null &&
        command -v ceph-osd >/dev/null && command -v radosgw-admin >/dev/null &&
        command -v monmaptool >/dev/null && command -v curl >/dev/null
}

cmd_install() {
    if [[ "$BACKEND" == moto ]]; then
        [[ -x "$REPO_ROOT/.venv/bin/moto_server" ]] || die "moto_server missing: pip install 'moto[server]'"
        return 0
    fi
    if installed; then
        log "radosgw already installed"
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "installing the Debian packages needs root"
    local pkgs=(radosgw ceph-mon ceph-osd curl)
    # Refresh the package lists only when apt does not know the packages yet.
    if ! apt-cache show radosgw >/dev/null 2>&1; then
        apt-get update -q -o DPkg::Lock::Timeout=600
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${pkgs[@]}"
    installed || die "packages installed but radosgw/ceph binaries are still missing"
}

write_conf() {
    cat >"$CONF" <<EOF
[global]
fsid = $1
mon host = [v2:127.0.0.1:${MON_PORT}]
mon initial members = a
public network = 127.0.0.0/8
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
# Without cephx there is no session key, so msgr2 "secure" mode cannot be negotiated, and
# daemons such as radosgw ask for it by default: use crc everywhere.
ms mon client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
# A nearly full disk must not stop the monitor of a throwaway test cluster.
mon data avail warn = 1
mon data avail crit = 0
# One OSD: replicas of 1 and few placement groups, or pools cannot be created.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 1
osd pool default pgp num = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
# Commit monitor map changes (pool creation) quickly rather than batching for a second.
paxos propose interval = 0.05
paxos min wait = 0.01
mon max pg per osd = 1000
mon warn on pool no redundancy = false
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
keyring = $DIR/keyring

[mon.a]
mon data = $DIR/mon.a

[osd.0]
osd data = $DIR/osd.0
osd objectstore = memstore
memstore device bytes = 4294967296
osd max object name len = 460
osd max object namespace len = 64

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:${PORT}
rgw data = $DIR/rgw.a
rgw dns name = 127.0.0.1
rgw enable usage log = false
EOF
}

pid_of() { [[ -f "$DIR/run/$1.pid" ]] && cat "$DIR/run/$1.pid" || true; }

ours() {  # ours PID: the process is one of our daemons (a stale pid file may name another)
    local comm
    comm="$(cat "/proc/$1/comm" 2>/dev/null)" || return 1
    [[ "$comm" =~ ^(radosgw|ceph-osd|ceph-mon|moto_server|python.*)$ ]]
}

kill_daemons() {
    # The data is throwaway: ask politely, then do not wait long for a clean shutdown.
    local name pid pids=()
    for name in client.rgw.a osd.0 mon.a moto; do
        pid="$(pid_of "$name")"
        if [[ -n "$pid" ]] && ours "$pid"; then
            kill "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    ((${#pids[@]})) || return 0
    local alive
    for _ in $(seq 20); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || return 0
        sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what not ready after timeout; logs in $DIR/log"
        sleep 0.2
    done
}

start_moto() {
    mkdir -p "$DIR/run" "$DIR/log"
    setsid "$REPO_ROOT/.venv/bin/moto_server" -H 127.0.0.1 -p "$PORT" \
        >"$DIR/log/moto.log" 2>&1 </dev/null 9>&- &
    echo $! >"$DIR/run/moto.pid"
    wait_for 30 "moto_server" healthy
}

start_radosgw() {
    local fsid osd_uuid
    fsid="$(cat /proc/sys/kernel/random/uuid)"
    osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
    mkdir -p "$DIR/run" "$DIR/log" "$DIR/mon.a" "$DIR/osd.0" "$DIR/rgw.a"
    write_conf "$fsid"
    : >"$DIR/keyring"
    local c=(-c "$CONF")

    monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:${MON_PORT}]" \
        "$DIR/monmap" >"$DIR/log/setup.log" 2>&1
    ceph-mon "${c[@]}" --mkfs -i a --monmap "$DIR/monmap" >>"$DIR/log/setup.log" 2>&1
    # Daemons must not inherit the lock descriptor (9), or they would hold the lock forever.
    ceph-mon "${c[@]}" -i a >>"$DIR/log/setup.log" 2>&1 9>&-
    wait_for 30 "ceph-mon" ceph "${c[@]}" --connect-timeout 2 mon stat

    ceph "${c[@]}" osd new "$osd_uuid" 0 >>"$DIR/log/setup.log" 2>&1
    ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/setup.log" 2>&1
    ceph-osd "${c[@]}" -i 0 >>"$DIR/log/setup.log" 2>&1 9>&-
    wait_for 60 "ceph-osd" bash -c "ceph -c '$CONF' osd stat -f json | grep -q '\"num_up_osds\":1'"

    radosgw "${c[@]}" -n client.rgw.a >>"$DIR/log/setup.log" 2>&1 9>&-
    wait_for 90 "radosgw" healthy
    radosgw-admin "${c[@]}" user create --uid=uniembed --display-name=uniembed \
        --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >>"$DIR/log/setup.log" 2>&1
}

cmd_start() {
    mkdir -p "$DIR"
    # Serialise concurrent starts (several test sessions may share one machine).
    exec 9>"$DIR.lock"
    flock 9
    if healthy; then
        log "already running at $ENDPOINT"
        return 0
    fi
    cmd_install
    kill_daemons
    rm -rf "${DIR:?}"/*
    local t0=$SECONDS
    if [[ "$BACKEND" == moto ]]; then start_moto; else start_radosgw; fi
    log "$BACKEND ready at $ENDPOINT in $((SECONDS - t0)) s (state in $DIR)"
}

cmd_stop() {
    [[ -d "$DIR" ]] || return 0
    exec 9>"$DIR.lock"
    flock 9
    kill_daemons
    rm -rf "${DIR:?}"/*
    log "stopped"
}

# An outage of the S3 endpoint (fault tests): only the gateway goes; the monitor and the OSD
# keep the buckets and objects, so the restarted gateway serves what was there before.
cmd_gateway_stop() {
    [[ "$BACKEND" == radosgw ]] || die "gateway-stop needs the radosgw backend"
    local pid
    pid="$(pid_of client.rgw.a)"
    [[ -n "$pid" ]] && ours "$pid" || die "no radosgw of ours is running (state in $DIR)"
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "gateway stopped (data kept)"
}

cmd_gateway_start() {
    [[ "$BACKEND" == radosgw ]] || die "gateway-start needs the radosgw backend"
    [[ -f "$CONF" ]] || die "no server state in $DIR: run start first"
    if healthy; then
        log "gateway already answering at $ENDPOINT"
        return 0
    fi
    radosgw -c "$CONF" -n client.rgw.a >>"$DIR/log/setup.log" 2>&1 9>&-
    wait_for 90 "radosgw" healthy
    log "gateway answering again at $ENDPOINT"
}

cmd_status() {
    if healthy; then echo "running at $ENDPOINT"; else echo "not running"; exit 1; fi
}

cmd_env() {
    # The checksum settings: pyarrow's AWS SDK otherwise sends uploads radosgw rejects (411).
    echo "export AWS_ENDPOINT_URL=$ENDPOINT AWS_ACCESS_KEY_ID=$ACCESS_KEY" \
        "AWS_SECRET_ACCESS_KEY=$SECRET_KEY AWS_REGION=$REGION" \
        "AWS_REQUEST_CHECKSUM_CALCULATION=when_required" \
        "AWS_RESPONSE_CHECKSUM_VALIDATION=when_required"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    gateway-stop) cmd_gateway_stop ;;
    gateway-start) cmd_gateway_start ;;
    *) echo "usage: $0 install|start|stop|status|env|gateway-stop|gateway-start" >&2; exit 2 ;;
esac
