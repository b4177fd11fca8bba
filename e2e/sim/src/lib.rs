//! The vLLM simulator and the offline routing benchmark.
//!
//! - [`tokenizer`], [`block_hash`], [`kv_cache`], [`cost`], [`engine`]: the engine model, shared
//!   by the HTTP pod (`vllm-sim`) and the discrete-event benchmark (`bench-routing`).

pub mod block_hash;
pub mod cost;
pub mod kv_cache;
pub mod tokenizer;
