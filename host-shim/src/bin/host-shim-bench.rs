//! `host-shim-bench`: pick decision latency and prefix-index memory, printed as markdown.
//!
//! Runs the scheduler offline with a virtual clock (no network): N endpoints whose indexes
//! are filled to capacity, then timed picks of 256-block requests, half of them sharing a
//! cached prefix with some endpoint. Build optimized:
//! `cargo run -p host-shim --profile native --bin host-shim-bench`.

use host_shim::endpoint::{Endpoint, EndpointState, EngineMetrics};
use host_shim::index::lru::BlockLru;
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::{PickRequest, Scheduler};
use host_shim::server::wire;
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

fn bench_picks(n: usize, picks: usize) -> (Duration, Duration, usize) {
    let sched = Scheduler::new(SchedulerConfig::guide_default(), 1);
    let now = Duration::from_secs(1);
    let endpoints: Vec<Endpoint> = (0..n)
        .map(|i| {
            let ip = std::net::Ipv4Addr::new(10, (i >> 8) as u8, (i & 255) as u8, 1);
            Endpoint(std::net::SocketAddr::from((ip, 8000)))
        })
        .collect();
    let mut states: Vec<EndpointState> = endpoints
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
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut cached: Vec<Vec<u64>> = Vec::new();
    for e in &endpoints {
        for _ in 0..INDEX_BLOCKS / 64 {
            let c = chain(&mut rng, 64);
            sched.observe_served(e, &c);
            if cached.len() < 4096 {
                cached.push(c);
            }
        }
    }
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

fn main() {
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
