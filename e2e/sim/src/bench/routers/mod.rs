//! The built-in routing policies, one per file behind [`Router`].

mod host_shim;
mod least_queue;
mod oracle;
mod random;
mod round_robin;

pub use host_shim::HostShimRouter;
pub use least_queue::LeastQueue;
pub use oracle::Oracle;
pub use random::RandomPick;
pub use round_robin::RoundRobin;

use crate::bench::router::Router;

/// Names accepted by [`by_name`], in report order.
pub const NAMES: [&str; 5] = [
    "round-robin",
    "random",
    "least-queue",
    "host-shim",
    "oracle",
];

/// A fresh router called `name`, seeded with `seed` where it draws random numbers.
/// `host-shim:FILE` is host-shim's scheduler running the EndpointPickerConfig in FILE (named
/// `host-shim-<file stem>` in reports); a file that cannot be read or parsed is reported on
/// stderr and gives `None`.
pub fn by_name(name: &str, seed: u64) -> Option<Box<dyn Router>> {
    if let Some(path) = name.strip_prefix("host-shim:") {
        return match HostShimRouter::from_file(std::path::Path::new(path), seed) {
            Ok(r) => Some(Box::new(r)),
            Err(e) => {
                eprintln!("router {name}: {e}");
                None
            }
        };
    }
    Some(match name {
        "round-robin" => Box::new(RoundRobin::default()),
        "random" => Box::new(RandomPick::new(seed)),
        "least-queue" => Box::new(LeastQueue::default()),
        "oracle" => Box::new(Oracle),
        "host-shim" => Box::new(HostShimRouter::new(seed)),
        _ => return None,
    })
}
