#!/usr/bin/env bash
# Benchmark bunker against restic backing up dataset 1 to the same S3 service: a
# single-node Garage started on loopback for every scenario. See bench/README.md.
# Usage: bench/garage.sh   (BENCH_QUICK=1 for a smoke run on the small subset)
# Writes bench/results/garage-latest.md and garage-latest.csv; bench/run.sh (local
# repositories) is independent of this script.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WORK=${BENCH_WORK:-$BENCH_DIR/scratch}
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results}
RUNS=${BENCH_RUNS:-3}
QUICK=${BENCH_QUICK:-0}
TOOLS=${BENCH_TOOLS:-"bunker restic"}
VERIFY=${BENCH_VERIFY:-sample} # sample | full | off
BUILD=${BENCH_BUILD:-1}
RESTORE_FS=${BENCH_RESTORE_FS:-auto} # auto | loop | plain (see mount_restore_fs)
TARBALL=${BENCH_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
BUNKER_BIN=${BENCH_BUNKER_BIN:-$ROOT/target/release/bunker}
GARAGE_BIN=${BENCH_GARAGE_BIN:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
PY="python3 $BENCH_DIR/dataset.py"
BUCKET=bench
REGION=garage

log() { printf '[bench-garage %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

case $RUNS in '' | *[!0-9]* | 0) die "BENCH_RUNS must be a positive integer" ;; esac
case $VERIFY in sample | full | off) ;; *) die "BENCH_VERIFY must be sample, full or off" ;; esac
[[ -x /usr/bin/time ]] || die "GNU time is missing (apt-get install time)"
for c in python3 xz restic du; do command -v "$c" >/dev/null || die "$c is missing (see bench/README.md)"; done
"$GARAGE_BIN" --help >/dev/null 2>&1 || die "garage not found (cargo install --locked garage, or BENCH_GARAGE_BIN)"

