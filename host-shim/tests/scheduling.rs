//! Scheduling properties, driven offline with a virtual clock (as the routing benchmark does).

use host_shim::endpoint::{Endpoint, EndpointState, EngineMetrics};
use host_shim::scheduler::config::SchedulerConfig;
use host_shim::scheduler::{PickError, PickRequest, Scheduler, SubsetEntry};
use infergate_core::prefix::BlockHasher;
use std::collections::HashMap;
use std::time::Duration;

fn eps(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| format!("10.0.0.{}:8000", i + 1).parse().unwrap())
        .collect()
}

fn metrics(waiting: u64, kv: f64) -> EngineMetrics {
    EngineMetrics {
        waiting,
        running: 2,
        kv_cache_usage: kv,
        kv_capacity_tokens: Some(4096 * 16),
        prompt_tokens_total: None,
    }
}

fn states(endpoints: &[Endpoint], at: Duration) -> Vec<EndpointState> {
    endpoints
        .iter()
        .map(|e| EndpointState::scraped(*e, metrics(0, 0.1), at))
        .collect()
}

fn request(prompt: &str) -> PickRequest {
    let hasher = BlockHasher::default();
    PickRequest {
        model: "m".into(),
        block_hashes: hasher.hashes("m", prompt.as_bytes()),
        prompt_tokens: (prompt.len() / 4) as u64,
        ..Default::default()
    }
}

fn prompt(seed: usize, blocks: usize) -> String {
    let unit = format!("conversation {seed:>6} says hello; ");
    unit.repeat(blocks * 256 / unit.len() + 1)
}

fn guide() -> Scheduler {
    Scheduler::new(SchedulerConfig::guide_default(), 1)
}

#[test]
fn same_prefix_sticks_while_not_overloaded_then_spreads() {
    let s = guide();
    let e = eps(4);
    let mut now = Duration::from_secs(1);
    let mut st = states(&e, now);
    let shared = prompt(1, 8);

    let first = s.pick(&request(&shared), &st, now).unwrap().endpoint;
    assert!(s.observe_served(&first, &request(&shared).block_hashes));
    for i in 0..10 {
        // A fresh scrape each time: the pods report light, equal load.
        now += Duration::from_millis(50);
        st = states(&e, now);
        let mut req = request(&shared);
        req.block_hashes.extend(
            request(&format!("{shared} turn {i}"))
                .block_hashes
                .iter()
                .skip(req.block_hashes.len()),
        );
        let p = s.pick(&req, &st, now).unwrap();
        assert_eq!(p.endpoint, first, "pick {i} left the cached endpoint");
        assert!(p.matched_blocks >= 8, "matched {}", p.matched_blocks);
        s.observe_served(&p.endpoint, &req.block_hashes);
    }

    // The cached endpoint becomes overloaded: a long queue and a full KV cache.
    now += Duration::from_millis(50);
    st = states(&e, now);
    let hot = st.iter_mut().find(|x| x.endpoint == first).unwrap();
    hot.metrics = Some(metrics(40, 0.95));
    let p = s.pick(&request(&shared), &st, now).unwrap();
    assert_ne!(
        p.endpoint, first,
        "an overloaded endpoint kept its prefix traffic"
    );
}

#[test]
fn a_burst_between_two_scrapes_is_spread() {
    let s = guide();
    let e = eps(4);
    let now = Duration::from_secs(1);
    let st = states(&e, now);
    let mut counts: HashMap<Endpoint, usize> = HashMap::new();
    // 16 different prompts arrive within one scrape interval: metrics never change.
    for i in 0..16 {
        let p = s
            .pick(
                &request(&prompt(100 + i, 4)),
                &st,
                now + Duration::from_millis(i as u64),
            )
            .unwrap();
        *counts.entry(p.endpoint).or_default() += 1;
    }
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|&c| c == 4), "{counts:?}");

    // The next scrape includes those requests; the ledger restarts from it.
    let later = now + Duration::from_millis(50);
    let mut st2 = states(&e, later);
    for x in &mut st2 {
        x.metrics = Some(metrics(4, 0.1));
    }
    st2[0].metrics = Some(metrics(0, 0.1));
    let p = s.pick(&request(&prompt(999, 4)), &st2, later).unwrap();
    assert_eq!(p.endpoint, e[0]);
}

