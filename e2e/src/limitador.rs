//! Kuadrant's Limitador as the global rate limit service: its limits file, generated from the
//! ratelimit plugin's own configuration, and a supervised `limitador-server` counting in Redis.
//!
//! The plugin sends, per call, one RLS descriptor per applicable limit:
//! `[("limit", name), ("k0", v0), ("k1", v1), …]` (the counter attributes' values in order),
//! and `hits_addend` for the units charged. Limitador (v2) evaluates each limit's CEL
//! `conditions` and `variables` against `descriptors`, the request's descriptors as a list of
//! maps. Which index a limit's descriptor has depends on which other limits applied to the
//! same call, so every expression looks at each possible index in turn, guarded by `size()`:
//! an index out of range is an evaluation error that Limitador 2.4 does not tolerate in a
//! condition (`Limit::applies` unwraps it). Comprehensions (`descriptors.exists(d, …)`) are not
//! usable: Limitador treats the loop variable as an unbound context variable and never applies
//! the limit. Each rate of a limit becomes one Limitador limit (`max_value`, `seconds`); the
//! counter a request touches is the same whatever index its descriptor had, because Limitador
//! keys counters by the limit's expressions and the variables' values.
//!
//! Kuadrant's own operator writes a different shape (one merged descriptor, conditions
//! `descriptors[0]["limit.<name>__<hash>"] == "1"`, variables `descriptors[0]["<counter>"]`);
//! limits it generates from a RateLimitPolicy do not match what this plugin sends, so a
//! deployment counting in Limitador loads these limits instead (see the README).

use anyhow::{bail, Context, Result};
use infergate_core::ratelimit::RateLimitConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// One entry of Limitador's limits file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitadorLimit {
    /// The RLS domain the limit belongs to.
    pub namespace: String,
    /// The plugin's limit name (reported by Limitador when it limits).
    pub name: String,
    /// Units allowed per window.
    pub max_value: u64,
    /// The window.
    pub seconds: u64,
    /// CEL predicates, all of which must hold.
    pub conditions: Vec<String>,
    /// CEL expressions whose values key the counter.
    pub variables: Vec<String>,
}

