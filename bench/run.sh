#!/usr/bin/env bash
# Benchmark bunker against restic, rustic and borg on the same data, in one run.
# See bench/README.md. Usage: bench/run.sh   (BENCH_QUICK=1 for a few-minute smoke run)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WORK=${BENCH_WORK:-$BENCH_DIR/scratch}
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results}
RUNS=${BENCH_RUNS:-3}
QUICK=${BENCH_QUICK:-0}
TOOLS=${BENCH_TOOLS:-"bunker restic rustic borg"}
DATASETS=${BENCH_DATASETS:-"1 2"}
VERIFY=${BENCH_VERIFY:-sample} # sample | full | off
BUILD=${BENCH_BUILD:-1}
RESTORE_FS=${BENCH_RESTORE_FS:-auto} # auto | loop | plain (see mount_restore_fs)
TARBALL=${BENCH_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
BUNKER_BIN=${BENCH_BUNKER_BIN:-$ROOT/target/release/bunker}
RUSTIC_BIN=${BENCH_RUSTIC_BIN:-$(command -v rustic || true)}
PY="python3 $BENCH_DIR/dataset.py"
MIB=$((1024 * 1024))

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

case $RUNS in '' | *[!0-9]* | 0) die "BENCH_RUNS must be a positive integer" ;; esac
case $VERIFY in sample | full | off) ;; *) die "BENCH_VERIFY must be sample, full or off" ;; esac

# ---------------------------------------------------------------- prerequisites
apt_install() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing Debian package(s): $*"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
    else
        die "missing Debian package(s): $* (run as root or: sudo apt-get install $*)"
    fi
}
[[ -x /usr/bin/time ]] || apt_install time
for pair in python3:python3 xz:xz-utils zstd:zstd restic:restic du:coreutils; do
    command -v "${pair%%:*}" >/dev/null || apt_install "${pair#*:}"
done
[[ -f $TARBALL ]] || apt_install linux-source-6.1
[[ -f $TARBALL ]] || die "$TARBALL not found after installing linux-source-6.1"

