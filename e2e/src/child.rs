//! Child processes (host-shim, simulated pods): started, their announced address read from
//! stdout, stopped with SIGTERM then SIGKILL (or killed when dropped).

use crate::paths;
use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A supervised child process.
pub struct ChildProcess {
    /// Short name for messages.
    pub name: String,
    child: Child,
}

impl ChildProcess {
    /// Starts `program args…` and waits (up to 30 s) for a stdout line starting with
    /// `announce`, returning the rest of that line (e.g. the bound address). Later output is
    /// drained to stderr prefixed with the child's name.
    pub async fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        announce: &str,
    ) -> Result<(Self, String)> {
        let (child, mut values) = Self::spawn_announcing(name, program, args, &[announce]).await?;
        Ok((child, values.pop().unwrap_or_default()))
    }

    /// Like [`Self::spawn`], waiting for one line per prefix in `announces` (in any order);
    /// returns the rest of each line, in the order of `announces`.
    pub async fn spawn_announcing(
        name: &str,
        program: &Path,
        args: &[String],
        announces: &[&str],
    ) -> Result<(Self, Vec<String>)> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut values: Vec<Option<String>> = vec![None; announces.len()];
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while values.iter().any(Option::is_none) {
                let Some(line) = lines.next_line().await? else {
                    return Ok::<_, std::io::Error>(false);
                };
                for (i, a) in announces.iter().enumerate() {
                    if let Some(rest) = line.strip_prefix(a) {
                        values[i] = Some(rest.trim().to_string());
                    }
                }
            }
            Ok(true)
        })
        .await;
        match found {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => bail!("{name} exited before announcing {announces:?}"),
            Ok(Err(e)) => bail!("{name}: reading its output: {e}"),
            Err(_) => bail!("{name} did not announce {announces:?} within 30 s"),
        }
        let prefix = name.to_string();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{prefix}] {line}");
            }
        });
        Ok((
            Self {
                name: name.to_string(),
                child,
            },
            values.into_iter().map(Option::unwrap_or_default).collect(),
        ))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: plain kill(2) on a pid we spawned and still own (not yet reaped).
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            eprintln!("{} did not stop within {grace:?}; killing it", self.name);
            let _ = self.child.kill().await;
        }
    }
}

/// A running host-shim sidecar.
pub struct HostShim {
    /// The process.
    pub process: ChildProcess,
    /// Pick API, `/metrics`, `/healthz`, `/debug/state`.
    pub http: SocketAddr,
    /// ext_proc Endpoint Picker and gRPC health.
    pub grpc: SocketAddr,
}

impl HostShim {
    /// Starts the built `host-shim` over `endpoints` on free loopback ports.
    pub async fn start(endpoints: &[String]) -> Result<Self> {
        Self::start_with(endpoints, &[]).await
    }

    /// Starts it with extra command-line arguments.
    pub async fn start_with(endpoints: &[String], extra: &[&str]) -> Result<Self> {
        let bin = paths::workspace_binary("host-shim")?;
        let mut args = vec![
            "--endpoints".to_string(),
            endpoints.join(","),
            "--http-addr".to_string(),
            "127.0.0.1:0".to_string(),
            "--grpc-addr".to_string(),
            "127.0.0.1:0".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let (process, addrs) = ChildProcess::spawn_announcing(
            "host-shim",
            &bin,
            &args,
            &["http listening on ", "grpc listening on "],
        )
        .await?;
        let parse = |a: &str| -> Result<SocketAddr> {
            a.parse()
                .with_context(|| format!("host-shim announced `{a}`"))
        };
        Ok(Self {
            process,
            http: parse(addrs.first().map(String::as_str).unwrap_or_default())?,
            grpc: parse(addrs.get(1).map(String::as_str).unwrap_or_default())?,
        })
    }

    /// Waits until host-shim has fresh metrics for `n` endpoints (it answers 503 before).
    pub async fn wait_ready(&self, n: usize, timeout: Duration) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state: serde_json::Value = match client
                .get(format!("http://{}/debug/state", self.http))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            let ready = state["endpoints"]
                .as_array()
                .map(|a| a.iter().filter(|e| e["ready"] == true).count())
                .unwrap_or(0);
            if ready >= n {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("host-shim has fresh metrics for {ready} of {n} endpoints after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
