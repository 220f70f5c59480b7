#!/usr/bin/env python3
"""Turn bench/run.sh's raw CSV into the markdown report (stdout).

usage: summarize.py RESULTS.csv META.txt TOOL...

TOOL order is the column order; ratios are bunker/peer for every other tool.
Every cell is "median (min–max)" over the successful runs; failed runs are
counted separately and never enter a median.
"""

import csv
import statistics
import sys

OPS = [
    ("backup_initial", "initial backup"),
    ("backup_unchanged", "unchanged re-backup"),
    ("backup_changed", "re-backup, 1% files changed"),
    ("restore", "full restore"),
    ("check", "check --read-data"),
]
METRICS = [
    ("wall_s", "wall s", 1.0),
    ("cpu_s", "CPU s (user+sys)", 1.0),
    ("maxrss_kib", "peak RSS MiB", 1 / 1024),
]
SIZES = [
    ("backup_initial", "repo size after initial backup, MiB"),
    ("backup_changed", "repo size after all 3 backups, MiB"),
]
MIB = 1024 * 1024


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                meta[key] = value
    return meta


def fmt(x):
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


class Figures:
    """Values per (dataset, tool, op, field), successful runs only."""

    def __init__(self, rows):
        self.values = {}
        self.failures = []
        self.passed = {}
        for r in rows:
            if r["exit_code"] == "0":
                key = (r["dataset"], r["tool"], r["op"])
                self.passed[key] = self.passed.get(key, 0) + 1
            if r["exit_code"] != "0":
                self.failures.append(r)
                continue
            for field in ("wall_s", "cpu_s", "maxrss_kib", "repo_bytes"):
                if r.get(field):
                    key = (r["dataset"], r["tool"], r["op"], field)
                    self.values.setdefault(key, []).append(float(r[field]))

    def get(self, ds, tool, op, field, scale=1.0):
        return [v * scale for v in self.values.get((ds, tool, op, field), [])]

    def failed(self, ds, tool, op):
        return sum(1 for r in self.failures if (r["dataset"], r["tool"], r["op"]) == (ds, tool, op))


def cell(values, failed):
    if not values:
        return f"failed ×{failed}" if failed else "–"
    text = fmt(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt(min(values))}–{fmt(max(values))})"
    if failed:
        text += f" ⚠{failed} failed"
    return text


def ratio(a, b):
    if not a or not b:
        return "–"
    mb = statistics.median(b)
    if mb == 0:
        return "–"
    return f"{statistics.median(a) / mb:.2f}"


def table(fig, ds, tools):
    peers = [t for t in tools if t != "bunker"] if "bunker" in tools else []
    head = ["operation", "figure"] + tools + [f"bunker/{p}" for p in peers]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label, figure, series, fails):
        cells = [cell(series[t], fails[t]) for t in tools]
        ratios = [ratio(series["bunker"], series[p]) for p in peers]
        out.append("| " + " | ".join([label, figure] + cells + ratios) + " |")

    for op, label in OPS:
        for field, figure, scale in METRICS:
            series = {t: fig.get(ds, t, op, field, scale) for t in tools}
            fails = {t: fig.failed(ds, t, op) for t in tools}
            row(label, figure, series, fails)
    for op, figure in SIZES:
        series = {t: fig.get(ds, t, op, "repo_bytes", 1 / MIB) for t in tools}
        fails = {t: fig.failed(ds, t, op) for t in tools}
        row("repository", figure, series, fails)
    checks = []
    for t in tools:
        ok, bad = fig.passed.get((ds, t, "verify"), 0), fig.failed(ds, t, "verify")
        checks.append(f"**FAILED ×{bad}**" if bad else (f"ok ×{ok}" if ok else "–"))
    out.append("| " + " | ".join(["full restore", "restored files match"] + checks + ["" for _ in peers]) + " |")
    return out