mkdir -p "$WORK"/{tmp,logs,repos,restore,cache,state,config} "$RESULTS"
LOGDIR="$WORK/logs"
rm -f "$LOGDIR"/*.log

# Undo a dataset mutation left by an interrupted run, and on every exit.
revert_all() {
    local s
    for s in "$WORK"/state/*.json; do
        [[ -e $s ]] && $PY revert "$s"
    done
    return 0
}
revert_all
trap revert_all EXIT

# shellcheck source=bench/common.sh
source "$BENCH_DIR/common.sh"
trap 'revert_all; unmount_restore_fs "$WORK/restore"' EXIT
log "$CACHE_NOTE"
mount_restore_fs "$WORK/restore"
log "$RESTORE_FS_NOTE"

# ---------------------------------------------------------------- datasets
prepare_dataset1
if [[ $QUICK == 1 ]]; then
    DS2_PARTS=(100 90 10) # MiB of kernel tar, generated CSV, xz bytes
else
    DS2_PARTS=(1024 896 128)
fi
DS2="$DATA/mixed-$((DS2_PARTS[0] + DS2_PARTS[1] + DS2_PARTS[2]))MiB.bin"
if [[ ! -f $DS2 ]]; then
    log "dataset 2: writing $DS2"
    $PY mixed "$DS2" --tarball "$TARBALL" --tar-bytes $((DS2_PARTS[0] * MIB)) \
        --csv-bytes $((DS2_PARTS[1] * MIB)) --xz-bytes $((DS2_PARTS[2] * MIB))
fi
read -r DS1_FILES DS1_BYTES < <($PY stats "$DS1")
read -r DS2_FILES DS2_BYTES < <($PY stats "$DS2")
DS2_SHA=$(sha256sum "$DS2" | cut -c1-16)
log "dataset 1: $DS1 ($DS1_FILES files, $DS1_BYTES bytes)"
log "dataset 2: $DS2 ($DS2_BYTES bytes, sha256 $DS2_SHA...)"

# ---------------------------------------------------------------- tools
declare -A VERSION NOTE
ACTIVE=()
for tool in $TOOLS; do
    case $tool in
        bunker)
            if ! VERSION[bunker]=$(bunker_version); then
                NOTE[bunker]="skipped: ${VERSION[bunker]}"
                continue
            fi
            ;;
        restic) VERSION[restic]=$(restic version | head -n1) ;;
        rustic)
            if [[ -z $RUSTIC_BIN ]] || ! VERSION[rustic]=$("$RUSTIC_BIN" --version 2>/dev/null | head -n1); then
                NOTE[rustic]="skipped: rustic not on PATH (cargo install --locked rustic-rs)"
                continue
            fi
            # How rustic was built, when not with its own release profile.
            VERSION[rustic]+=${BENCH_RUSTIC_BUILD:+ ($BENCH_RUSTIC_BUILD)}
            ;;
        borg)
            if ! VERSION[borg]=$(borg --version 2>/dev/null | head -n1); then
                NOTE[borg]="skipped: borg not installed (apt-get install borgbackup)"
                continue
            fi
            ;;
        *) die "unknown tool $tool (known: bunker restic rustic borg)" ;;
    esac
    ACTIVE+=("$tool")
done
for tool in "${!NOTE[@]}"; do log "$tool: ${NOTE[$tool]}"; done
[[ ${#ACTIVE[@]} -gt 0 ]] || die "no tool available"
VERSION[zstd]=$(zstd --version | head -n1)
log "tools: ${ACTIVE[*]}"

# Passwords, caches and configuration kept inside the work directory.
PASSWORD=bench-password-not-secret
export BUNKER_PASSWORD=$PASSWORD RESTIC_PASSWORD=$PASSWORD RUSTIC_PASSWORD=$PASSWORD BORG_PASSPHRASE=$PASSWORD
export RESTIC_CACHE_DIR="$WORK/cache/restic" BORG_BASE_DIR="$WORK/cache/borg"
export XDG_CONFIG_HOME="$WORK/config" # no user rustic profile is picked up
export XDG_CACHE_HOME="$WORK/cache/xdg" # any default cache of any tool: emptied per scenario
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=YES
unset BUNKER_REPOSITORY BUNKER_PASSWORD_FILE BUNKER_PASSWORD_COMMAND BUNKER_COMPRESSION RESTIC_REPOSITORY \
    RESTIC_PASSWORD_FILE RESTIC_COMPRESSION RUSTIC_REPOSITORY BORG_REPO

# CMD=(argv) for one operation. Compression is zstd level 3 everywhere ("auto").
set_cmd() {
    local tool=$1 op=$2 repo=$3 data=$4 target=$5 n=$6
    case $tool:$op in
        bunker:init) CMD=("$BUNKER_BIN" -r "$repo" --no-progress --compression auto init) ;;
        bunker:backup) CMD=("$BUNKER_BIN" -r "$repo" --no-progress --compression auto backup "$data") ;;
        bunker:restore) CMD=("$BUNKER_BIN" -r "$repo" --no-progress restore latest --target "$target") ;;
        bunker:check) CMD=("$BUNKER_BIN" -r "$repo" --no-progress check --read-data) ;;
        restic:init) CMD=(restic -r "$repo" init) ;;
        restic:backup) CMD=(restic -r "$repo" --compression auto backup "$data") ;;
        restic:restore) CMD=(restic -r "$repo" restore latest --target "$target") ;;
        restic:check) CMD=(restic -r "$repo" check --read-data) ;;
        rustic:init) CMD=("$RUSTIC_BIN" -r "$repo" --no-progress --cache-dir "$WORK/cache/rustic" init --set-compression 3) ;;
        rustic:backup) CMD=("$RUSTIC_BIN" -r "$repo" --no-progress --cache-dir "$WORK/cache/rustic" backup "$data") ;;
        rustic:restore) CMD=("$RUSTIC_BIN" -r "$repo" --no-progress --cache-dir "$WORK/cache/rustic" restore latest "$target") ;;
        rustic:check) CMD=("$RUSTIC_BIN" -r "$repo" --no-progress --cache-dir "$WORK/cache/rustic" check --read-data) ;;
        borg:init) CMD=(borg init --encryption=repokey "$repo") ;;
        borg:backup) CMD=(borg create --compression zstd,3 "$repo::b$n" "$data") ;;
        # borg extracts into the current directory; `exec` keeps the timed process borg itself.
        borg:restore) CMD=(sh -c 'cd "$1" && exec borg extract "$2"' sh "$target" "$repo::b$n") ;;
        borg:check) CMD=(borg check --verify-data "$repo") ;;
        *) die "no command for $tool $op" ;;
    esac
}

CSV="$WORK/tmp/results.csv"
echo "run,tool,dataset,op,wall_s,user_s,sys_s,cpu_s,maxrss_kib,repo_bytes,exit_code" >"$CSV"

# timed RUN TOOL DATASET OP REPO -- argv...: run under GNU time, append a CSV row, return its status.
timed() {
    local run=$1 tool=$2 ds=$3 op=$4 repo=$5
    shift 6
    local tf="$WORK/tmp/time.txt" logf="$LOGDIR/r$run-$tool-ds$ds-$op.log" rc=0 size=""
    rm -f "$tf"
    drop_caches
    /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$logf" 2>&1 || rc=$?
    local wall user sys rss
    wall="" user="" sys="" rss=""
    [[ -s $tf ]] && read -r wall user sys rss < <(tail -n1 "$tf")
    [[ -n $repo && -d $repo ]] && size=$(du -sb "$repo" | cut -f1)
    local cpu
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    echo "$run,$tool,$ds,$op,$wall,$user,$sys,$cpu,$rss,$size,$rc" >>"$CSV"
    if [[ $rc != 0 ]]; then
        log "  $tool ds$ds $op FAILED (exit $rc); last lines of $logf:"
        tail -n 5 "$logf" >&2
    else
        log "  $tool ds$ds $op: ${wall}s wall, ${cpu}s cpu, ${rss} KiB peak RSS${size:+, repo $size bytes}"
    fi
    return "$rc"
}

# One tool, one dataset, one run: the whole scenario in a fresh repository.
scenario() {
    local run=$1 tool=$2 ds=$3 data=$4
    local repo="$WORK/repos/$tool-ds$ds" target="$WORK/restore/$tool-ds$ds" state="$WORK/state/ds$ds.json"
    rm -rf "$repo" "$target" "$WORK/cache/$tool" "$XDG_CACHE_HOME"
    mkdir -p "$target" "$WORK/cache/$tool"
    set_cmd "$tool" init "$repo" "$data" "$target" 0
    timed "$run" "$tool" "$ds" init "$repo" -- "${CMD[@]}" || return 0
    if [[ ! -f $repo/config ]]; then # exit status 0 but no repository: do not time a no-op
        log "  $tool ds$ds init exited 0 but created no repository at $repo; skipping $tool"
        echo "$run,$tool,$ds,init_no_repo,,,,,,,1" >>"$CSV"
        return 0
    fi
    set_cmd "$tool" backup "$repo" "$data" "$target" 1
    timed "$run" "$tool" "$ds" backup_initial "$repo" -- "${CMD[@]}" || return 0
    set_cmd "$tool" backup "$repo" "$data" "$target" 2
    timed "$run" "$tool" "$ds" backup_unchanged "$repo" -- "${CMD[@]}" || return 0
    $PY mutate "$data" "$state" >>"$LOGDIR/r$run-$tool-ds$ds-mutate.log"
    set_cmd "$tool" backup "$repo" "$data" "$target" 3
    local ok=1
    timed "$run" "$tool" "$ds" backup_changed "$repo" -- "${CMD[@]}" || ok=0
    if [[ $ok == 1 ]]; then
        set_cmd "$tool" restore "$repo" "$data" "$target" 3
        timed "$run" "$tool" "$ds" restore "" -- "${CMD[@]}" || ok=0
    fi
    if [[ $ok == 1 && $VERIFY != off ]]; then
        local full=()
        [[ $VERIFY == full ]] && full=(--full)
        if ! $PY verify "$data" "$target" "${full[@]}" >"$LOGDIR/r$run-$tool-ds$ds-verify.log" 2>&1; then
            log "  $tool ds$ds restore VERIFY FAILED:"
            tail -n 5 "$LOGDIR/r$run-$tool-ds$ds-verify.log" >&2
            echo "$run,$tool,$ds,verify,,,,,,,1" >>"$CSV"
        else
            echo "$run,$tool,$ds,verify,,,,,,,0" >>"$CSV"
        fi
    fi
    $PY revert "$state"
    rm -rf "$target"
    if [[ $ok == 1 ]]; then
        set_cmd "$tool" check "$repo" "$data" "$target" 3
        timed "$run" "$tool" "$ds" check "$repo" -- "${CMD[@]}" || true
    fi
    rm -rf "$repo"
    [[ $ds == 2 ]] && warm_backup "$run" "$tool" "$data" "$repo"
    return 0
}

# Dataset 2 once more, into a fresh repository with the file already in the
# page cache: the like-for-like comparison with warm-cache zstd (the cold
# initial backup is compared with cold-cache zstd).
warm_backup() {
    local run=$1 tool=$2 data=$3 repo=$4
    set_cmd "$tool" init "$repo" "$data" "" 0
    timed "$run" "$tool" 2 init_warm "" -- "${CMD[@]}" || return 0
    cat "$data" >/dev/null
    set_cmd "$tool" backup "$repo" "$data" "" 1
    local saved=$DROP
    DROP=0
    timed "$run" "$tool" 2 backup_warm "$repo" -- "${CMD[@]}" || true
    DROP=$saved
    rm -rf "$repo"
}

START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
for ((run = 1; run <= RUNS; run++)); do
    # Rotate the tool order every run so that no tool is always first or last.
    order=()
    for ((i = 0; i < ${#ACTIVE[@]}; i++)); do
        order+=("${ACTIVE[$(((i + run - 1) % ${#ACTIVE[@]}))]}")
    done
    for ds in $DATASETS; do
        case $ds in
            1) data=$DS1 ;;
            2)
                data=$DS2
                # Reference: cold (same I/O as the backups) and then warm (pure compression).
                timed "$run" zstd 2 compress_cold "" -- sh -c 'exec zstd -q -3 -T0 -c "$1" >/dev/null' sh "$DS2" || true
                DROP_SAVED=$DROP DROP=0
                timed "$run" zstd 2 compress_warm "" -- sh -c 'exec zstd -q -3 -T0 -c "$1" >/dev/null' sh "$DS2" || true
                DROP=$DROP_SAVED
                ;;
            *) die "unknown dataset $ds (known: 1 2)" ;;
        esac
        for tool in "${order[@]}"; do
            log "run $run/$RUNS, dataset $ds: $tool"
            scenario "$run" "$tool" "$ds" "$data"
        done
    done
done
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
META="$WORK/tmp/meta.txt"
{
    machine_meta
    echo "ds1=$SUBDIR from linux-source-6.1: $DS1_FILES files, $DS1_BYTES bytes"
    echo "ds1_bytes=$DS1_BYTES"
    echo "ds2=mixed file: ${DS2_PARTS[0]} MiB kernel tar + ${DS2_PARTS[1]} MiB generated CSV + ${DS2_PARTS[2]} MiB xz data, $DS2_BYTES bytes, sha256 $DS2_SHA..."
    echo "ds2_bytes=$DS2_BYTES"
    echo "datasets=$DATASETS"
    for tool in "${!VERSION[@]}"; do echo "version_$tool=${VERSION[$tool]}"; done
    for tool in "${!NOTE[@]}"; do echo "note_$tool=${NOTE[$tool]}"; done
} >"$META"
cp "$CSV" "$RESULTS/latest.csv"
python3 "$BENCH_DIR/summarize.py" "$CSV" "$META" "${ACTIVE[@]}" >"$RESULTS/latest.md"
cat "$RESULTS/latest.md"
log "written: $RESULTS/latest.md and $RESULTS/latest.csv (logs in $LOGDIR)"
