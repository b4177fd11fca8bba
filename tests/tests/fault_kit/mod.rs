//! Fault injection for the fault-matrix tests: a TCP relay that can be taken down and brought
//! back on the same port (a service outage as Envoy sees it: refused connections, existing
//! ones reset), a pod that accepts connections and never answers, and real `vllm-sim` pods
//! that can be killed with SIGKILL.
#![allow(dead_code)]

pub mod http_stub;

use infergate_e2e::child::ChildProcess;
use infergate_e2e::paths::workspace_binary;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay on a fixed local port in front of `target`.
pub struct Relay {
    /// The address clients use (stable across [`Relay::down`] / [`Relay::up`]).
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    task: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Connections accepted since start.
    pub accepted: Arc<AtomicU64>,
}

impl Relay {
    /// Starts relaying a free port to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let mut r = Self {
            addr,
            target: Arc::new(Mutex::new(target)),
            task: None,
            conns: Arc::new(Mutex::new(Vec::new())),
            accepted: Arc::new(AtomicU64::new(0)),
        };
        r.serve(l);
        Ok(r)
    }

    fn serve(&mut self, l: TcpListener) {
        let target = self.target.clone();
        let conns = self.conns.clone();
        let accepted = self.accepted.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut down, _)) = l.accept().await {
                accepted.fetch_add(1, Ordering::Relaxed);
                let to = *target.lock().unwrap();
                let h = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                conns.lock().unwrap().push(h);
            }
        }));
    }

    /// Takes the service down: the port refuses connections and open ones are cut.
    pub fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Brings it back on the same port, relaying to `target` from now on.
    pub async fn up(&mut self, target: SocketAddr) -> anyhow::Result<()> {
        *self.target.lock().unwrap() = target;
        // The aborted listener task may take a moment to release the port.
        let mut last = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.serve(l);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(anyhow::anyhow!("rebinding {}: {last:?}", self.addr))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.down();
    }
}

/// A "pod" that accepts connections, reads what it is sent and never answers.
pub struct SilentPod {
    /// Its address.
    pub addr: SocketAddr,
    /// Connections accepted.
    pub accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl SilentPod {
    /// Starts one on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let a = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::Relaxed);
                held.push(tokio::spawn(async move {
                    let mut s = s;
                    let mut sink = tokio::io::sink();
                    let _ = tokio::io::copy(&mut s, &mut sink).await;
                    // Keep the socket open (never answer) until the peer goes away.
                    std::future::pending::<()>().await;
                }));
            }
        });
        Ok(Self {
            addr,
            accepted,
            task,
        })
    }
}

impl Drop for SilentPod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real `vllm-sim` pod (the workspace binary) named `name` on `port` (0: any free port).
pub async fn sim_pod(
    name: &str,
    port: u16,
    extra: &[&str],
) -> anyhow::Result<(ChildProcess, SocketAddr)> {
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--name",
        name,
        "--model",
        "Qwen/Qwen3-0.6B",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let (child, addr) =
        ChildProcess::spawn(name, &workspace_binary("vllm-sim")?, &args, "listening on").await?;
    Ok((child, addr.parse()?))
}

/// SIGKILL to `pid` (the process gets no chance to finish anything).
pub fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}
