//! A rate limit service for tests: Envoy's RLS v3 `ShouldRateLimit`, counting in a real Redis
//! so several Envoys share one budget.
//!
//! Limits come from the ratelimit plugin's own configuration, the way Kuadrant's operator
//! derives Limitador limits from a RateLimitPolicy: a descriptor `[("limit", name), ("k0", v0),
//! …]` counts against every rate of limit `name`, keyed by its values. Counting follows
//! Limitador's Redis storage (a counter per key, `INCRBY`, expiring one window after its first
//! hit), and one Lua script checks every counter of a request and increments all or none.
//! Answers carry descriptor statuses and, like Limitador started with `--rate-limit-headers
//! DRAFT_VERSION_03`, `X-RateLimit-*` in `response_headers_to_add`.
//!
//! (The `limitador` crate itself was the first choice, but its published versions 0.12–0.14 do
//! not compile with Redis storage unless RocksDB disk storage is built too — `storage/keys.rs`
//! calls a module gated on `disk_storage` — and building RocksDB from source does not fit CI.)

use crate::redis::{RedisClient, Reply};
use anyhow::Result;
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit::Unit, Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use infergate_core::ratelimit::config::Limit;
use infergate_core::ratelimit::RateLimitConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// KEYS: counters; ARGV[1]: hits; ARGV[2i], ARGV[2i+1]: limit and window (ms) of KEYS[i].
/// Returns per key `{over, value, pttl}`; increments only if no key would go over.
const CHECK_AND_INCR: &str = r#"
local hits = tonumber(ARGV[1])
local over = {}
local any = false
for i = 1, #KEYS do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0')
  if v + hits > tonumber(ARGV[2 * i]) then over[i] = 1; any = true end
end
local out = {}
for i = 1, #KEYS do
  local v
  if any then
    v = tonumber(redis.call('GET', KEYS[i]) or '0')
  else
    v = redis.call('INCRBY', KEYS[i], hits)
    if v == hits then redis.call('PEXPIRE', KEYS[i], ARGV[2 * i + 1]) end
  end
  out[i] = {over[i] or 0, v, redis.call('PTTL', KEYS[i])}
end
return out
"#;

struct Service {
    domain: String,
    limits: Vec<Limit>,
    redis: Arc<Mutex<RedisClient>>,
    calls: Arc<AtomicU64>,
}

/// One counter touched by a request.
struct Counter {
    descriptor: usize,
    /// The limit's name.
    name: String,
    key: String,
    limit: u64,
    window_ms: u64,
}

impl Service {
    fn counters(&self, req: &RateLimitRequest) -> Vec<Counter> {
        let mut out = Vec::new();
        for (i, d) in req.descriptors.iter().enumerate() {
            let Some(name) = d
                .entries
                .iter()
                .find(|e| e.key == "limit")
                .map(|e| &e.value)
            else {
                continue;
            };
            let Some(limit) = self.limits.iter().find(|l| &l.name == name) else {
                continue;
            };
            let values: Vec<&str> = d
                .entries
                .iter()
                .filter(|e| e.key != "limit")
                .map(|e| e.value.as_str())
                .collect();
            for (j, (max, window_ms)) in limit.rates.iter().enumerate() {
                out.push(Counter {
                    descriptor: i,
                    name: name.clone(),
                    key: format!("{}|{name}|{j}|{}", self.domain, values.join("\u{1f}")),
                    limit: *max,
                    window_ms: *window_ms,
                });
            }
        }
        out
    }
}

fn int(r: &Reply) -> i64 {
    match r {
        Reply::Int(i) => *i,
        _ => 0,
    }
}