# Separate directories from bench/run.sh, so both can run one after the other safely.
G="$WORK/garage"
mkdir -p "$G"/{tmp,logs,restore,cache,state,config} "$RESULTS"
LOGDIR="$G/logs"
rm -f "$LOGDIR"/*.log

revert_all() {
    local s
    for s in "$G"/state/*.json; do [[ -e $s ]] && $PY revert "$s"; done
    return 0
}

GARAGE_PID=""
stop_garage() {
    if [[ -n $GARAGE_PID ]]; then
        kill "$GARAGE_PID" 2>/dev/null || true
        wait "$GARAGE_PID" 2>/dev/null || true
        GARAGE_PID=""
    fi
}
cleanup() {
    stop_garage
    revert_all
    if declare -F unmount_restore_fs >/dev/null; then unmount_restore_fs "$G/restore"; fi
}
revert_all
trap cleanup EXIT

# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"
mount_restore_fs "$G/restore"
log "$RESTORE_FS_NOTE"

# ---------------------------------------------------------------- dataset 1 (shared with run.sh)
prepare_dataset1
read -r DS1_FILES DS1_BYTES < <($PY stats "$DS1")
log "dataset 1: $DS1 ($DS1_FILES files, $DS1_BYTES bytes)"

# ---------------------------------------------------------------- tools
declare -A VERSION NOTE
ACTIVE=()
for tool in $TOOLS; do
    case $tool in
        bunker) VERSION[bunker]=$(bunker_version) || die "${VERSION[bunker]}" ;;
        restic) VERSION[restic]=$(restic version | head -n1) ;;
        *) die "unknown tool $tool (known: bunker restic)" ;;
    esac
    ACTIVE+=("$tool")
done
VERSION[garage]=$("$GARAGE_BIN" --version 2>/dev/null | head -n1 || echo unknown)

PASSWORD=bench-password-not-secret
export BUNKER_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD
export RESTIC_CACHE_DIR="$G/cache/restic" XDG_CACHE_HOME="$G/cache/xdg" XDG_CONFIG_HOME="$G/config"
unset BUNKER_REPOSITORY BUNKER_PASSWORD_FILE BUNKER_PASSWORD_COMMAND BUNKER_COMPRESSION RESTIC_REPOSITORY \
    RESTIC_PASSWORD_FILE RESTIC_COMPRESSION

# ---------------------------------------------------------------- garage
free_ports() { python3 -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'; }

# start_garage DIR: a fresh single-node cluster with bucket $BUCKET and a key; sets
# S3_PORT, GCONF and the AWS_* variables.
start_garage() {
    local dir=$1 rpc admin id key out
    rm -rf "$dir"
    mkdir -p "$dir/meta" "$dir/data"
    read -r rpc S3_PORT admin < <(free_ports)
    GCONF="$dir/garage.toml"
    cat >"$GCONF" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
EOF
    RUST_LOG=garage=warn "$GARAGE_BIN" -c "$GCONF" server >"$dir/garage.log" 2>&1 &
    GARAGE_PID=$!
    local g=("$GARAGE_BIN" -c "$GCONF")
    for _ in $(seq 1 120); do
        id=$("${g[@]}" node id -q 2>/dev/null || true)
        [[ $id == *@* ]] && break
        sleep 0.25
    done
    [[ $id == *@* ]] || die "garage did not start (see $dir/garage.log)"
    # `node id` can answer from the key file before the RPC port listens.
    for _ in $(seq 1 120); do
        "${g[@]}" layout assign -z dc1 -c 10G "${id%%@*}" >/dev/null 2>&1 && break
        sleep 0.25
    done
    out=$("${g[@]}" layout show 2>/dev/null || true)
    [[ $out == *"${id:0:16}"* ]] || die "garage did not accept its layout (see $dir/garage.log)"
    "${g[@]}" layout apply --version 1 >/dev/null
    for _ in $(seq 1 120); do "${g[@]}" bucket create "$BUCKET" >/dev/null 2>&1 && break; sleep 0.25; done
    out=$("${g[@]}" key create bench-key)
    key=$(awk -F': *' '/Key ID:/ { print $2 }' <<<"$out" | tr -d ' ')
    AWS_SECRET_ACCESS_KEY=$(awk -F': *' '/Secret key:/ { print $2 }' <<<"$out" | tr -d ' ')
    [[ -n $key && -n $AWS_SECRET_ACCESS_KEY ]] || die "garage key create printed no key"
    "${g[@]}" bucket allow --read --write --owner "$BUCKET" --key bench-key >/dev/null
    export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=$REGION
    for _ in $(seq 1 120); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $S3_PORT), 1)" 2>/dev/null && return 0
        sleep 0.25
    done
    die "garage S3 API did not answer on port $S3_PORT"
}

set_cmd() {
    local tool=$1 op=$2 repo=$3 data=$4 target=$5
    case $tool:$op in
        bunker:init) CMD=("$BUNKER_BIN" -r "$repo" --no-progress --compression auto init) ;;
        bunker:backup) CMD=("$BUNKER_BIN" -r "$repo" --no-progress --compression auto backup "$data") ;;
        bunker:restore) CMD=("$BUNKER_BIN" -r "$repo" --no-progress restore latest --target "$target") ;;
        bunker:check) CMD=("$BUNKER_BIN" -r "$repo" --no-progress check --read-data) ;;
        restic:init) CMD=(restic -r "$repo" init) ;;
        restic:backup) CMD=(restic -r "$repo" --compression auto backup "$data") ;;
        restic:restore) CMD=(restic -r "$repo" restore latest --target "$target") ;;
        restic:check) CMD=(restic -r "$repo" check --read-data) ;;
        *) die "no command for $tool $op" ;;
    esac
}

CSV="$G/tmp/results.csv"
echo "run,tool,dataset,op,wall_s,user_s,sys_s,cpu_s,maxrss_kib,repo_bytes,exit_code" >"$CSV"

# timed RUN TOOL OP SIZE_DIR -- argv...: like run.sh; the size is that of Garage's data
# directory (objects stored uncompressed, compression_level = "none").
timed() {
    local run=$1 tool=$2 op=$3 sizedir=$4
    shift 5
    local tf="$G/tmp/time.txt" logf="$LOGDIR/r$run-$tool-$op.log" rc=0 size="" wall="" user="" sys="" rss="" cpu
    rm -f "$tf"
    drop_caches
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$logf" 2>&1 || rc=$?
    [[ -s $tf ]] && read -r wall user sys rss < <(tail -n1 "$tf")
    [[ -n $sizedir && -d $sizedir ]] && size=$(du -sb "$sizedir" | cut -f1)
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    echo "$run,$tool,1,$op,$wall,$user,$sys,$cpu,$rss,$size,$rc" >>"$CSV"
    if [[ $rc != 0 ]]; then
        log "  $tool $op FAILED (exit $rc); last lines of $logf:"
        tail -n 5 "$logf" >&2
    else
        log "  $tool $op: ${wall}s wall, ${cpu}s cpu, ${rss} KiB peak RSS${size:+, bucket data $size bytes}"
    fi
    return "$rc"
}

scenario() {
    local run=$1 tool=$2 gdir="$G/server" target="$G/restore/$tool" ok=1
    start_garage "$gdir"
    local repo="s3:http://127.0.0.1:$S3_PORT/$BUCKET/$tool"
    rm -rf "$target" "$G/cache/restic" "$XDG_CACHE_HOME"
    mkdir -p "$target"
    set_cmd "$tool" init "$repo" "$DS1" "$target"
    if timed "$run" "$tool" init "" -- "${CMD[@]}"; then
        set_cmd "$tool" backup "$repo" "$DS1" "$target"
        timed "$run" "$tool" backup_initial "$gdir/data" -- "${CMD[@]}" || ok=0
        [[ $ok == 1 ]] && { timed "$run" "$tool" backup_unchanged "$gdir/data" -- "${CMD[@]}" || ok=0; }
        if [[ $ok == 1 ]]; then
            set_cmd "$tool" restore "$repo" "$DS1" "$target"
            timed "$run" "$tool" restore "" -- "${CMD[@]}" || ok=0
        fi
        if [[ $ok == 1 && $VERIFY != off ]]; then
            local full=()
            [[ $VERIFY == full ]] && full=(--full)
            if $PY verify "$DS1" "$target" "${full[@]}" >"$LOGDIR/r$run-$tool-verify.log" 2>&1; then
                echo "$run,$tool,1,verify,,,,,,,0" >>"$CSV"
            else
                log "  $tool restore VERIFY FAILED (see $LOGDIR/r$run-$tool-verify.log)"
                echo "$run,$tool,1,verify,,,,,,,1" >>"$CSV"
            fi
        fi
        rm -rf "$target"
        if [[ $ok == 1 ]]; then
            set_cmd "$tool" check "$repo" "$DS1" "$target"
            timed "$run" "$tool" check "" -- "${CMD[@]}" || true
        fi
    fi
    stop_garage
    cp "$gdir/garage.log" "$LOGDIR/r$run-$tool-garage.log" 2>/dev/null || true
    rm -rf "$gdir"
}

START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
for ((run = 1; run <= RUNS; run++)); do
    for ((i = 0; i < ${#ACTIVE[@]}; i++)); do
        tool=${ACTIVE[$(((i + run - 1) % ${#ACTIVE[@]}))]}
        log "run $run/$RUNS: $tool"
        scenario "$run" "$tool"
    done
done
ELAPSED=$(($(date +%s) - START))

META="$G/tmp/meta.txt"
{
    machine_meta
    echo "ds1=$SUBDIR from linux-source-6.1: $DS1_FILES files, $DS1_BYTES bytes"
    echo "ds2=not used (Garage benchmark: dataset 1 only)"
    echo "datasets=1"
    for tool in "${!VERSION[@]}"; do echo "version_$tool=${VERSION[$tool]}"; done
    echo "note_storage=repositories: s3:http://127.0.0.1:PORT/$BUCKET/TOOL on a fresh single-node Garage per scenario (loopback, replication 1, compression_level none, same disk); repository size = du of Garage's data directory; no '1% changed' step"
} >"$META"
cp "$CSV" "$RESULTS/garage-latest.csv"
python3 "$BENCH_DIR/summarize.py" "$CSV" "$META" "${ACTIVE[@]}" |
    sed '1s/^# bunker benchmark/# bunker benchmark on Garage (S3)/' >"$RESULTS/garage-latest.md"
cat "$RESULTS/garage-latest.md"
log "written: $RESULTS/garage-latest.md and garage-latest.csv (logs in $LOGDIR)"
