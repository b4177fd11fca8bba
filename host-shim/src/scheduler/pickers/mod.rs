//! Pickers: choose one candidate from the weighted scores.

pub mod max_score;
pub mod prefix_affinity;
pub mod weighted_random;
