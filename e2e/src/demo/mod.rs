//! The local stack behind `make demo`: the guide's deployment on loopback.

pub mod config;
pub mod launcher;

pub use config::DemoConfig;
pub use launcher::{Stack, StackOptions};
