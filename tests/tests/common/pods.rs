//! Model-server pods and host-shim over them, as most routing suites start them.

use super::MODEL;
use infergate_e2e::child::HostShim;
use infergate_e2e::upstream::Upstream;
use std::time::Duration;

/// `n` recording upstream pods of [`MODEL`], named `pod-1` … `pod-<n>`.
pub async fn pods(n: usize) -> anyhow::Result<Vec<Upstream>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(Upstream::start(&format!("pod-{}", i + 1), MODEL).await?);
    }
    Ok(out)
}

/// The pods' `ip:port` endpoints, in order.
pub fn endpoints(pods: &[Upstream]) -> Vec<String> {
    pods.iter().map(|p| p.addr.to_string()).collect()
}

/// host-shim (the workspace binary) over the static list `endpoints`, once it has scraped
/// every one of them (an error after 10 s).
pub async fn shim_over(endpoints: &[String]) -> anyhow::Result<HostShim> {
    let shim = HostShim::start(endpoints).await?;
    shim.wait_ready(endpoints.len(), Duration::from_secs(10))
        .await?;
    Ok(shim)
}
