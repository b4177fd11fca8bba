//! A real Redis server (Debian's `redis-server`) on a Unix socket in a temporary directory, for
//! tests whose counters must be shared (the global rate limit service), and a minimal RESP
//! client for it (the commands the rate limit service needs; no client library).

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`; killed when dropped.
pub struct RedisServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` without persistence, listening only on a Unix socket.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("infergate-redis-")
            .tempdir()?;
        let child = Self::spawn(dir.path())?;
        Ok(Self { child, dir })
    }

    /// Kills the server (SIGKILL): its socket refuses connections, its counters are gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts a fresh, empty server on the same socket.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.child = Self::spawn(self.dir.path())?;
        Ok(())
    }

    fn spawn(dir: &std::path::Path) -> Result<Child> {
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (make setup installs Debian's redis-server)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!("redis-server did not create {}", socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `:42`.
    Int(i64),
    /// `$…` (`None` for the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*…`.
    Array(Vec<Reply>),
}

/// One connection speaking RESP2 over the Unix socket.
pub struct RedisClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl RedisClient {
    /// Connects to the server's socket.
    pub fn connect(socket: &std::path::Path) -> Result<Self> {
        let writer = UnixStream::connect(socket)
            .with_context(|| format!("connecting to redis at {}", socket.display()))?;
        writer.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Self {
            reader: BufReader::new(writer.try_clone()?),
            writer,
        })
    }

    /// Runs one command; a Redis error reply becomes an `Err`.
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out)?;
        self.read_reply()
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if !line.ends_with("\r\n") {
            bail!("redis: truncated reply line {line:?}");
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let line = self.read_line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        Ok(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => bail!("redis error: {rest}"),
            ":" => Reply::Int(rest.parse()?),
            "$" => {
                let n: i64 = rest.parse()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0u8; usize::try_from(n)? + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(buf.len() - 2);
                    Reply::Bulk(Some(buf))
                }
            }
            "*" => {
                let n: i64 = rest.parse()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.read_reply()?);
                }
                Reply::Array(items)
            }
            _ => bail!("redis: unexpected reply {line:?}"),
        })
    }
}
