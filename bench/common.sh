# Shared by bench/run.sh and bench/garage.sh (sourced, not run): page-cache
# handling and the machine description that heads every results table.

# Page cache: dropped before every timed command when we are allowed to.
if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    DROP=1
    CACHE_NOTE="page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed command"
else
    DROP=0
    CACHE_NOTE="page cache NOT dropped (no permission): timings are warm-cache"
fi
drop_caches() { if [[ $DROP == 1 ]]; then sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; fi; }

# Restore targets on their own journaled ext4 (BENCH_RESTORE_FS=auto|loop|plain).
# Why: ext4 without a journal (the development VM's disk) makes every new inode
# skip, one by one, the inodes freed in the last 60 s (360 s while their
# inode-table block is dirty). A restore of the kernel tree started soon after
# the previous restore tree was deleted took 11.9 s, a minute later 4.0 s, and
# 2.6 s on a journaled ext4: the timing of the deletions, not the tool, decided
# much of the figure, and the fastest tool (its restore follows the previous
# deletion soonest) paid most.
# auto: a loop-mounted 8 GiB ext4 image made for the run (with a journal, as
# mkfs.ext4 makes by default) when we are root and it mounts; else a plain
# directory, said in the report. Sets RESTORE_FS_NOTE and RESTORE_IMG.
mount_restore_fs() {
    local dir=$1 mode=${RESTORE_FS:-auto}
    RESTORE_IMG=""
    local fs
    fs=$(df -T "$(dirname "$dir")" | awk 'NR == 2 { print $2 }')
    RESTORE_FS_NOTE="restore targets in a directory on the work file system ($fs)"
    case $mode in
        auto | loop | plain) ;;
        *) die "BENCH_RESTORE_FS must be auto, loop or plain" ;;
    esac
    mountpoint -q "$dir" && umount "$dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    [[ $mode == plain ]] && return 0
    local img="$dir.img"
    rm -f "$img"
    if [[ $(id -u) -eq 0 ]] && command -v mkfs.ext4 >/dev/null && truncate -s 8G "$img" &&
        mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$img" >/dev/null 2>&1 &&
        mount -o loop "$img" "$dir" 2>/dev/null; then
        RESTORE_IMG=$img
        RESTORE_FS_NOTE="restore targets on a journaled ext4 made for the run (8 GiB loop-mounted image)"
        return 0
    fi
    rm -f "$img"
    [[ $mode == loop ]] && die "cannot make and loop-mount an ext4 image for the restores (needs root and mkfs.ext4)"
    RESTORE_FS_NOTE+="; no journaled ext4 could be loop-mounted, so on a journal-less ext4 restores are slowed by recently deleted inodes"
    return 0
}
# Undo mount_restore_fs (called on exit).
unmount_restore_fs() {
    local dir=$1
    if [[ -n ${RESTORE_IMG:-} ]]; then
        umount "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || true
        rm -f "$RESTORE_IMG"
        RESTORE_IMG=""
    fi
    return 0
}

# key=value lines describing the run and the machine (read by summarize.py).
# Uses QUICK, RUNS, ELAPSED, CACHE_NOTE, LOAD_START and WORK of the caller.
machine_meta() {
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "quick=$QUICK"
    echo "runs=$RUNS"
    echo "elapsed_s=$ELAPSED"
    echo "cache=$CACHE_NOTE"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "cores=$(nproc)"
    echo "load=load average at start $LOAD_START, at end $(cut -d" " -f1-3 /proc/loadavg)"
    echo "memory=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "filesystem=$(df -T "$WORK" | awk 'NR == 2 { print $2 }')"
    echo "restore_fs=${RESTORE_FS_NOTE:-}"
    echo "linux_source=$(dpkg-query -W -f '${Version}' linux-source-6.1 2>/dev/null || echo unknown)"
}

# Dataset 1: the kernel tree (QUICK=1: its fs/ subtree), unpacked once from
# Debian's linux-source-6.1 tarball. Sets DATA, SUBDIR and DS1.
prepare_dataset1() {
    if [[ $QUICK == 1 ]]; then DATA="$WORK/data-quick" SUBDIR=linux-source-6.1/fs; else DATA="$WORK/data" SUBDIR=linux-source-6.1; fi
    DS1="$DATA/$SUBDIR"
    mkdir -p "$DATA"
    if [[ ! -f $DATA/.ds1-complete ]]; then
        [[ -f $TARBALL ]] || die "$TARBALL not found (apt-get install linux-source-6.1)"
        log "dataset 1: unpacking $SUBDIR from $TARBALL"
        rm -rf "$DATA/linux-source-6.1"
        tar -xJf "$TARBALL" -C "$DATA" "$SUBDIR"
        touch "$DATA/.ds1-complete"
    fi
}

# Build bunker when BUILD=1, then print its version line. On failure print why
# (one line, no machine paths) and return 1. Uses ROOT, LOGDIR and BUNKER_BIN.
bunker_version() {
    if [[ $BUILD == 1 ]]; then
        log "building bunker (cargo build --release -p bunker-cli)"
        if ! (cd "$ROOT" && cargo build --release -p bunker-cli) >"$LOGDIR/build-bunker.log" 2>&1; then
            echo "cargo build --release -p bunker-cli failed (see build-bunker.log in the bench logs)"
            return 1
        fi
    fi
    local v
    if ! v=$("$BUNKER_BIN" version 2>/dev/null | head -n1); then
        echo "the bunker binary does not run"
        return 1
    fi
    echo "${v:-(no output from bunker version)}"
}
