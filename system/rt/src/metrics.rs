//! The metrics endpoint's HTTP side: answers `GET /metrics` with the text a render function
//! produces (Prometheus exposition, encoded by `prometheus-client` in the servers), anything
//! else with 404. One request per connection (`Connection: close`), requests capped at 8 KiB,
//! so a scraper or a stray client cannot make the server hold more.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{spawn, Env, Listener};

/// Largest request head read.
const REQUEST_MAX_BYTES: usize = 8 * 1024;

/// Renders the current metrics text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds `addr` and serves `GET /metrics` from `render` until the returned task is aborted.
/// Returns the bound address.
pub async fn serve<E: Env>(
    env: &E,
    addr: &str,
    render: Render,
) -> std::io::Result<(std::net::SocketAddr, crate::task::JoinHandle<()>)> {
    let mut listener = env.bind(addr).await?;
    let local = listener.local_addr()?;
    let task = spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let render = render.clone();
            spawn(async move {
                let _ = answer(stream, render).await;
            });
        }
    });
    Ok((local, task))
}

async fn answer<S>(mut stream: S, render: Render) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_MAX_BYTES {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = std::str::from_utf8(line).unwrap_or_default().split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (status, kind, body) = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render())
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "only GET /metrics is served here\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_are_served_and_other_paths_are_not() {
        let env = crate::RealEnv::default();
        let (addr, task) = serve(&env, "127.0.0.1:0", Arc::new(|| "up 1\n".to_string())).await.unwrap();
        let get = |path: &'static str| async move {
            let mut s = crate::RealEnv::default().connect(&addr.to_string()).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK") && ok.ends_with("\r\n\r\nup 1\n"), "{ok}");
        assert!(get("/").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
