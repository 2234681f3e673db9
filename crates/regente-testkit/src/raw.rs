//! A request over a plain TCP connection, for answers a server gives before
//! it has read the body.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::client::{Api, Reply};

/// Sends a request over a plain TCP connection, writing the body on another
/// thread while reading the answer, as careful HTTP clients do: a server may
/// answer (401, 413) before it has read a large body and then reset the
/// connection, which makes clients that write the whole body first (reqwest's
/// blocking client) lose the answer.
pub fn raw_send(
    api: &Api,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: Vec<u8>,
) -> Result<Reply, String> {
    let addr = api.addr().to_owned();
    let mut stream = TcpStream::connect(&addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let writing = std::thread::spawn(move || {
        // The server may close early; what matters is the answer it sent.
        let _ = writer
            .write_all(&head)
            .and_then(|()| writer.write_all(&body));
    });
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let _ = writing.join();
    if answer.is_empty() {
        return Err(format!("no answer at all ({read:?})"));
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            format!(
                "incomplete answer ({read:?}): {}",
                String::from_utf8_lossy(&answer)
            )
        })?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut rest = answer[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let mut header_map = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
                reqwest::header::HeaderValue::from_str(value.trim()),
            ) {
                header_map.append(name, value);
            }
        }
    }
    if method == "HEAD" || status == 204 || status == 304 {
        rest.clear();
    } else if let Some(length) = header_map
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if rest.len() < length {
            return Err(format!("truncated body ({read:?})"));
        }
        rest.truncate(length);
    }
    Ok(Reply {
        status,
        headers: header_map,
        body: rest,
        method: method.to_owned(),
        path: path.split('?').next().unwrap_or(path).to_owned(),
    })
}
