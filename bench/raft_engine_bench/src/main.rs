//! raft_engine_bench: TiKV's raft-engine driven the way Distri's Raft leader drives its
//! write-ahead log, so bench/wal_compare.py can set it beside bench/wal_bench.cc (our segment
//! code, the real RaftLog record path) on the same disk in the same run.
//!
//!   raft_engine_bench append  --dir D --batch B --concurrency C --seconds S [--writer-thread 1]
//!   raft_engine_bench fill    --dir D --entries N --batch B
//!   raft_engine_bench recover --dir D
//!
//! append: C writer threads, each its own Raft group (region C+1..), each writing in a loop one
//!   LogBatch per "Ready": B entries (index, term 1, a 16-byte context as Distri's proposal
//!   ids, 100 bytes of incompressible data) plus a hard-state message under one key, with
//!   `sync = true`, for S seconds. Concurrent writers meet in raft-engine's own write group
//!   (one leader appends everyone's batches and fdatasyncs once), which is its group commit.
//! --writer-thread 1: raft-engine as RaftLog would have to drive it. The loop thread must not
//!   block on an fsync, so one thread (the "loop") keeps C Readies in flight and hands each
//!   LogBatch to one writer thread, which merges everything queued meanwhile into one LogBatch
//!   and writes it with `sync = true` (the same group commit LocalLog's writer does), then
//!   reports back. Prints engine "raft-engine+writer".
//! fill: writes N entries into region 1 the same way with `sync = false`, then one sync: the
//!   directory for `recover`.
//! recover: opens the directory from scratch (Engine::open replays every file into the
//!   memtables) and checks the entry count.
//!
//! Each mode prints one JSON object on stdout (keys as bench/wal_bench.cc prints them).
//! The engine is raft-engine's default Config apart from `dir`: LZ4 for batches over 8 KiB,
//! 128 MiB files, log recycling on, 4 recovery threads.

use std::process::exit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_engine::{Config, Engine, LogBatch, MessageExt};
use raft_proto::eraftpb::{Entry, HardState};

const PAYLOAD_BYTES: usize = 100;
const CONTEXT_BYTES: usize = 16;
const HARD_STATE_KEY: &[u8] = b"hard_state";
/// No single run writes more than this many entries (a bound on disk use: ~13 GB at most).
const MAX_ENTRIES: u64 = 100_000_000;

#[derive(Clone)]
struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;
    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// The same pseudo-random bytes as wal_bench.cc (xorshift64*), so neither side compresses.
struct Payload(u64);