#[test]
fn same_prefix_burst_moves_off_a_queueing_endpoint() {
    // Without served reports yet, a burst of one prefix follows its first pick (pick-time
    // insertion) until the dispatch ledger trips the balance guard (32 more queued than the
    // shortest queue), then moves.
    let s = guide();
    let e = eps(2);
    let now = Duration::from_secs(1);
    let st = states(&e, now);
    let shared = prompt(7, 4);
    let picks: Vec<Endpoint> = (0..40)
        .map(|_| s.pick(&request(&shared), &st, now).unwrap().endpoint)
        .collect();
    assert!(picks[..33].iter().all(|p| *p == picks[0]), "{picks:?}");
    assert!(picks.contains(&e[0]) && picks.contains(&e[1]), "{picks:?}");
}

#[test]
fn index_follows_the_served_endpoint_not_the_pick() {
    let s = guide();
    let e = eps(3);
    let now = Duration::from_secs(1);
    let st = states(&e, now);
    let req = request(&prompt(3, 6));
    let picked = s.pick(&req, &st, now).unwrap().endpoint;
    // Envoy retried elsewhere: a different endpoint served.
    let served = *e.iter().find(|x| **x != picked).unwrap();
    assert!(s.observe_served(&served, &req.block_hashes));
    let later = now + Duration::from_millis(100);
    let p = s.pick(&req, &states(&e, later), later).unwrap();
    assert_eq!(p.endpoint, served);
    assert_eq!(p.matched_blocks, req.block_hashes.len());
    // Unknown endpoints are not indexed.
    assert!(!s.observe_served(&"10.9.9.9:1".parse().unwrap(), &req.block_hashes));
}

