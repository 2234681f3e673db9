//! The answer to a connection over the cap: a 503 in the API's error shape,
//! written without hyper, then a close that lets the client read it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::tls::ReloadableTls;
use crate::api::error::ErrorBody;

/// The whole exchange (handshake, reading the request line, answering,
/// draining) gets this long.
const DEADLINE: Duration = Duration::from_secs(2);
/// Read at most this much looking for the request line.
const REQUEST_LINE_MAX: usize = 8 * 1024;

pub(super) async fn answer(
    tcp: TcpStream,
    tls: Option<Arc<ReloadableTls>>,
    _permit: OwnedSemaphorePermit,
) {
    let exchange = async {
        match tls {
            Some(tls) => answer_on(tls.acceptor().accept(tcp).await?).await,
            None => answer_on(tcp).await,
        }
    };
    let _ = tokio::time::timeout(DEADLINE, exchange).await;
}

async fn answer_on<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < REQUEST_LINE_MAX {
        if stream.read_buf(&mut head).await? == 0 {
            break;
        }
    }
    stream.write_all(&response(&request_path(&head))).await?;
    stream.flush().await?;
    stream.shutdown().await?;
    // Closing with unread bytes would reset the connection, and the client
    // could lose the answer: read what it still sends until it closes.
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// The path of a request line (`GET /path?query HTTP/1.1`), `/` when unreadable.
fn request_path(head: &[u8]) -> String {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or(b"/");
    let path = target.split(|&b| b == b'?').next().unwrap_or(b"/");
    let path = String::from_utf8_lossy(path);
    if path.starts_with('/') && path.len() <= 2048 {
        path.into_owned()
    } else {
        "/".to_owned()
    }
}

fn response(path: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&ErrorBody {
        timestamp: crate::service::now_millis(),
        status: 503,
        error: "Service Unavailable".into(),
        message: "the server has too many connections open: try again shortly".into(),
        path: path.to_owned(),
    })
    .expect("an error body serializes");
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_comes_from_the_request_line() {
        assert_eq!(
            request_path(b"GET /api/x?y=1 HTTP/1.1\r\nHost: a\r\n"),
            "/api/x"
        );
        assert_eq!(request_path(b"POST /healthz HTTP/1.1"), "/healthz");
        assert_eq!(request_path(b""), "/");
        assert_eq!(request_path(b"\x16\x03\x01 garbage"), "/");
    }

    #[test]
    fn the_answer_is_a_503_in_the_error_shape() {
        let response = String::from_utf8(response("/api/x")).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["status"], 503);
        assert_eq!(body["path"], "/api/x");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("too many connections"));
    }
}
