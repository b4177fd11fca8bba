//! Filters. `ready` and `subset` run before every profile (they decide who is a candidate at
//! all); the others are configurable plugins.

pub mod least_kv_cache;
pub mod least_queue;
pub mod ready;
pub mod subset;
