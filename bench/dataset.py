#!/usr/bin/env python3
"""Dataset helpers for bench/run.sh.

Subcommands:
  mixed OUT --tarball XZ --tar-bytes N --csv-bytes N --xz-bytes N
      Write the single "mixed content" file of dataset 2: the first N bytes of the
      uncompressed kernel tarball (source code inside tar headers), then N bytes of
      generated CSV (seeded PRNG, order-like records), then the first N bytes of the
      .tar.xz itself (already-compressed, incompressible data). Byte-for-byte
      reproducible for a given tarball.
  mutate DIR STATE
      Append one line to 1% of the regular files below DIR (at least one file),
      chosen deterministically by the SHA-256 of their relative path. Records the
      original size and times in STATE so that `revert` can undo it.
  revert STATE
      Undo `mutate`: truncate each file to its original size, restore atime/mtime.
  verify SRC TARGET [--full]
      Check a restore: TARGET must contain SRC's absolute path with the same regular
      files and sizes. Contents are compared for a deterministic ~2% sample plus all
      files that differ in size (all files with --full).
  stats PATH
      Print "FILES BYTES" for a file or directory tree (regular files only).
"""

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys

CHUNK = 1 << 20


def _copy_prefix(cmd_or_path, out, limit):
    """Copy the first `limit` bytes of a command's stdout (list) or a file (str)."""
    written = 0
    if isinstance(cmd_or_path, list):
        proc = subprocess.Popen(cmd_or_path, stdout=subprocess.PIPE)
        src = proc.stdout
    else:
        proc = None
        src = open(cmd_or_path, "rb")
    try:
        while written < limit:
            buf = src.read(min(CHUNK, limit - written))
            if not buf:
                break
            out.write(buf)
            written += len(buf)
    finally:
        src.close()
        if proc is not None:
            proc.kill()
            proc.wait()
    if written < limit:
        sys.exit(f"dataset.py: source gave only {written} of {limit} bytes")
    return written


COUNTRIES = ["DE", "FR", "US", "GB", "NL", "SE", "PL", "IT", "ES", "JP", "BR", "IN", "CA"]
STATUSES = ["new", "paid", "shipped", "delivered", "returned", "cancelled"]
WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu "
    "fast slow red green blue box parcel fragile gift express standard priority"
).split()
NAMES = (
    "anna ben carla david emma felix greta hugo ida jonas klara leon mia noah olga paul "
    "rosa sam tina uwe vera walter xenia yusuf zoe"
).split()


def _csv_rows(seed):
    """Yield CSV lines forever. Uses only getrandbits so output is stable across Pythons."""
    rng = random.Random(seed)
    bits = rng.getrandbits
    yield b"order_id,created_at,customer,email,country,sku,quantity,unit_price_cents,status,comment\n"
    order_id = 1_000_000
    ts = 1_672_531_200  # 2023-01-01T00:00:00Z
    while True:
        order_id += 1 + bits(2)
        ts += bits(6)
        name = NAMES[bits(5) % len(NAMES)]
        surname = NAMES[bits(5) % len(NAMES)]
        n_words = 1 + bits(3)
        comment = " ".join(WORDS[bits(6) % len(WORDS)] for _ in range(n_words))
        line = "%d,%d,%s %s,%s.%s%d@example.org,%s,SKU-%05d,%d,%d,%s,\"%s\"\n" % (
            order_id,
            ts,
            name.capitalize(),
            surname.capitalize(),
            name,
            surname,
            bits(10),
            COUNTRIES[bits(4) % len(COUNTRIES)],
            bits(14),
            1 + bits(3),
            99 + bits(16),
            STATUSES[bits(3) % len(STATUSES)],
            comment,
        )
        yield line.encode()


