//! A small Redis client for the response cache: RESP2 `GET`, `SET … PX` and `PING` over a few
//! pooled connections. The cache needs nothing else, so no full client library is pulled in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis: {0}")]
    Protocol(String),
}

type Conn = BufReader<TcpStream>;

pub struct Redis {
    addr: String,
    db: u32,
    conns: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

enum Reply {
    Ok,
    Bulk(Option<Vec<u8>>),
    Integer,
}

impl Redis {
    /// `redis://host:port[/db]`; connections are opened on first use and after failures.
    pub fn new(url: &str, pool: usize) -> Result<Self, RedisError> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| RedisError::Protocol(format!("'{url}' is not a redis:// URL")))?;
        let (addr, db) = match rest.split_once('/') {
            Some((a, d)) if !d.is_empty() => (
                a,
                d.parse().map_err(|_| RedisError::Protocol(format!("bad database in '{url}'")))?,
            ),
            Some((a, _)) => (a, 0),
            None => (rest, 0),
        };
        let conns = (0..pool.max(1)).map(|_| Mutex::new(None)).collect();
        Ok(Self { addr: addr.to_owned(), db, conns, next: AtomicUsize::new(0) })
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.call(&[b"PING"]).await.map(|_| ())
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        match self.call(&[b"GET", key.as_bytes()]).await? {
            Reply::Bulk(v) => Ok(v),
            _ => Err(RedisError::Protocol(
                "GET answered with something other than a bulk string".into(),
            )),
        }
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), RedisError> {
        let ms = ttl.as_millis().max(1).to_string();
        self.call(&[b"SET", key.as_bytes(), value, b"PX", ms.as_bytes()]).await.map(|_| ())
    }

    async fn call(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let slot = &self.conns[self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len()];
        let mut guard = slot.lock().await;
        if guard.is_none() {
            let mut conn = BufReader::new(TcpStream::connect(&self.addr).await?);
            if self.db != 0 {
                let db = self.db.to_string();
                exchange(&mut conn, &[b"SELECT", db.as_bytes()]).await?;
            }
            *guard = Some(conn);
        }
        let conn = guard.as_mut().expect("connected above");
        let reply = exchange(conn, args).await;
        if reply.is_err() {
            *guard = None; // reconnect next time
        }
        reply
    }
}

async fn exchange(conn: &mut Conn, args: &[&[u8]]) -> Result<Reply, RedisError> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&out).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let Some((kind, rest)) = line.trim_end().split_at_checked(1) else {
        return Err(RedisError::Protocol("connection closed".into()));
    };
    match kind {
        "+" => Ok(Reply::Ok),
        ":" => Ok(Reply::Integer),
        "-" => Err(RedisError::Protocol(rest.to_owned())),
        "$" => {
            let len: i64 =
                rest.parse().map_err(|_| RedisError::Protocol(format!("bad length '{rest}'")))?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0; len as usize + 2];
            conn.read_exact(&mut buf).await?;
            buf.truncate(len as usize);
            Ok(Reply::Bulk(Some(buf)))
        }
        other => Err(RedisError::Protocol(format!("unexpected reply type '{other}'"))),
    }
}