/// `true` when `descriptors[i]` exists and is limit `name`'s descriptor.
fn at(i: usize, name: &str) -> String {
    format!(r#"size(descriptors) > {i} && descriptors[{i}]["limit"] == "{name}""#)
}

/// The Limitador limits for `config`'s limits in `domain`. Fails on a configuration the
/// plugin itself would reject in global mode (a window that is not whole seconds).
pub fn limits(domain: &str, config: &RateLimitConfig) -> Result<Vec<LimitadorLimit>> {
    let compiled = config.compile();
    if compiled.len() != config.limits.len() {
        bail!("the ratelimit configuration has invalid limits; validate it first");
    }
    // A call carries at most one descriptor per limit.
    let slots = compiled.len();
    let mut out = Vec::new();
    for limit in &compiled {
        let name = &limit.name;
        let conditions = vec![if slots == 1 {
            format!(r#"descriptors[0]["limit"] == "{name}""#)
        } else {
            (0..slots)
                .map(|i| format!("({})", at(i, name)))
                .collect::<Vec<_>>()
                .join(" || ")
        }];
        let variables = (0..limit.counters.len())
            .map(|k| {
                if slots == 1 {
                    return format!(r#"descriptors[0]["k{k}"]"#);
                }
                // The value at the first index holding this limit's descriptor.
                (0..slots).rev().fold(r#""""#.to_string(), |otherwise, i| {
                    format!(
                        r#"({}) ? descriptors[{i}]["k{k}"] : ({otherwise})"#,
                        at(i, name)
                    )
                })
            })
            .collect::<Vec<_>>();
        // Limitador tells limits apart by namespace, window, conditions and variables (not
        // by max_value): two rates with one window keep the tighter.
        let mut by_window: BTreeMap<u64, u64> = BTreeMap::new();
        for &(max, window_ms) in &limit.rates {
            if window_ms % 1000 != 0 || window_ms == 0 {
                bail!("limit `{name}`: window {window_ms} ms is not whole seconds");
            }
            let e = by_window.entry(window_ms / 1000).or_insert(max);
            *e = (*e).min(max);
        }
        for (seconds, max_value) in by_window {
            out.push(LimitadorLimit {
                namespace: domain.to_string(),
                name: name.clone(),
                max_value,
                seconds,
                conditions: conditions.clone(),
                variables: variables.clone(),
            });
        }
    }
    Ok(out)
}

/// Limitador's limits file (YAML) for `config`'s limits in `domain`.
pub fn limits_yaml(domain: &str, config: &RateLimitConfig) -> Result<String> {
    Ok(serde_yaml::to_string(&limits(domain, config)?)?)
}

/// A free loopback port (bound, then released).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running `limitador-server` with Redis storage; killed when dropped.
pub struct LimitadorServer {
    /// Its RLS (gRPC) address.
    pub addr: SocketAddr,
    /// Its HTTP API (`/status`, `/metrics`, `/counters/{namespace}`).
    pub http: SocketAddr,
    bin: PathBuf,
    redis_url: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl LimitadorServer {
    /// Starts `bin` serving `config`'s limits for `domain`, counting in the Redis listening
    /// on the Unix socket `redis_socket`.
    pub async fn start(
        bin: &Path,
        domain: &str,
        config: &RateLimitConfig,
        redis_socket: &Path,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("infergate-limitador-")
            .tempdir()?;
        std::fs::write(dir.path().join("limits.yaml"), limits_yaml(domain, config)?)?;
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            http: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            bin: bin.to_path_buf(),
            redis_url: format!("redis+unix://{}", redis_socket.display()),
            dir,
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// The limits file it serves.
    pub fn limits_file(&self) -> PathBuf {
        self.dir.path().join("limits.yaml")
    }

    /// Its log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("limitador.log")).unwrap_or_default()
    }

    async fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("limitador.log"))?;
        let mut child = Command::new(&self.bin)
            .arg("--rls-ip")
            .arg("127.0.0.1")
            .arg("--rls-port")
            .arg(self.addr.port().to_string())
            .arg("--http-ip")
            .arg("127.0.0.1")
            .arg("--http-port")
            .arg(self.http.port().to_string())
            // X-RateLimit-{Limit,Remaining,Reset} in `response_headers_to_add` (its answers
            // carry no descriptor statuses); the ratelimit plugin passes them on.
            .arg("--rate-limit-headers")
            .arg("DRAFT_VERSION_03")
            .arg(self.limits_file())
            .arg("redis")
            .arg(&self.redis_url)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let client = reqwest::Client::new();
        let status = format!("http://{}/status", self.http);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = child.try_wait()? {
                bail!("limitador-server exited ({exit}):\n{}", self.log());
            }
            let http_up = client
                .get(&status)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if http_up && tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("limitador-server not ready within 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts it again on the same ports with the same limits.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        self.spawn().await
    }

    async fn get(&self, path: &str) -> Result<String> {
        let r = reqwest::get(format!("http://{}{path}", self.http)).await?;
        if !r.status().is_success() {
            bail!("limitador {path} answered {}", r.status());
        }
        Ok(r.text().await?)
    }

    /// `ShouldRateLimit` calls it answered from its counters (authorized plus limited, from
    /// its Prometheus metrics; calls failed for storage errors are not counted).
    pub async fn calls(&self) -> Result<u64> {
        let text = self.get("/metrics").await?;
        let mut total = 0u64;
        for line in text.lines() {
            let Some(metric) = line.split(['{', ' ']).next() else {
                continue;
            };
            if metric == "authorized_calls" || metric == "limited_calls" {
                let value = line.rsplit(' ').next().unwrap_or("0");
                total += value.parse::<f64>().unwrap_or(0.0) as u64;
            }
        }
        Ok(total)
    }

    /// Units used so far in the current window of each counter of limit `name` in
    /// `namespace`: `max_value − remaining`, from Limitador's `/counters` API.
    pub async fn used(&self, namespace: &str, name: &str) -> Result<Vec<u64>> {
        let counters: serde_json::Value =
            serde_json::from_str(&self.get(&format!("/counters/{namespace}")).await?)?;
        let mut out = Vec::new();
        for c in counters.as_array().context("counters: not a list")? {
            if c["limit"]["name"].as_str() != Some(name) {
                continue;
            }
            let max = c["limit"]["max_value"]
                .as_u64()
                .context("counter without max_value")?;
            let remaining = c["remaining"].as_u64().unwrap_or(max);
            // Limitador 2.4 reports `max_value − value` wrapped around u64 once a counter
            // went past its maximum (concurrent calls can take it there), so subtract back
            // the same way.
            out.push(max.wrapping_sub(remaining));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infergate_core::config::parse;

    fn config(json: &str) -> RateLimitConfig {
        parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn one_limit_reads_the_first_descriptor() {
        let c = config(
            r#"{"limits":[{"name":"per-user","rates":[{"limit":10,"window":"1h"},{"limit":2,"window":"1s"}],
                 "counters":["auth.identity.userid"]}]}"#,
        );
        let l = limits("infergate", &c).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].seconds, l[0].max_value), (1, 2));
        assert_eq!((l[1].seconds, l[1].max_value), (3600, 10));
        assert_eq!(
            l[1].conditions,
            [r#"descriptors[0]["limit"] == "per-user""#]
        );
        assert_eq!(l[1].variables, [r#"descriptors[0]["k0"]"#]);
        let yaml = limits_yaml("infergate", &c).unwrap();
        assert!(yaml.contains("namespace: infergate"), "{yaml}");
    }

    #[test]
    fn several_limits_look_at_every_index_and_keep_the_tighter_rate_per_window() {
        let c = config(
            r#"{"limits":[{"name":"a","rates":[{"limit":5,"window":"1m"},{"limit":3,"window":"60s"}]},
                          {"name":"b","rates":[{"limit":9,"window":"1h"}],"counters":["auth.identity.userid"]}]}"#,
        );
        let l = limits("ig", &c).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            (l[0].name.as_str(), l[0].max_value, l[0].seconds),
            ("a", 3, 60)
        );
        assert!(l[0].variables.is_empty());
        assert_eq!(
            l[1].conditions,
            [concat!(
                r#"(size(descriptors) > 0 && descriptors[0]["limit"] == "b") || "#,
                r#"(size(descriptors) > 1 && descriptors[1]["limit"] == "b")"#
            )]
        );
        assert_eq!(
            l[1].variables,
            [concat!(
                r#"(size(descriptors) > 0 && descriptors[0]["limit"] == "b") ? descriptors[0]["k0"] : "#,
                r#"((size(descriptors) > 1 && descriptors[1]["limit"] == "b") ? descriptors[1]["k0"] : (""))"#
            )]
        );
    }

    #[test]
    fn sub_second_windows_are_refused() {
        let c = config(r#"{"limits":[{"name":"a","rates":[{"limit":5,"window":"1500ms"}]}]}"#);
        let err = limits("ig", &c).unwrap_err().to_string();
        assert!(err.contains("whole seconds"), "{err}");
    }
}
