use super::*;
use crate::block_hash::{block_hashes, chain_seed};
use crate::cost::LLAMA_8B_H200;

fn cfg(blocks: usize, block_size: usize, budget: usize, seqs: usize) -> EngineConfig {
    EngineConfig {
        block_size,
        num_gpu_blocks: blocks,
        max_num_seqs: seqs,
        max_num_batched_tokens: budget,
        max_model_len: blocks * block_size,
        enable_prefix_caching: true,
        cost: LLAMA_8B_H200.cost,
    }
}

/// A request whose prompt is `shared` tokens of stream 1 followed by `own` tokens of stream `id`.
fn req(id: u64, shared: u32, own: u32, out: u32, bs: usize, arrival: f64) -> NewRequest {
    let mut tokens: Vec<u32> = (0..shared).collect();
    tokens.extend((0..own + out).map(|i| 1_000_000 * id as u32 + i));
    NewRequest {
        id,
        prompt_len: shared + own,
        max_output: out,
        block_hashes: block_hashes(chain_seed("m"), &tokens, bs),
        arrival,
    }
}

/// Runs until idle; returns (events with their time, final time).
fn run(e: &mut Engine, mut now: f64) -> (Vec<(f64, TokenEvent)>, f64) {
    let mut all = Vec::new();
    let mut buf = Vec::new();
    let mut steps = 0;
    while let Some(step) = e.schedule() {
        now += step.duration_s;
        e.complete_step(now, &mut buf);
        all.extend(buf.drain(..).map(|ev| (now, ev)));
        steps += 1;
        assert!(steps < 100_000, "engine does not make progress");
    }
    (all, now)
}

#[test]
fn second_request_with_same_prefix_hits_the_cache_and_is_faster() {
    let mut e = Engine::new(cfg(1000, 16, 8192, 256));
    e.add_request(req(1, 4096, 100, 4, 16, 0.0)).unwrap();
    let (ev1, t1) = run(&mut e, 0.0);
    e.add_request(req(2, 4096, 100, 4, 16, t1)).unwrap();
    let (ev2, _) = run(&mut e, t1);
    assert_eq!(ev1[0].1.cached_tokens, 0);
    assert_eq!(ev2[0].1.cached_tokens, 4096);
    let ttft1 = ev1[0].0;
    let ttft2 = ev2[0].0 - t1;
    assert!(ttft2 * 3.0 < ttft1, "warm {ttft2} vs cold {ttft1}");
    assert_eq!(e.stats().prefix_cache_hits, 4096);
    assert_eq!(e.stats().prefix_cache_queries, 2 * 4196);
    assert_eq!(e.stats().finished, 2);
    assert_eq!(e.stats().generation_tokens, 8);
    assert_eq!(
        e.kv().num_free(),
        1000,
        "finished requests unpin every block"
    );
}

#[test]
fn full_hit_still_computes_the_last_token() {
    let mut e = Engine::new(cfg(100, 16, 8192, 256));
    e.add_request(req(1, 64, 0, 1, 16, 0.0)).unwrap();
    run(&mut e, 0.0);
    e.add_request(req(2, 64, 0, 1, 16, 0.0)).unwrap();
    let (ev, _) = run(&mut e, 0.0);
    assert_eq!(ev[0].1.cached_tokens, 48);
}

#[test]
fn chunked_prefill_splits_a_long_prompt_over_steps() {
    let mut e = Engine::new(cfg(100, 16, 32, 256));
    e.add_request(req(1, 0, 100, 2, 16, 0.0)).unwrap();
    let mut steps_before_first = 0;
    let mut buf = Vec::new();
    while buf.is_empty() {
        let step = e.schedule().unwrap();
        assert!(step.num_tokens <= 32);
        e.complete_step(0.0, &mut buf);
        steps_before_first += 1;
    }
    assert_eq!(steps_before_first, 4);
}

