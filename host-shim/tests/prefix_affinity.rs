//! The max-score picker's prefix affinity, through the whole scheduler with the guide's
//! config: a known prefix group stays on its holder under a small load difference (where the
//! weighted scores alone would move it), and moves once the balance guard trips.

use host_shim::endpoint::{Endpoint, EndpointState, EngineMetrics};
use host_shim::scheduler::config::{SchedulerConfig, DEFAULT_CONFIG};
use host_shim::scheduler::{PickRequest, Scheduler};
use infergate_core::prefix::BlockHasher;
use std::time::Duration;

fn eps(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| format!("10.0.0.{}:8000", i + 1).parse().unwrap())
        .collect()
}

fn metrics(running: u64, waiting: u64, kv: f64) -> EngineMetrics {
    EngineMetrics {
        waiting,
        running,
        kv_cache_usage: kv,
        kv_capacity_tokens: Some(4096 * 16),
        prompt_tokens_total: None,
    }
}

fn request(prompt: &str) -> PickRequest {
    PickRequest {
        model: "m".into(),
        block_hashes: BlockHasher::default().hashes("m", prompt.as_bytes()),
        prompt_tokens: (prompt.len() / 4) as u64,
        ..Default::default()
    }
}

/// A prompt of `shared` blocks common to its group plus `own` blocks of its own.
fn grouped(group: usize, shared: usize, member: usize, own: usize) -> String {
    let unit = format!("system prompt of group {group:>6}; ");
    let mut p = unit.repeat(shared * 256 / unit.len() + 1);
    p.truncate(shared * 256);
    let tail = format!("question {member:>6} of the user here; ");
    p.push_str(&tail.repeat(own * 256 / tail.len() + 1));
    p
}

fn scheduler(picker_params: Option<&str>) -> Scheduler {
    let cfg = match picker_params {
        None => DEFAULT_CONFIG.to_string(),
        Some(p) => DEFAULT_CONFIG
            .replace(
                "- type: prefix-cache-scorer\n",
                &format!(
                    "- type: prefix-cache-scorer\n- type: max-score-picker\n  parameters: {p}\n"
                ),
            )
            .replace(
                "    weight: 3\n",
                "    weight: 3\n  - pluginRef: max-score-picker\n",
            ),
    };
    Scheduler::new(SchedulerConfig::parse(&cfg).unwrap(), 1)
}

/// Where a new member of the group goes when the holder is `load` and the others are idle.
fn next_member(s: &Scheduler, holder_load: EngineMetrics, member: usize) -> (Endpoint, Endpoint) {
    let e = eps(4);
    let now = Duration::from_secs(1);
    let idle = |t| {
        e.iter()
            .map(|x| EndpointState::scraped(*x, metrics(2, 0, 0.1), t))
            .collect::<Vec<_>>()
    };
    let first = request(&grouped(1, 8, 0, 2));
    let home = s.pick(&first, &idle(now), now).unwrap().endpoint;
    assert!(s.observe_served(&home, &first.block_hashes));
    let later = now + Duration::from_millis(50);
    let mut st = idle(later);
    st.iter_mut().find(|x| x.endpoint == home).unwrap().metrics = Some(holder_load);
    let p = s
        .pick(&request(&grouped(1, 8, member, 2)), &st, later)
        .unwrap();
    assert_eq!(p.total_blocks, 10);
    (home, p.endpoint)
}

#[test]
fn the_holder_keeps_its_group_under_a_small_load_difference() {
    // Two queued requests and fuller KV at the holder: its queue score drops from 1 to 0
    // (min-max normalised) and its KV score by 0.8, more than 8 of 10 matched blocks earn.
    let load = metrics(4, 2, 0.5);
    let (home, to) = next_member(&scheduler(None), load, 1);
    assert_eq!(to, home, "the group spread off its holder");
    // The same picture without the rule: the weighted scores alone move the group.
    let (home, to) = next_member(&scheduler(Some("{prefixAffinity: false}")), load, 1);
    assert_ne!(to, home, "expected the scores alone to spread the group");
}

#[test]
fn a_hot_prefix_moves_once_the_balance_guard_trips() {
    // 14 requests at the holder (10 queued) vs 2 elsewhere: 12 more, under the default 16,
    // so it keeps the group although the scores alone would move it.
    let (home, to) = next_member(&scheduler(None), metrics(4, 10, 0.5), 1);
    assert_eq!(to, home);
    // 30 vs 2: more than 16 more and more than 1.5×: the group moves to the least loaded.
    let (home, to) = next_member(&scheduler(None), metrics(20, 10, 0.5), 1);
    assert_ne!(to, home);
    // A looser guard keeps it longer (28 more, 32 allowed)...
    let loose = "{affinityBalanceAbsThreshold: 32}";
    let (home, to) = next_member(&scheduler(Some(loose)), metrics(20, 10, 0.5), 1);
    assert_eq!(to, home);
    // ...and `affinityLoad: queue` compares only queues (10 vs 0), not 40 requests vs 2.
    let queue = "{affinityLoad: queue}";
    let (home, to) = next_member(&scheduler(Some(queue)), metrics(30, 10, 0.5), 1);
    assert_eq!(to, home);
    let (home, to) = next_member(&scheduler(None), metrics(30, 10, 0.5), 1);
    assert_ne!(to, home);
}

#[test]
fn bad_affinity_parameters_are_rejected_naming_the_field() {
    let cfg = DEFAULT_CONFIG.replace(
        "- type: prefix-cache-scorer\n",
        "- type: prefix-cache-scorer\n- type: max-score-picker\n  parameters: {prefixAffinityThreshold: 2}\n",
    );
    let err = SchedulerConfig::parse(&cfg).unwrap_err();
    assert_eq!(err.path, "plugins[3].parameters.prefixAffinityThreshold");
    let cfg = DEFAULT_CONFIG.replace(
        "- type: prefix-cache-scorer\n",
        "- type: prefix-cache-scorer\n- type: max-score-picker\n  parameters: {affinityLoad: tokens}\n",
    );
    let err = SchedulerConfig::parse(&cfg).unwrap_err();
    assert_eq!(err.path, "plugins[3].parameters.affinityLoad");
}
