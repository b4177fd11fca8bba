//! Time as the scheduler sees it.
//!
//! The scheduler never reads a wall clock: every call takes `now` as a [`Timestamp`], a
//! [`Duration`] since an origin the caller chooses. The live binary uses [`WallClock`]; the
//! routing benchmark drives the same code with a virtual clock.

use std::time::{Duration, Instant};

/// A point in time, as the duration since the caller's clock origin.
pub type Timestamp = Duration;

/// A monotonic clock whose origin is its creation.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    origin: Instant,
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl WallClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// Time since the origin.
    pub fn now(&self) -> Timestamp {
        self.origin.elapsed()
    }
}