def throughput(fig, meta, tools):
    size = float(meta.get("ds2_bytes", "0") or 0)
    if not size:
        return []
    out = ["### Dataset 2 backup throughput against plain `zstd -3 -T0 -c FILE > /dev/null`", ""]
    refs = {}
    for op, label in (("compress_cold", "cold page cache, same I/O as the backups"),
                      ("compress_warm", "file in page cache: compression ceiling")):
        walls = fig.get("2", "zstd", op, "wall_s")
        if walls:
            refs[op] = size / MIB / statistics.median(walls)
            out.append(f"- zstd, {label}: {fmt(refs[op])} MiB/s (median of {len(walls)})")
    # Like for like: the cold initial backup against cold zstd, the warm
    # backup (file already in the page cache) against warm zstd.
    pairs = (("backup_initial", "compress_cold", "initial backup, cold page cache"),
             ("backup_warm", "compress_warm", "backup with the file in page cache"))
    rates = {}
    for t in tools:
        for op, ref, label in pairs:
            walls = fig.get("2", t, op, "wall_s")
            if not walls:
                out.append(f"- {t} {label}: not measured")
                continue
            rate = rates[(t, op)] = size / MIB / statistics.median(walls)
            frac = f", {rate / refs[ref]:.0%} of zstd {ref[len('compress_'):]}" if ref in refs else ""
            out.append(f"- {t} {label}: {fmt(rate)} MiB/s (median of {len(walls)}{frac})")
    fracs = [f"{rates[('bunker', op)] / refs[ref]:.0%} of {ref[len('compress_'):]}-cache zstd ({label})"
             for op, ref, label in pairs if ("bunker", op) in rates and ref in refs]
    if fracs:
        out += ["", f"**bunker's dataset-2 backup throughput: {' and '.join(fracs)}.**"]
    return out + [""]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    meta = load_meta(sys.argv[2])
    tools = sys.argv[3:]
    fig = Figures(rows)
    quick = meta.get("quick") == "1"
    out = [
        "# bunker benchmark" + (" — QUICK MODE (small subset, not representative)" if quick else ""),
        "",
        f"{meta.get('date', '?')}, {meta.get('runs', '?')} run(s) per tool, tools alternated in rotating "
        f"order; total {meta.get('elapsed_s', '?')} s. Cells: median (min–max); "
        "ratios: median bunker / median peer (below 1 means bunker is faster / smaller).",
        "",
        f"- machine: {meta.get('cpu', '?')}, {meta.get('cores', '?')} cores, {meta.get('memory', '?')} RAM, "
        f"{meta.get('os', '?')}, kernel {meta.get('kernel', '?')}, {meta.get('filesystem', '?')} file system",
        f"- {meta.get('cache', '')}; {meta.get('load', '')} (anything else running skews the figures)",
    ]
    if meta.get("restore_fs"):
        out.append(f"- {meta['restore_fs']}")
    out += [
        f"- dataset 1: {meta.get('ds1', '?')} (linux-source-6.1 {meta.get('linux_source', '?')})",
        f"- dataset 2: {meta.get('ds2', '?')}",
        "- compression: zstd level 3 for every tool (restic/bunker `--compression auto`, "
        "rustic `init --set-compression 3`, borg `--compression zstd,3`)",
    ]
    for key in sorted(meta):
        if key.startswith("version_"):
            out.append(f"- {key[len('version_'):]}: `{meta[key]}`")
    for key in sorted(meta):
        if key.startswith("note_"):
            out.append(f"- **{key[len('note_'):]} {meta[key]}**")
    out.append("")
    names = {"1": "Dataset 1: kernel source tree", "2": "Dataset 2: one mixed-content file"}
    for ds in meta.get("datasets", "1 2").split():
        out += [f"## {names.get(ds, 'Dataset ' + ds)}", ""] + table(fig, ds, tools) + [""]
        if ds == "2":
            out += throughput(fig, meta, tools)
    bad = [r for r in fig.failures if r["tool"] != "zstd"]
    if bad:
        out += ["## Failures", ""]
        for r in bad:
            out.append(f"- run {r['run']}, {r['tool']}, dataset {r['dataset']}, {r['op']}: "
                       f"exit {r['exit_code']}")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