impl Payload {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

struct Args {
    mode: String,
    dir: String,
    batch: u64,
    concurrency: u64,
    seconds: f64,
    entries: u64,
    writer_thread: bool,
}

fn die(msg: &str) -> ! {
    eprintln!("raft_engine_bench: {msg}");
    exit(2);
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: raft_engine_bench append|fill|recover --dir D [--batch B] \
                 [--concurrency C] [--seconds S] [--entries N] [--writer-thread 0|1]";
    let Some(mode) = argv.first().cloned() else {
        die(usage)
    };
    if !matches!(mode.as_str(), "append" | "fill" | "recover") {
        die(usage);
    }
    let mut a = Args {
        mode,
        dir: String::new(),
        batch: 1,
        concurrency: 1,
        seconds: 2.0,
        entries: 300_000,
        writer_thread: false,
    };
    let mut i = 1;
    while i < argv.len() {
        let Some(value) = argv.get(i + 1) else {
            die(usage)
        };
        let num = |what: &str| -> u64 {
            value
                .parse()
                .unwrap_or_else(|_| die(&format!("{what}: not a number: {value}")))
        };
        match argv[i].as_str() {
            "--dir" => a.dir = value.clone(),
            "--batch" => a.batch = num("--batch"),
            "--concurrency" => a.concurrency = num("--concurrency"),
            "--entries" => a.entries = num("--entries"),
            "--writer-thread" => a.writer_thread = num("--writer-thread") != 0,
            "--seconds" => {
                a.seconds = value
                    .parse()
                    .unwrap_or_else(|_| die("--seconds: not a number"))
            }
            other => die(&format!("unknown flag {other}\n{usage}")),
        }
        i += 2;
    }
    if a.dir.is_empty() {
        die("--dir is required");
    }
    if !(1..=4096).contains(&a.batch) || !(1..=256).contains(&a.concurrency) {
        die("--batch must be in [1, 4096] and --concurrency in [1, 256]");
    }
    if !(a.seconds > 0.0 && a.seconds <= 600.0) || a.entries == 0 || a.entries > MAX_ENTRIES {
        die("--seconds must be in (0, 600] and --entries in [1, 100000000]");
    }
    a
}

fn open(dir: &str) -> Engine {
    let cfg = Config {
        dir: dir.to_owned(),
        ..Default::default()
    };
    Engine::open(cfg).unwrap_or_else(|e| die(&format!("open {dir}: {e}")))
}

/// One Ready's worth: B entries from `first` on, and the hard state (commit trails by one
/// batch, as a leader's does).
fn fill_batch(batch: &mut LogBatch, region: u64, first: u64, n: u64, payload: &mut Payload) {
    let mut entries = Vec::with_capacity(n as usize);
    let mut data = [0u8; PAYLOAD_BYTES];
    for i in 0..n {
        payload.fill(&mut data);
        let mut context = [0u8; CONTEXT_BYTES];
        context[..8].copy_from_slice(&region.to_le_bytes());
        context[8..].copy_from_slice(&(first + i).to_le_bytes());
        let mut e = Entry::default();
        e.index = first + i;
        e.term = 1;
        e.set_data(data.to_vec().into());
        e.set_context(context.to_vec().into());
        entries.push(e);
    }
    batch
        .add_entries::<EntryExt>(region, &entries)
        .unwrap_or_else(|e| die(&e.to_string()));
    let mut hs = HardState::default();
    hs.term = 1;
    hs.vote = region;
    hs.commit = first.saturating_sub(1);
    batch
        .put_message(region, HARD_STATE_KEY.to_vec(), &hs)
        .unwrap_or_else(|e| die(&e.to_string()));
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn append(a: &Args) {
    let engine = Arc::new(open(&a.dir));
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let start = Instant::now();
    let threads: Vec<_> = (0..a.concurrency)
        .map(|t| {
            let engine = engine.clone();
            let b = a.batch;
            let max_batches = MAX_ENTRIES / a.concurrency / b;
            std::thread::spawn(move || {
                let region = t + 1;
                let mut payload = Payload(0x9E37_79B9_7F4A_7C15 ^ region);
                let mut batch = LogBatch::with_capacity(b as usize);
                let mut latencies_us: Vec<u32> = Vec::new();
                let mut next = 1;
                while Instant::now() < deadline && (latencies_us.len() as u64) < max_batches {
                    let t0 = Instant::now();
                    fill_batch(&mut batch, region, next, b, &mut payload);
                    engine
                        .write(&mut batch, true)
                        .unwrap_or_else(|e| die(&e.to_string()));
                    latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    next += b;
                }
                latencies_us
            })
        })
        .collect();
    let mut all: Vec<u32> = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap_or_else(|_| die("a writer thread panicked")));
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Every write was synced: what is in the directory now is what a crash would keep.
    let batches = all.len() as u64;
    all.sort_unstable();
    println!(
        "{{\"engine\": \"raft-engine\", \"mode\": \"append\", \"batch\": {}, \"concurrency\": {}, \
         \"seconds\": {:.3}, \"batches\": {}, \"entries\": {}, \"p50_us\": {}, \"p99_us\": {}, \
         \"max_us\": {}}}",
        a.batch,
        a.concurrency,
        elapsed,
        batches,
        batches * a.batch,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0)
    );
}

