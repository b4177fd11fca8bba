//! The vLLM simulator and the offline routing benchmark.
//!
//! - [`tokenizer`], [`block_hash`], [`kv_cache`], [`cost`], [`engine`]: the engine model, shared
//!   by the HTTP pod (`vllm-sim`) and the discrete-event benchmark (`bench-routing`).
//! - [`bench`]: workloads, the router trait and built-in routers, the virtual-time cluster and
//!   the report.
//! - [`server`]: the OpenAI-compatible HTTP pod around one engine.

pub mod bench;
pub mod block_hash;
pub mod cost;
pub mod engine;
pub mod kv_cache;
pub mod server;
pub mod tokenizer;
