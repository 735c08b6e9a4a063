#!/usr/bin/env python3
"""Side-by-side run: Distri's Raft WAL (segment code) vs TiKV's raft-engine, same disk, same load.

Issue 10 asks to persist Raft entries and hard state "either with our segment code (CRC32C,
group commit, torn-tail handling) or with TiKV's raft-engine crate: choose by measurement".
This runs both programs, which it does not build:

  segment      bench/wal_bench.cc: raft_wal records (RaftLog's HandleReady encoding) in a
               LocalLog, group commit on its writer thread, fdatasync per group.
  raft-engine  bench/raft_engine_bench (a cargo crate, raft-engine 0.4.2 with its default
               Config): one LogBatch per Ready, write(sync = true) from W writer threads.
  raft-engine+writer  the same engine as RaftLog would have to drive it (its loop thread must
               not block on an fsync): one thread keeps W Readies in flight and hands them to
               one writer thread, which merges what is queued into one LogBatch per write.
  segment+prealloc  an experiment, not the server's code: wal_bench --preallocate 1, segment
               files fallocated 4 MiB ahead of the writes as raft-engine does with its files.
               (--no-writer, --no-prealloc leave the variants out.)

What it measures
  1. Appends: Readies of B entries (100-byte incompressible data, 16-byte context, term,
     index) plus a hard state, each durable before it counts, with W in flight (segment: W
     Readies outstanding on one loop thread, as RaftLog pipelines them; raft-engine: W writer
     threads, one Raft group each, meeting in its write group; raft-engine+writer: W
     Readies outstanding, merged by its writer thread). Entries/s, batches/s, p50/p99
     of a batch from encoding to durable, and disk bytes per entry (apparent size and
     allocated blocks of the directory, over the entries written).
  2. Recovery: a directory of --recover-entries entries (records of --recover-batch) opened
     from scratch, --repeat times, page cache warm (it was just written; dropping caches on a
     shared machine is not ours to do). segment: LocalLog::Open replaying every record into
     RaftDurableState (entries in memory, as a restarting node holds them); raft-engine:
     Engine::open (memtables of entry locations; entries stay on disk).

Every case runs --repeat times, the engines' order rotating from round to round; the report
gives medians with the [min-max] spread. Each run gets a fresh directory under --dir-base
(default: a temp dir in /tmp, which is the same ext4 filesystem as /work on this machine).
The programs run under `nice` (a shared machine) unless --no-nice.

Usage
  bench/wal_compare.py [--segment build/release/bench/wal_bench]
                       [--raft-engine build/raft_engine_bench/release/raft_engine_bench]
                       [--batch 1,16,64,256] [--writers 1,8] [--seconds 2] [--repeat 3]
                       [--recover-entries 300000] [--recover-batch 64] [--dir-base DIR]
                       [--no-writer] [--no-prealloc] [--markdown out.md] [--json out.json]

Build first:
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISTRI_TESTS=OFF \\
        -DDISTRI_BENCH=ON && ninja -C build/release wal_bench
  CARGO_TARGET_DIR=build/raft_engine_bench cargo build --locked --release \\
        --manifest-path bench/raft_engine_bench/Cargo.toml
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Owned, cpu_model, loadavg

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("segment", "raft-engine")


def log(msg):
    print(f"[wal_compare] {msg}", file=sys.stderr, flush=True)


def dir_bytes(path):
    """(apparent bytes, allocated bytes) of every file under path, as du -sb / du -s."""
    apparent = allocated = 0
    for root, _, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


class Runner:
    def __init__(self, args, base):
        self.args = args
        self.base = base
        self.bins = {"segment": args.segment, "raft-engine": args.raft_engine,
                     "raft-engine+writer": args.raft_engine, "segment+prealloc": args.segment}
        self.count = 0

    def run(self, engine, mode, dirpath, timeout, **flags):
        argv = ([] if self.args.no_nice else ["nice", "-n", "10"]) + [self.bins[engine], mode,
                                                                      "--dir", str(dirpath)]
        for k, v in flags.items():
            argv += [f"--{k}", str(v)]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise SystemExit(f"{' '.join(argv)} printed no result: {p.stdout!r} {p.stderr!r}")
        return json.loads(lines[-1])

    def fresh_dir(self, engine):
        self.count += 1
        return self.base / f"{engine}-{self.count}"

    def append(self, engine, batch, writers):
        d = self.fresh_dir(engine)
        extra = {"segment+prealloc": {"preallocate": 1},
                 "raft-engine+writer": {"writer-thread": 1}}.get(engine, {})
        r = self.run(engine, "append", d, self.args.seconds + 120, batch=batch,
                     concurrency=writers, seconds=self.args.seconds, **extra)
        apparent, allocated = dir_bytes(d)
        shutil.rmtree(d, ignore_errors=True)
        r["entries_per_sec"] = r["entries"] / r["seconds"]
        r["batches_per_sec"] = r["batches"] / r["seconds"]
        r["apparent_per_entry"] = apparent / max(1, r["entries"])
        r["allocated_per_entry"] = allocated / max(1, r["entries"])
        return r


PROBE_SYNCS = 200
PROBE_WRITE = 8192


def fsync_probe(base, mode):
    """p50 and p99 (us) of pwrite(8 KiB) + fdatasync, PROBE_SYNCS times, into a file that
    grows by each write (append: what the segment code does), whose space posix_fallocate
    reserved first (raft-engine preallocates its files), or whose blocks were written and
    synced before (overwrite: raft-engine's recycled files). Tags each round with the disk's
    mood of that moment, and shows what preallocation alone would change."""
    path = base / f"probe-{mode}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if mode == "fallocate":
            os.posix_fallocate(fd, 0, PROBE_SYNCS * PROBE_WRITE)
        elif mode == "overwrite":
            os.pwrite(fd, bytes(PROBE_SYNCS * PROBE_WRITE), 0)
            os.fsync(fd)
        buf = os.urandom(PROBE_WRITE)
        lat = []
        for k in range(PROBE_SYNCS):
            t = time.perf_counter()
            os.pwrite(fd, buf, k * PROBE_WRITE)
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t) * 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    return {"mode": mode, "p50_us": lat[len(lat) // 2], "p99_us": lat[int(len(lat) * 0.99)]}


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def spread(rs, key, fmt="{:,.0f}"):
    vals = [r[key] for r in rs]
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} [{fmt.format(min(vals))}–{fmt.format(max(vals))}]"


def render(appends, recovers, fills, probes, args, load_before, load_after, versions):
    engines = args.engines
    md = []
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    md.append(f"### Segment code vs raft-engine — {when}")
    md.append("")
    md.append(f"Machine: {cpu_model()}, {os.cpu_count()} vCPUs shared with other work (load "
              f"average {load_before} before, {load_after} after), Linux "
              f"{platform.release()}; directories under `{args.dir_base_label}` "
              f"({args.fs_label}). {versions}. Each program under "
              f"{'no nice' if args.no_nice else '`nice -n 10`'}; {args.seconds} s per run; "
              f"median [min–max] of {args.repeat} round(s), the engines' order rotating "
              f"from round to round.")
    md.append("")
    md.append("Appends (every batch durable before it counts; entries of 100 bytes + 16-byte "
              "context). The ÷ columns divide each round's entries/s by that of the engine "
              "named, in the same round (runs back to back share the disk's mood of the "
              "moment, so these ratios are steadier than the absolute figures):")
    md.append("")
    refs = [e for e in ("raft-engine", "raft-engine+writer") if e in engines]
    md.append("| B | in flight | engine | entries/s | batches/s | p50 / p99 ms | "
              + " | ".join(f"÷ {r}, per round" for r in refs) + " |")
    md.append("|---:|---:|---|---:|---:|---:|" + "---:|" * len(refs))
    for b in args.batch:
        for w in args.writers:
            for eng in engines:
                rs = appends[(eng, b, w)]
                cells = []
                for ref in refs:
                    if eng.startswith("raft-engine"):
                        cells.append("")
                        continue
                    ratios = [x["entries_per_sec"] / y["entries_per_sec"]
                              for x, y in zip(rs, appends[(ref, b, w)])]
                    cells.append(spread([{"r": r} for r in ratios], "r", "{:.2f}"))
                md.append(f"| {b} | {w} | {eng} | {spread(rs, 'entries_per_sec')} "
                          f"| {med(rs, 'batches_per_sec'):,.0f} | {med(rs, 'p50_us') / 1000:.2f}"
                          f" / {med(rs, 'p99_us') / 1000:.2f} | " + " | ".join(cells) + " |")
    md.append("")
    md.append("Per round, entries/s in thousands (" + " / ".join(engines) + "), beside that "
              "round's fsync probe (p50 of pwrite 8 KiB + fdatasync, us: appending / into "
              "fallocated space / overwriting written blocks):")
    md.append("")
    md.append("| round | fsync probe | " + " | ".join(
        f"B={b} W={w}" for b in args.batch for w in args.writers) + " |")
    md.append("|---:|---:|" + "---:|" * (len(args.batch) * len(args.writers)))
    for rep, probe in enumerate(probes):
        cells = [" / ".join(f"{appends[(eng, b, w)][rep]['entries_per_sec'] / 1000:,.0f}"
                            for eng in engines)
                 for b in args.batch for w in args.writers]
        md.append(f"| {rep + 1} | {probe['append']['p50_us']:.0f} / "
                  f"{probe['fallocate']['p50_us']:.0f} / {probe['overwrite']['p50_us']:.0f} | "
                  + " | ".join(cells) + " |")
    md.append("")
    md.append("Disk bytes per entry after the append runs (apparent size / allocated blocks "
              "of the directory, divided by the entries written; median over runs; "
              "segment+prealloc writes the same bytes as segment plus an unused preallocated "
              "tail, so it is left out):")
    md.append("")
    md.append("| B | in flight | " + " | ".join(ENGINES) + " |")
    md.append("|---:|---:|" + "---:|" * len(ENGINES))
    for b in args.batch:
        for w in args.writers:
            md.append(f"| {b} | {w} | " + " | ".join(
                f"{med(appends[(eng, b, w)], 'apparent_per_entry'):.1f} / "
                f"{med(appends[(eng, b, w)], 'allocated_per_entry'):.1f}" for eng in ENGINES)
                + " |")
    md.append("")
    if recovers:
        md.append(f"Recovery: open from scratch a directory of {args.recover_entries:,} entries "
                  f"written in batches of {args.recover_batch} (page cache warm):")
        md.append("")
        md.append("| engine | open + replay, ms | entries found | directory bytes per entry "
                  "(apparent / allocated) |")
        md.append("|---|---:|---:|---:|")
        for eng in ENGINES:
            rs = recovers[eng]
            for r in rs:
                r["ms"] = r["seconds"] * 1000
            f = fills[eng]
            md.append(f"| {eng} | {spread(rs, 'ms', '{:,.0f}')} | {rs[0]['entries']:,} | "
                      f"{f['apparent'] / args.recover_entries:.1f} / "
                      f"{f['allocated'] / args.recover_entries:.1f} |")
        md.append("")
    return "\n".join(md)


def fs_type(path):
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True).stdout
        fields = out.splitlines()[1].split()
        return f"{fields[1]} on {fields[0]}"
    except Exception:
        return "filesystem unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segment", default=str(REPO / "build/release/bench/wal_bench"))
    ap.add_argument("--raft-engine", dest="raft_engine",
                    default=str(REPO / "build/raft_engine_bench/release/raft_engine_bench"))
    ap.add_argument("--batch", default="1,16,64,256", help="entries per Ready, comma-separated")
    ap.add_argument("--writers", default="1,8", help="Readies in flight, comma-separated")
    ap.add_argument("--seconds", type=float, default=2.0, help="per append run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--recover-entries", type=int, default=300_000, help="0: skip recovery")
    ap.add_argument("--recover-batch", type=int, default=64)
    ap.add_argument("--dir-base", help="parent of the temp dir (default: /tmp)")
    ap.add_argument("--no-nice", action="store_true")
    ap.add_argument("--no-writer", action="store_true",
                    help="skip raft-engine+writer (raft_engine_bench --writer-thread 1)")
    ap.add_argument("--no-prealloc", action="store_true",
                    help="skip the segment+prealloc variant (wal_bench --preallocate 1)")
    ap.add_argument("--markdown", help="also write the markdown report to this file")
    ap.add_argument("--json", help="write every run's result to this file")
    args = ap.parse_args()
    args.batch = [int(x) for x in args.batch.split(",") if x]
    args.writers = [int(x) for x in args.writers.split(",") if x]
    args.engines = (list(ENGINES) + ([] if args.no_writer else ["raft-engine+writer"])
                    + ([] if args.no_prealloc else ["segment+prealloc"]))
    if args.repeat < 1 or not args.batch or not args.writers:
        raise SystemExit("--repeat >= 1, and at least one --batch and --writers")
    if not 0 < args.seconds <= 60:
        raise SystemExit("--seconds in (0, 60]: keep runs bounded")
    for path in (args.segment, args.raft_engine):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path} not found: build it first (see --help)")

    owned = Owned()
    try:
        if args.dir_base:
            Path(args.dir_base).mkdir(parents=True, exist_ok=True)
            base = Path(tempfile.mkdtemp(prefix="wal-compare-", dir=args.dir_base))
            owned.dirs.append(base)
        else:
            base = owned.tempdir("wal-compare-")
        args.dir_base_label = str(base.parent)
        args.fs_label = fs_type(base)
        runner = Runner(args, base)
        load_before = loadavg(3)
        log(f"directories under {base} ({args.fs_label})")

        appends = {}
        probes = []
        for rep in range(args.repeat):
            modes = ("append", "fallocate", "overwrite")
            probe = {m: fsync_probe(base, m) for m in (modes if rep % 2 == 0 else modes[::-1])}
            probes.append(probe)
            log(f"rep {rep + 1} fsync probe p50: " + ", ".join(
                f"{m} {probe[m]['p50_us']:.0f} us" for m in modes))
            for i, b in enumerate(args.batch):
                for j, w in enumerate(args.writers):
                    k = (rep + i + j) % len(args.engines)
                    for eng in args.engines[k:] + args.engines[:k]:
                        r = runner.append(eng, b, w)
                        appends.setdefault((eng, b, w), []).append(r)
                        log(f"rep {rep + 1} B={b} W={w} {eng}: {r['entries_per_sec']:,.0f} "
                            f"entries/s, p50 {r['p50_us']} us, p99 {r['p99_us']} us, "
                            f"{r['apparent_per_entry']:.1f} B/entry")

        recovers, fills = {}, {}
        if args.recover_entries:
            for eng in ENGINES:
                d = runner.fresh_dir(eng)
                f = runner.run(eng, "fill", d, 300, entries=args.recover_entries,
                               batch=args.recover_batch)
                f["apparent"], f["allocated"] = dir_bytes(d)
                f["dir"] = d
                fills[eng] = f
                log(f"filled {eng}: {f}")
            for rep in range(args.repeat):
                for eng in (ENGINES if rep % 2 == 0 else ENGINES[::-1]):
                    r = runner.run(eng, "recover", fills[eng]["dir"], 300)
                    if r["entries"] != args.recover_entries:
                        raise SystemExit(f"{eng} recovered {r['entries']} entries, expected "
                                         f"{args.recover_entries}")
                    recovers.setdefault(eng, []).append(r)
                    log(f"recover {eng}: {r['seconds'] * 1000:.0f} ms")
            for f in fills.values():
                f["dir"] = str(f["dir"])

        versions = "raft-engine 0.4.2 (bench/raft_engine_bench/Cargo.lock)"
        md = render(appends, recovers, fills, probes, args, load_before, loadavg(3), versions)
        print(md)
        if args.markdown:
            Path(args.markdown).write_text(md + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"appends": [{"engine": k[0], "batch": k[1], "writers": k[2], "runs": v}
                             for k, v in appends.items()],
                 "fills": fills, "recovers": recovers, "probes": probes}, indent=1) + "\n")
    except KeyboardInterrupt:
        log("interrupted")
        return 1
    finally:
        owned.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