def cmd_mixed(args):
    tmp = args.out + ".part"
    with open(tmp, "wb") as out:
        _copy_prefix(["xz", "-dc", args.tarball], out, args.tar_bytes)
        written = 0
        batch = []
        batch_len = 0
        for line in _csv_rows(20240101):
            batch.append(line)
            batch_len += len(line)
            if batch_len >= CHUNK:
                data = b"".join(batch)[: args.csv_bytes - written]
                out.write(data)
                written += len(data)
                batch, batch_len = [], 0
                if written >= args.csv_bytes:
                    break
        _copy_prefix(args.tarball, out, args.xz_bytes)
    os.replace(tmp, args.out)
    os.utime(args.out, ns=(1_672_531_200 * 10**9, 1_672_531_200 * 10**9))


def _regular_files(root):
    """Sorted relative paths of regular files below root (or [""] for a file)."""
    if os.path.isfile(root):
        return [""]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.append(os.path.relpath(full, root))
    found.sort()
    return found


def _key(rel):
    return hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()


def cmd_mutate(args):
    if os.path.exists(args.state):
        sys.exit(f"dataset.py: {args.state} exists; run `revert` first")
    files = _regular_files(args.dir)
    count = max(1, (len(files) + 99) // 100)
    chosen = sorted(files, key=_key)[:count]
    state = []
    for rel in chosen:
        path = os.path.join(args.dir, rel) if rel else args.dir
        st = os.stat(path)
        state.append({"path": path, "size": st.st_size, "atime_ns": st.st_atime_ns,
                      "mtime_ns": st.st_mtime_ns})
    with open(args.state, "w") as f:
        json.dump(state, f)
    for entry in state:
        with open(entry["path"], "ab") as f:
            f.write(b"# bunker benchmark: appended line\n")
    print(f"modified {len(state)} of {len(files)} files")


def cmd_revert(args):
    if not os.path.exists(args.state):
        return
    with open(args.state) as f:
        state = json.load(f)
    for entry in state:
        os.truncate(entry["path"], entry["size"])
        os.utime(entry["path"], ns=(entry["atime_ns"], entry["mtime_ns"]))
    os.remove(args.state)


def _same_content(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True


def cmd_verify(args):
    src = os.path.abspath(args.src)
    restored = os.path.join(args.target, src.lstrip("/"))
    if not os.path.exists(restored):
        sys.exit(f"verify: {restored} missing in the restore")
    want = _regular_files(src)
    have = set(_regular_files(restored))
    problems = []
    compared = 0
    for rel in want:
        a = os.path.join(src, rel) if rel else src
        b = os.path.join(restored, rel) if rel else restored
        if rel not in have:
            problems.append(f"missing: {rel or src}")
            continue
        if os.path.getsize(a) != os.path.getsize(b):
            problems.append(f"size differs: {rel or src}")
            continue
        if args.full or int(_key(rel)[:8], 16) % 50 == 0:
            compared += 1
            if not _same_content(a, b):
                problems.append(f"content differs: {rel or src}")
    extra = have.difference(want)
    problems.extend(f"unexpected: {rel}" for rel in sorted(extra)[:10])
    if problems:
        for p in problems[:20]:
            print(p, file=sys.stderr)
        sys.exit(f"verify: {len(problems)} problem(s) in {restored}")
    print(f"verify: {len(want)} files ok, {compared} compared byte by byte")


def cmd_stats(args):
    files = _regular_files(args.path)
    total = sum(os.path.getsize(os.path.join(args.path, r) if r else args.path) for r in files)
    print(len(files), total)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mixed")
    m.add_argument("out")
    m.add_argument("--tarball", required=True)
    m.add_argument("--tar-bytes", type=int, required=True)
    m.add_argument("--csv-bytes", type=int, required=True)
    m.add_argument("--xz-bytes", type=int, required=True)
    m.set_defaults(func=cmd_mixed)
    mu = sub.add_parser("mutate")
    mu.add_argument("dir")
    mu.add_argument("state")
    mu.set_defaults(func=cmd_mutate)
    r = sub.add_parser("revert")
    r.add_argument("state")
    r.set_defaults(func=cmd_revert)
    v = sub.add_parser("verify")
    v.add_argument("src")
    v.add_argument("target")
    v.add_argument("--full", action="store_true")
    v.set_defaults(func=cmd_verify)
    s = sub.add_parser("stats")
    s.add_argument("path")
    s.set_defaults(func=cmd_stats)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
