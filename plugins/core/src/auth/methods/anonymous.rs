//! `anonymous`: access without a credential where every configured condition holds (path
//! prefix, host, client address range).

use super::{AuthMethod, Input};
use crate::auth::cidr::{self, Cidr};
use crate::auth::config::AnonymousConfig;
use crate::auth::decision::Step;
use crate::auth::Identity;
use crate::config::ConfigError;

/// Every source range must parse.
pub(crate) fn validate(
    c: &AnonymousConfig,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    for (j, range) in c.source_cidrs.iter().enumerate() {
        if Cidr::parse(range).is_none() {
            return Err(ConfigError::new(
                at(&format!("anonymous.sourceCidrs[{j}]")),
                "not an address range like `10.0.0.0/8` or `fd00::/8`",
            ));
        }
    }
    Ok(())
}

/// A compiled `anonymous` method.
pub struct Anonymous {
    conditions: AnonymousConfig,
    cidrs: Vec<Cidr>,
    identity: Identity,
}

impl Anonymous {
    /// Compiles a validated configuration.
    pub fn new(c: AnonymousConfig) -> Self {
        let identity = c.identity.clone().unwrap_or_else(|| Identity {
            userid: "anonymous".to_string(),
            ..Identity::default()
        });
        let cidrs = c
            .source_cidrs
            .iter()
            .filter_map(|r| Cidr::parse(r))
            .collect();
        Self {
            conditions: c,
            cidrs,
            identity,
        }
    }

    fn allowed(&self, input: &Input<'_>) -> bool {
        let c = &self.conditions;
        let req = input.req;
        let path_ok = c.path_prefixes.is_empty() || {
            let path = req.path();
            c.path_prefixes.iter().any(|p| path.starts_with(p.as_str()))
        };
        let host_ok = c.hosts.is_empty() || {
            let host = req.host();
            let host = crate::headers::strip_port(&host);
            c.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        };
        let source_ok = c.source_cidrs.is_empty()
            || req
                .source_address()
                .and_then(|a| cidr::ip_of(&a))
                .is_some_and(|ip| self.cidrs.iter().any(|c| c.contains(ip)));
        path_ok && host_ok && source_ok
    }
}

impl AuthMethod for Anonymous {
    fn reads_credential(&self) -> bool {
        false
    }

    fn authenticate(&self, input: &Input<'_>) -> Step {
        if self.allowed(input) {
            Step::Accept {
                identity: self.identity.clone(),
                object: None,
            }
        } else {
            Step::Skip
        }
    }
}
