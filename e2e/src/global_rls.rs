//! The global rate limit service the global-mode tests run against: the project's own test
//! RLS ([`crate::rls`]), or, when `INFERGATE_LIMITADOR_BIN` names a built `limitador-server`,
//! Kuadrant's Limitador with the limits generated from the same configuration
//! ([`crate::limitador`]). Both count in the same real Redis.

use crate::limitador::LimitadorServer;
use crate::redis::{RedisClient, RedisServer, Reply};
use crate::rls::RlsServer;
use anyhow::{bail, Result};
use infergate_core::ratelimit::RateLimitConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The environment variable naming a `limitador-server` binary.
pub const LIMITADOR_BIN_ENV: &str = "INFERGATE_LIMITADOR_BIN";

/// The `limitador-server` to test against, if one was given.
pub fn limitador_bin() -> Option<PathBuf> {
    std::env::var_os(LIMITADOR_BIN_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A running global rate limit service.
pub enum GlobalRls {
    /// The project's test RLS.
    Test(RlsServer),
    /// Kuadrant's Limitador.
    Limitador(Box<LimitadorServer>),
}

impl GlobalRls {
    /// Serves `config`'s limits for `domain`, counting in `redis`: Limitador when
    /// [`LIMITADOR_BIN_ENV`] is set, the test RLS otherwise.
    pub async fn start(
        domain: &str,
        config: &RateLimitConfig,
        redis: &RedisServer,
    ) -> Result<Self> {
        Ok(match limitador_bin() {
            Some(bin) => Self::Limitador(Box::new(
                LimitadorServer::start(&bin, domain, config, &redis.socket()).await?,
            )),
            None => Self::Test(RlsServer::start(domain, config, redis.socket()).await?),
        })
    }

    /// Its gRPC address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Test(s) => s.addr,
            Self::Limitador(s) => s.addr,
        }
    }

    /// Whether this is Limitador.
    pub fn is_limitador(&self) -> bool {
        matches!(self, Self::Limitador(_))
    }

    /// `ShouldRateLimit` calls answered so far.
    pub async fn calls(&self) -> Result<u64> {
        match self {
            Self::Test(s) => Ok(s.calls()),
            Self::Limitador(s) => s.calls().await,
        }
    }

    /// Units used in the current window by each counter of limit `name`.
    pub async fn used(&self, redis: &RedisServer, domain: &str, name: &str) -> Result<Vec<u64>> {
        match self {
            Self::Limitador(s) => s.used(domain, name).await,
            Self::Test(_) => {
                let mut client = RedisClient::connect(&redis.socket())?;
                let pattern = format!("{domain}|{name}|*");
                let Reply::Array(keys) = client.command(&[b"KEYS", pattern.as_bytes()])? else {
                    bail!("KEYS answered something else");
                };
                let mut out = Vec::new();
                for key in keys {
                    let Reply::Bulk(Some(key)) = key else {
                        bail!("KEYS answered {key:?}");
                    };
                    let Reply::Bulk(Some(count)) = client.command(&[b"GET", &key])? else {
                        bail!("no count for a listed key");
                    };
                    out.push(String::from_utf8(count)?.parse()?);
                }
                Ok(out)
            }
        }
    }
}
