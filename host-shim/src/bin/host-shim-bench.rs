//! `host-shim-bench`: pick decision latency, pick telemetry cost, prefix-index memory and
//! resident memory, printed as markdown.
//!
//! Runs the scheduler offline with a virtual clock (no network): N endpoints whose indexes
//! are filled to capacity, then timed picks of 256-block requests, half of them sharing a
//! cached prefix with some endpoint. The process's resident set size (Linux `VmRSS`) is read
//! before anything is allocated and again with 256 endpoints' indexes full. Build optimized:
//! `cargo run -p host-shim --profile native --bin host-shim-bench`.

use host_shim::endpoint::{Endpoint, EndpointState, EngineMetrics};
use host_shim::index::lru::BlockLru;
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::{EndpointScore, Pick, PickRequest, Scheduler};
use host_shim::server::wire;
use host_shim::telemetry::Telemetry;
use std::time::{Duration, Instant};

/// Index blocks per endpoint: a 24 GiB-class pod (32k engine blocks × 16 tokens = 512k
/// tokens = 8192 index blocks of 64 tokens).
const INDEX_BLOCKS: usize = 8192;
const PROMPT_BLOCKS: usize = 256;

struct Xorshift(u64);
impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn chain(rng: &mut Xorshift, n: usize) -> Vec<u64> {
    (0..n).map(|_| rng.next()).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`; Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A guide-profile scheduler over `n` endpoints whose indexes are full, the endpoints'
/// states, and up to 4096 of the cached 64-block prefixes (for requests that hit).
fn filled(n: usize, rng: &mut Xorshift) -> (Scheduler, Vec<EndpointState>, Vec<Vec<u64>>) {
    let sched = Scheduler::new(SchedulerConfig::guide_default(), 1);
    let now = Duration::from_secs(1);
    let endpoints: Vec<Endpoint> = (0..n)
        .map(|i| {
            let ip = std::net::Ipv4Addr::new(10, (i >> 8) as u8, (i & 255) as u8, 1);
            Endpoint(std::net::SocketAddr::from((ip, 8000)))
        })
        .collect();
    let states: Vec<EndpointState> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            EndpointState::scraped(
                *e,
                EngineMetrics {
                    waiting: (i % 5) as u64,
                    running: 8,
                    kv_cache_usage: 0.3 + (i % 7) as f64 * 0.05,
                    kv_capacity_tokens: Some(INDEX_BLOCKS as u64 * 64),
                    prompt_tokens_total: None,
                },
                now,
            )
        })
        .collect();
    sched.sync_endpoints(&endpoints);
    // Size the indexes from the reported capacity, then fill each to capacity.
    sched
        .pick(
            &PickRequest {
                model: "m".into(),
                ..Default::default()
            },
            &states,
            now,
        )
        .ok();
    let mut cached: Vec<Vec<u64>> = Vec::new();
    for e in &endpoints {
        for _ in 0..INDEX_BLOCKS / 64 {
            let c = chain(rng, 64);
            sched.observe_served(e, &c);
            if cached.len() < 4096 {
                cached.push(c);
            }
        }
    }
    (sched, states, cached)
}

fn bench_picks(n: usize, picks: usize) -> (Duration, Duration, usize) {
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let now = Duration::from_secs(1);
    let (sched, mut states, cached) = filled(n, &mut rng);
    let blocks: usize = sched.index_stats().iter().map(|(_, s)| s.blocks).sum();

    let mut times = Vec::with_capacity(picks);
    for i in 0..picks {
        let mut hashes = if i % 2 == 0 {
            cached[(rng.next() as usize) % cached.len()].clone()
        } else {
            Vec::new()
        };
        let tail = PROMPT_BLOCKS - hashes.len();
        hashes.extend(chain(&mut rng, tail));
        let req = PickRequest {
            model: "m".into(),
            block_hashes: hashes,
            prompt_tokens: 16_000,
            ..Default::default()
        };
        // A new scrape every 64 picks, as at 50 ms scrapes and ~1.3k picks/s.
        if i % 64 == 0 {
            let t = now + Duration::from_millis(i as u64);
            for s in &mut states {
                s.scraped_at = Some(t);
            }
        }
        let t0 = Instant::now();
        let r = sched.pick(&req, &states, now + Duration::from_millis(i as u64));
        times.push(t0.elapsed());
        assert!(r.is_ok());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), blocks)
}

/// Mean cost of recording one pick's telemetry (pick counters, latency, one score gauge per
/// candidate) with `n` candidates.
fn bench_telemetry(n: usize) -> Duration {
    let endpoints: Vec<Endpoint> = (0..n)
        .filter_map(|i| format!("10.0.{}.{}:8000", i / 250, i % 250).parse().ok())
        .collect();
    let pick = Pick {
        endpoint: endpoints[0],
        fallbacks: Vec::new(),
        matched_blocks: 0,
        total_blocks: PROMPT_BLOCKS,
        scores: endpoints
            .iter()
            .map(|&endpoint| EndpointScore {
                endpoint,
                score: 1.0,
            })
            .collect(),
    };
    let telemetry = Telemetry::new();
    let result = Ok(pick);
    let record = || telemetry.record_pick("http", &result, Duration::from_micros(1));
    (0..100).for_each(|_| record());
    let rounds = 20_000;
    let t0 = Instant::now();
    (0..rounds).for_each(|_| record());
    t0.elapsed() / rounds
}

/// Resident memory with `n` endpoints' indexes full: (RSS KiB before, RSS KiB after, indexed
/// blocks, index heap bytes).
fn rss_with_full_index(n: usize) -> (Option<u64>, Option<u64>, usize, usize) {
    let before = rss_kib();
    let mut rng = Xorshift(0x5EED);
    let (sched, states, cached) = filled(n, &mut rng);
    drop(cached);
    // A few picks so the pick path's allocations are counted too.
    for i in 0..100u64 {
        let req = PickRequest {
            model: "m".into(),
            block_hashes: chain(&mut rng, PROMPT_BLOCKS),
            prompt_tokens: 16_000,
            ..Default::default()
        };
        assert!(sched
            .pick(&req, &states, Duration::from_millis(1000 + i))
            .is_ok());
    }
    let after = rss_kib();
    let stats = sched.index_stats();
    let blocks = stats.iter().map(|(_, s)| s.blocks).sum();
    let bytes = stats.iter().map(|(_, s)| s.bytes).sum();
    (before, after, blocks, bytes)
}

fn main() {
    // First, while the heap is still empty, so the figure is not inflated by earlier runs.
    let rss = rss_with_full_index(256);

    println!("## host-shim pick decision latency\n");
    println!(
        "Scheduler only (guide profile: queue 2, kv-cache 2, prefix-cache 3; max-score), \
         requests of {PROMPT_BLOCKS} block hashes, half sharing a cached 64-block prefix; \
         every endpoint's index full ({INDEX_BLOCKS} blocks).\n"
    );
    println!("| endpoints | indexed blocks | picks | p50 (µs) | p99 (µs) |");
    println!("|---:|---:|---:|---:|---:|");
    for (n, picks) in [(8, 20_000), (64, 10_000), (256, 4_000)] {
        let (p50, p99, blocks) = bench_picks(n, picks);
        println!("| {n} | {blocks} | {picks} | {} | {} |", us(p50), us(p99));
    }

    println!("\n## Pick telemetry\n");
    println!("Recording one pick's metrics (outcome counter, latency, a score gauge per candidate; `record_pick`).\n");
    println!("| endpoints | per pick (µs) |");
    println!("|---:|---:|");
    for n in [8, 64, 256] {
        println!("| {n} | {} |", us(bench_telemetry(n)));
    }

    println!("\n## Prefix index memory\n");
    println!("| capacity (blocks) | heap bytes | bytes per block |");
    println!("|---:|---:|---:|");
    let mut rng = Xorshift(42);
    for cap in [1024usize, 8192, 65_536, 1 << 20] {
        let mut lru = BlockLru::new(cap);
        for _ in 0..cap + cap / 2 {
            lru.touch(rng.next());
        }
        let bytes = lru.memory_bytes();
        println!(
            "| {cap} | {bytes} | {:.1} |",
            bytes as f64 / lru.len() as f64
        );
    }

    println!("\n## Resident memory at 256 endpoints\n");
    println!(
        "This benchmark process (the scheduler library, no server runtime): `VmRSS` at start \
         and with 256 endpoints' indexes full ({INDEX_BLOCKS} blocks each) after 100 picks.\n"
    );
    println!("| endpoints | indexed blocks | index heap (MiB) | RSS at start (MiB) | RSS with full index (MiB) |");
    println!("|---:|---:|---:|---:|---:|");
    let (before, after, blocks, bytes) = rss;
    let show = |k: Option<u64>| k.map_or_else(|| "n/a".to_string(), mib);
    println!(
        "| 256 | {blocks} | {:.1} | {} | {} |",
        bytes as f64 / (1024.0 * 1024.0),
        show(before),
        show(after)
    );

    println!("\n## Pick API decoding\n");
    let req = PickRequest {
        model: "Qwen/Qwen3-0.6B".into(),
        block_hashes: chain(&mut rng, PROMPT_BLOCKS),
        prompt_tokens: 16_000,
        ..Default::default()
    };
    let bytes = wire::encode_pick(&req, 256, "");
    let rounds = 100_000;
    let t0 = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(wire::decode_pick(std::hint::black_box(&bytes)).ok());
    }
    let per = t0.elapsed() / rounds;
    println!("| request bytes ({PROMPT_BLOCKS} hashes) | decode (µs) |");
    println!("|---:|---:|");
    println!(
        "| {} | {} |",
        bytes.len(),
        format_args!("{:.2}", per.as_secs_f64() * 1e6)
    );
}