fn append_through_writer(a: &Args) {
    use std::sync::mpsc;
    let engine = Arc::new(open(&a.dir));
    let (to_writer, writer_rx) = mpsc::channel::<(u64, LogBatch, Instant)>();
    let (to_loop, loop_rx) = mpsc::channel::<Vec<(u64, Instant)>>();
    let writer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            // Blocks for the first Ready, then takes every one queued meanwhile: one group.
            while let Ok((group, mut merged, t0)) = writer_rx.recv() {
                let mut done = vec![(group, t0)];
                while let Ok((group, mut batch, t0)) = writer_rx.try_recv() {
                    if merged.merge(&mut batch).is_err() {
                        // Over raft-engine's size limit for one batch: write what we have.
                        engine
                            .write(&mut merged, true)
                            .unwrap_or_else(|e| die(&e.to_string()));
                        merged = batch;
                    }
                    done.push((group, t0));
                }
                engine
                    .write(&mut merged, true)
                    .unwrap_or_else(|e| die(&e.to_string()));
                if to_loop.send(done).is_err() {
                    return;
                }
            }
        })
    };
    let mut payloads: Vec<Payload> = (0..a.concurrency)
        .map(|g| Payload(0x9E37_79B9_7F4A_7C15 ^ (g + 1)))
        .collect();
    let mut next = vec![1u64; a.concurrency as usize];
    let max_batches = MAX_ENTRIES / a.batch;
    let mut started = 0u64;
    let mut submit = |g: u64, started: &mut u64| {
        let t0 = Instant::now();
        let mut batch = LogBatch::with_capacity(a.batch as usize);
        fill_batch(
            &mut batch,
            g + 1,
            next[g as usize],
            a.batch,
            &mut payloads[g as usize],
        );
        next[g as usize] += a.batch;
        *started += 1;
        to_writer
            .send((g, batch, t0))
            .unwrap_or_else(|_| die("the writer thread stopped"));
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    for g in 0..a.concurrency {
        submit(g, &mut started);
    }
    let mut in_flight = a.concurrency;
    let mut latencies_us: Vec<u32> = Vec::new();
    while in_flight > 0 {
        let done = loop_rx
            .recv()
            .unwrap_or_else(|_| die("the writer thread stopped"));
        for (g, t0) in done {
            latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            in_flight -= 1;
            if Instant::now() < deadline && started < max_batches {
                submit(g, &mut started);
                in_flight += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(submit);
    drop(to_writer);
    writer
        .join()
        .unwrap_or_else(|_| die("the writer thread panicked"));
    let batches = latencies_us.len() as u64;
    latencies_us.sort_unstable();
    println!(
        "{{\"engine\": \"raft-engine+writer\", \"mode\": \"append\", \"batch\": {}, \
         \"concurrency\": {}, \"seconds\": {:.3}, \"batches\": {}, \"entries\": {}, \
         \"p50_us\": {}, \"p99_us\": {}, \"max_us\": {}}}",
        a.batch,
        a.concurrency,
        elapsed,
        batches,
        batches * a.batch,
        percentile(&latencies_us, 0.5),
        percentile(&latencies_us, 0.99),
        latencies_us.last().copied().unwrap_or(0)
    );
}

fn fill(a: &Args) {
    let engine = open(&a.dir);
    let mut payload = Payload(0x9E37_79B9_7F4A_7C15 ^ 1);
    let mut batch = LogBatch::with_capacity(a.batch as usize);
    let start = Instant::now();
    let mut next = 1;
    while next <= a.entries {
        let n = a.batch.min(a.entries - next + 1);
        fill_batch(&mut batch, 1, next, n, &mut payload);
        engine
            .write(&mut batch, false)
            .unwrap_or_else(|e| die(&e.to_string()));
        next += n;
    }
    engine.sync().unwrap_or_else(|e| die(&e.to_string()));
    println!(
        "{{\"engine\": \"raft-engine\", \"mode\": \"fill\", \"batch\": {}, \"entries\": {}, \
         \"seconds\": {:.3}}}",
        a.batch,
        a.entries,
        start.elapsed().as_secs_f64()
    );
}

fn recover(a: &Args) {
    let start = Instant::now();
    let engine = open(&a.dir);
    let open_s = start.elapsed().as_secs_f64();
    let mut entries = 0;
    for region in engine.raft_groups() {
        if let (Some(first), Some(last)) = (engine.first_index(region), engine.last_index(region)) {
            entries += last - first + 1;
        }
        // The hard state must be there too (what a restarting node reads first).
        let hs: Option<HardState> = engine
            .get_message(region, HARD_STATE_KEY)
            .unwrap_or_else(|e| die(&e.to_string()));
        if hs.is_none() {
            die(&format!("region {region} has no hard state after recovery"));
        }
    }
    println!(
        "{{\"engine\": \"raft-engine\", \"mode\": \"recover\", \"entries\": {}, \
         \"seconds\": {:.3}}}",
        entries, open_s
    );
}

fn main() {
    let a = parse_args();
    match a.mode.as_str() {
        "append" if a.writer_thread => append_through_writer(&a),
        "append" => append(&a),
        "fill" => fill(&a),
        _ => recover(&a),
    }
}