#[test]
fn max_num_seqs_bounds_the_running_batch() {
    let mut e = Engine::new(cfg(1000, 16, 8192, 2));
    for id in 1..=5 {
        e.add_request(req(id, 0, 20, 3, 16, 0.0)).unwrap();
    }
    e.schedule().unwrap();
    assert_eq!(e.num_running(), 2);
    assert_eq!(e.num_waiting(), 3);
    let mut buf = Vec::new();
    e.complete_step(0.1, &mut buf);
    let (ev, _) = run(&mut e, 0.1);
    assert_eq!(buf.len() + ev.len(), 15);
}

#[test]
fn running_out_of_blocks_preempts_the_newest_and_everything_still_finishes() {
    // 10 blocks of 4 tokens; two requests of 12 prompt tokens that each grow to 30 tokens.
    let mut e = Engine::new(cfg(10, 4, 8192, 8));
    e.add_request(req(1, 0, 12, 18, 4, 0.0)).unwrap();
    e.add_request(req(2, 0, 12, 18, 4, 0.0)).unwrap();
    let (ev, _) = run(&mut e, 0.0);
    assert!(e.stats().preemptions > 0);
    for id in [1, 2] {
        let idx: Vec<u32> = ev
            .iter()
            .filter(|(_, x)| x.id == id)
            .map(|(_, x)| x.index)
            .collect();
        assert_eq!(
            idx,
            (0..18).collect::<Vec<_>>(),
            "request {id} tokens in order"
        );
    }
    // Request 1 (the older) never lost its place: it finished first.
    let last1 = ev.iter().rposition(|(_, x)| x.id == 1).unwrap();
    let last2 = ev.iter().rposition(|(_, x)| x.id == 2).unwrap();
    assert!(last1 < last2);
    assert_eq!(e.kv().num_free(), 10);
}

#[test]
fn rejects_empty_and_too_long_requests() {
    let mut e = Engine::new(cfg(10, 4, 8192, 8));
    assert_eq!(
        e.add_request(req(1, 0, 0, 1, 4, 0.0)),
        Err(AdmissionError::Empty)
    );
    assert!(matches!(
        e.add_request(req(2, 0, 38, 4, 4, 0.0)),
        Err(AdmissionError::TooLong {
            requested: 42,
            max_model_len: 40
        })
    ));
    assert!(!e.has_work());
}

#[test]
fn abort_releases_blocks() {
    let mut e = Engine::new(cfg(100, 16, 8192, 8));
    e.add_request(req(1, 0, 64, 100, 16, 0.0)).unwrap();
    e.schedule().unwrap();
    e.abort(1);
    let mut buf = Vec::new();
    e.complete_step(1.0, &mut buf);
    assert!(buf.is_empty());
    assert!(!e.has_work());
    assert_eq!(e.kv().num_free(), 100);
    assert_eq!(e.stats().finished, 0);
}

#[test]
fn ttft_histogram_records_first_tokens() {
    let mut e = Engine::new(cfg(100, 16, 8192, 8));
    e.add_request(req(1, 0, 64, 3, 16, 0.0)).unwrap();
    let (ev, _) = run(&mut e, 0.0);
    assert_eq!(e.stats().ttft.count(), 1);
    assert!((e.stats().ttft.sum() - ev[0].0).abs() < 1e-12);
}

#[test]
fn pending_blocks_are_visible_until_computed_and_then_cached() {
    let mut e = Engine::new(cfg(100, 16, 8192, 8));
    let r = req(1, 64, 0, 2, 16, 0.0);
    let hashes = r.block_hashes.clone();
    e.add_request(r).unwrap();
    assert_eq!(e.cached_prefix_blocks(&hashes), 0);
    assert_eq!(e.cached_or_pending_prefix_blocks(&hashes), hashes.len());
    assert_eq!(e.pending_prefill_tokens(), 64);
    run(&mut e, 0.0);
    assert_eq!(e.pending_prefill_tokens(), 0);
    assert_eq!(e.cached_prefix_blocks(&hashes), 4);
    assert!(e.pending.is_empty());
}