#[test]
fn stale_and_unreachable_endpoints_are_excluded_until_healthy() {
    let s = guide();
    let e = eps(3);
    let t0 = Duration::from_secs(10);
    let mut st = states(&e, t0);
    st[0].scraped_at = Some(t0 - Duration::from_secs(3)); // stale (> 2 s)
    st[1].reachable = false; // last scrape failed
    for i in 0..20 {
        let p = s.pick(&request(&prompt(i, 2)), &st, t0).unwrap();
        assert_eq!(p.endpoint, e[2]);
        assert!(p.fallbacks.is_empty());
    }
    // Both recover.
    let t1 = t0 + Duration::from_millis(50);
    let st = states(&e, t1);
    let mut seen: Vec<Endpoint> = (0..30)
        .map(|i| {
            s.pick(&request(&prompt(50 + i, 2)), &st, t1)
                .unwrap()
                .endpoint
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, e);
}

#[test]
fn nothing_ready_is_503_and_saturation_sheds_only_sheddable() {
    let s = guide();
    let e = eps(2);
    let now = Duration::from_secs(5);
    let never: Vec<EndpointState> = e.iter().map(|x| EndpointState::unscraped(*x)).collect();
    let err = s.pick(&request("x"), &never, now).unwrap_err();
    assert_eq!((err, err.http_status()), (PickError::NoReadyEndpoint, 503));
    assert_eq!(
        s.pick(&request("x"), &[], now).unwrap_err(),
        PickError::NoReadyEndpoint
    );

    let busy: Vec<EndpointState> = e
        .iter()
        .map(|x| EndpointState::scraped(*x, metrics(50, 0.99), now))
        .collect();
    let mut shed = request("x");
    shed.sheddable = true;
    let err = s.pick(&shed, &busy, now).unwrap_err();
    assert_eq!((err, err.http_status()), (PickError::Saturated, 429));
    assert!(s.pick(&request("x"), &busy, now).is_ok());
    // One endpoint with headroom: sheddable requests go there.
    let mut mixed = busy.clone();
    mixed[1].metrics = Some(metrics(0, 0.2));
    assert_eq!(s.pick(&shed, &mixed, now).unwrap().endpoint, e[1]);
}

#[test]
fn subset_hint_restricts_candidates() {
    let s = guide();
    let e = eps(4);
    let now = Duration::from_secs(1);
    let st = states(&e, now);
    let mut req = request(&prompt(1, 2));
    req.subset = Some(vec![SubsetEntry::Endpoint(e[2].0)]);
    for _ in 0..5 {
        assert_eq!(s.pick(&req, &st, now).unwrap().endpoint, e[2]);
    }
    req.subset = Some(vec!["10.1.1.1".parse().unwrap()]);
    assert_eq!(
        s.pick(&req, &st, now).unwrap_err(),
        PickError::SubsetUnavailable
    );
}

#[test]
fn fallbacks_are_the_next_best_and_exclude_the_primary() {
    let s = guide();
    let e = eps(4);
    let now = Duration::from_secs(1);
    let mut st = states(&e, now);
    st[0].metrics = Some(metrics(0, 0.0));
    st[1].metrics = Some(metrics(1, 0.2));
    st[2].metrics = Some(metrics(9, 0.9));
    st[3].metrics = Some(metrics(3, 0.4));
    let p = s.pick(&request(&prompt(5, 2)), &st, now).unwrap();
    assert_eq!(p.endpoint, e[0]);
    assert_eq!(p.fallbacks, vec![e[1], e[3]]);
    assert_eq!(p.scores.len(), 4);
}

#[test]
fn index_capacity_comes_from_the_pods_kv_cache() {
    let s = guide();
    let e = eps(1);
    let now = Duration::from_secs(1);
    let mut st = states(&e, now);
    // 64 engine blocks × 16 tokens = 1024 tokens = 16 index blocks of 64 tokens (256 B).
    st[0].metrics = Some(EngineMetrics {
        kv_capacity_tokens: Some(64 * 16),
        prompt_tokens_total: None,
        ..metrics(0, 0.1)
    });
    s.pick(&request("warm"), &st, now).unwrap();
    for i in 0..10 {
        s.observe_served(&e[0], &request(&prompt(i, 4)).block_hashes);
    }
    let stats = s.index_stats();
    assert_eq!(stats[0].1.capacity, 16);
    assert_eq!(stats[0].1.blocks, 16);
    // The most recent prompt is fully held; the oldest is gone.
    let recent = request(&prompt(9, 4));
    let p = s.pick(&recent, &st, now).unwrap();
    assert_eq!(p.matched_blocks, recent.block_hashes.len());
    assert_eq!(
        s.pick(&request(&prompt(0, 4)), &st, now)
            .unwrap()
            .matched_blocks,
        0
    );
}

#[test]
fn weighted_random_picker_spreads_equal_endpoints() {
    let cfg = SchedulerConfig::parse(
        "apiVersion: llm-d.ai/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: kv-cache-utilization-scorer
- type: weighted-random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: kv-cache-utilization-scorer
    weight: 1
  - pluginRef: weighted-random-picker
",
    )
    .unwrap();
    let s = Scheduler::new(cfg, 3);
    let e = eps(3);
    let now = Duration::from_secs(1);
    let mut st = states(&e, now);
    st[2].metrics = Some(metrics(0, 1.0)); // full KV cache: score 0, never picked
    let mut counts = [0usize; 3];
    for i in 0..300 {
        let p = s.pick(&request(&prompt(i, 1)), &st, now).unwrap();
        counts[e.iter().position(|x| *x == p.endpoint).unwrap()] += 1;
    }
    assert_eq!(counts[2], 0, "{counts:?}");
    assert!(counts[0] > 50 && counts[1] > 50, "{counts:?}");
}

#[test]
fn replicas_with_the_same_view_agree_on_new_prefixes() {
    let (a, b) = (
        Scheduler::new(SchedulerConfig::guide_default(), 1),
        Scheduler::new(SchedulerConfig::guide_default(), 2),
    );
    let e = eps(8);
    let now = Duration::from_secs(1);
    let st = states(&e, now);
    for i in 0..50 {
        let r = request(&prompt(i, 3));
        assert_eq!(
            a.pick(&r, &st, now).unwrap().endpoint,
            b.pick(&r, &st, now).unwrap().endpoint
        );
    }
}

#[test]
fn a_hot_prefix_spills_over_when_its_endpoint_saturates() {
    // `saturationAware: true` (off by default: measured on bench-routing, withholding the
    // credit at saturation spread prefix groups and cost prefix hits and TTFT), and the same
    // for the picker's prefix affinity (`affinitySaturationAware`).
    let cfg = host_shim::scheduler::config::DEFAULT_CONFIG
        .replace(
            "- type: prefix-cache-scorer\n",
            "- type: prefix-cache-scorer\n  parameters: {saturationAware: true}\n\
             - type: max-score-picker\n  parameters: {affinitySaturationAware: true}\n",
        )
        .replace(
            "    weight: 3\n",
            "    weight: 3\n  - pluginRef: max-score-picker\n",
        );
    let s = Scheduler::new(SchedulerConfig::parse(&cfg).unwrap(), 1);
    let e = eps(4);
    let now = Duration::from_secs(1);
    let st = states(&e, now);
    let hot = request(&prompt(42, 8));
    let home = s.pick(&hot, &st, now).unwrap().endpoint;
    s.observe_served(&home, &hot.block_hashes);

    // A burst of the same prefix within one scrape interval: the cached endpoint takes
    // requests until the dispatch ledger reaches the saturation queue depth (5), then the
    // rest spill to other endpoints instead of piling up behind it.
    let later = now + Duration::from_millis(50);
    let st = states(&e, later);
    let picks: Vec<Endpoint> = (0..10)
        .map(|_| s.pick(&hot, &st, later).unwrap().endpoint)
        .collect();
    assert_eq!(picks.iter().filter(|p| **p == home).count(), 5, "{picks:?}");

    // The endpoint that served a spilled request caches the prefix too: it now wins while
    // the original one stays saturated.
    let spill = *picks.iter().find(|p| **p != home).unwrap();
    s.observe_served(&spill, &hot.block_hashes);
    let t = later + Duration::from_millis(50);
    let mut st = states(&e, t);
    st.iter_mut().find(|x| x.endpoint == home).unwrap().metrics = Some(metrics(6, 0.5));
    assert_eq!(s.pick(&hot, &st, t).unwrap().endpoint, spill);
}

#[test]
fn by_default_a_hot_prefix_stays_home_until_the_balance_guard() {
    // The guide's config: the burst keeps following the cached endpoint past the saturation
    // queue depth; only a queue 32 longer and 1.5x the shortest (balanceAbsThreshold /
    // balanceRelThreshold) loses the prefix credit.
    let s = guide();
    let e = eps(4);
    let now = Duration::from_secs(1);
    let hot = request(&prompt(42, 8));
    let home = s.pick(&hot, &states(&e, now), now).unwrap().endpoint;
    s.observe_served(&home, &hot.block_hashes);
    let later = now + Duration::from_millis(50);
    let st = states(&e, later);
    let picks: Vec<Endpoint> = (0..40)
        .map(|_| s.pick(&hot, &st, later).unwrap().endpoint)
        .collect();
    let home_count = picks.iter().filter(|p| **p == home).count();
    assert!((33..40).contains(&home_count), "{home_count}: {picks:?}");
    assert_eq!(picks[..33].iter().filter(|p| **p == home).count(), 33);
}