fn unit_of(window_ms: u64) -> Option<Unit> {
    match window_ms {
        1_000 => Some(Unit::Second),
        60_000 => Some(Unit::Minute),
        3_600_000 => Some(Unit::Hour),
        86_400_000 => Some(Unit::Day),
        _ => None,
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let req = request.into_inner();
        if req.domain != self.domain {
            return Err(tonic::Status::invalid_argument(format!(
                "unknown domain {}",
                req.domain
            )));
        }
        let hits = u64::from(req.hits_addend.max(1));
        let counters = self.counters(&req);
        let redis = self.redis.clone();
        let args: Vec<Vec<u8>> = {
            let mut a = vec![
                b"EVAL".to_vec(),
                CHECK_AND_INCR.as_bytes().to_vec(),
                counters.len().to_string().into_bytes(),
            ];
            a.extend(counters.iter().map(|c| c.key.clone().into_bytes()));
            a.push(hits.to_string().into_bytes());
            for c in &counters {
                a.push(c.limit.to_string().into_bytes());
                a.push(c.window_ms.to_string().into_bytes());
            }
            a
        };
        let reply = if counters.is_empty() {
            Reply::Array(Vec::new())
        } else {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                redis
                    .lock()
                    .map_err(|_| anyhow::anyhow!("redis connection poisoned"))?
                    .command(&refs)
            })
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        };
        let rows = match reply {
            Reply::Array(rows) => rows,
            other => return Err(tonic::Status::internal(format!("redis replied {other:?}"))),
        };
        let mut statuses: Vec<DescriptorStatus> = req
            .descriptors
            .iter()
            .map(|_| DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            })
            .collect();
        let mut tightest: Vec<Option<u64>> = vec![None; statuses.len()];
        // (remaining, limit, window s, reset s, name) of every counter, for the headers.
        let mut seen: Vec<(u64, u64, u64, u64, &str)> = Vec::new();
        for (c, row) in counters.iter().zip(&rows) {
            let Reply::Array(f) = row else { continue };
            let (over, value, pttl) = (
                f.first().map_or(0, int),
                f.get(1).map_or(0, int),
                f.get(2).map_or(-1, int),
            );
            let remaining = c.limit.saturating_sub(u64::try_from(value).unwrap_or(0));
            let reset = if pttl > 0 {
                u64::try_from((pttl + 999) / 1000).unwrap_or(0)
            } else {
                c.window_ms / 1000
            };
            seen.push((remaining, c.limit, c.window_ms / 1000, reset, &c.name));
            let Some(s) = statuses.get_mut(c.descriptor) else {
                continue;
            };
            if over == 1 {
                s.code = Code::OverLimit as i32;
            }
            if tightest[c.descriptor].is_none_or(|t| remaining < t) {
                tightest[c.descriptor] = Some(remaining);
                s.limit_remaining = u32::try_from(remaining).unwrap_or(u32::MAX);
                s.current_limit = unit_of(c.window_ms).map(|u| RateLimit {
                    requests_per_unit: u32::try_from(c.limit).unwrap_or(u32::MAX),
                    unit: u as i32,
                    ..Default::default()
                });
                s.duration_until_reset = Some(envoy_types::pb::google::protobuf::Duration {
                    seconds: if pttl > 0 {
                        (pttl + 999) / 1000
                    } else {
                        (c.window_ms / 1000) as i64
                    },
                    nanos: 0,
                });
            }
        }
        let overall = if statuses.iter().any(|s| s.code == Code::OverLimit as i32) {
            Code::OverLimit
        } else {
            Code::Ok
        };
        Ok(tonic::Response::new(RateLimitResponse {
            overall_code: overall as i32,
            statuses,
            response_headers_to_add: draft03_headers(seen),
            ..Default::default()
        }))
    }
}

/// `X-RateLimit-*` as Limitador's `--rate-limit-headers DRAFT_VERSION_03` writes them
/// (`CheckResult::response_header`): counters sorted by remaining; the tightest one's limit
/// followed by `, <limit>;w=<window s>;name="<name>"` per counter, its remaining and its reset
/// in seconds.
fn draft03_headers(mut counters: Vec<(u64, u64, u64, u64, &str)>) -> Vec<HeaderValue> {
    counters.sort_by_key(|c| c.0);
    let Some(&(remaining, limit, _, reset, _)) = counters.first() else {
        return Vec::new();
    };
    let mut all = limit.to_string();
    for (_, l, w, _, name) in &counters {
        all.push_str(&format!(", {l};w={w};name=\"{}\"", name.replace('"', "'")));
    }
    [
        ("X-RateLimit-Limit", all),
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", reset.to_string()),
    ]
    .into_iter()
    .map(|(key, value)| HeaderValue {
        key: key.to_string(),
        value,
        ..Default::default()
    })
    .collect()
}

/// A running rate limit service; stops when dropped.
pub struct RlsServer {
    /// Its gRPC address.
    pub addr: SocketAddr,
    calls: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RlsServer {
    /// Serves `config`'s limits for `domain`, counting in the Redis at `socket`.
    pub async fn start(domain: &str, config: &RateLimitConfig, socket: PathBuf) -> Result<Self> {
        let client = tokio::task::spawn_blocking(move || RedisClient::connect(&socket)).await??;
        let calls = Arc::new(AtomicU64::new(0));
        let service = Service {
            domain: domain.to_string(),
            limits: config.compile(),
            redis: Arc::new(Mutex::new(client)),
            calls: calls.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            let r = l.accept().await.map(|(s, _)| s);
            Some((r, l))
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(RateLimitServiceServer::new(service))
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Self { addr, calls, task })
    }

    /// `ShouldRateLimit` calls served so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl Drop for RlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
