//! Slow, large and many clients: the header deadline, the body rate, bodies of
//! unauthenticated requests left unread, and the connection cap.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;

/// The server's resident memory, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in the status");
    kib * 1024
}

const MEMORY_CEILING: u64 = 64 * 1024 * 1024;

/// Whether the server closed the connection: a read finds the end (or a reset)
/// rather than nothing yet.
fn closed_by_server(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 1024];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn clients_trickling_headers_are_closed_by_the_deadline_while_others_are_served() {
    let server = TestServer::start_with(&[("REGENTE_HEADER_TIMEOUT_SECONDS", "8")]);
    let admin = server.admin_token();
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|n| {
            let mut stream = TcpStream::connect(server.addr()).expect("a connection");
            write!(
                stream,
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-{n}: 1\r\n"
            )
            .unwrap();
            stream
        })
        .collect();
    // Each sends one more header line; none ever ends its head.
    for (n, stream) in slow.iter_mut().enumerate() {
        let _ = write!(stream, "X-Slower-{n}: 2\r\n");
    }
    // A normal client is answered while every slow one is still open: it does
    // not wait for their deadlines.
    for _ in 0..20 {
        server.get("/api/admin/runtimes", &admin).expect(200);
    }
    let memory = rss_bytes(server.pid());
    let still_open = slow.iter().filter(|s| !closed_by_server(s)).count();
    assert_eq!(
        still_open, 500,
        "the slow clients were open while the normal one was served"
    );
    assert!(
        memory < MEMORY_CEILING,
        "the server holds {} MiB with 500 slow clients open",
        memory >> 20
    );
    // Then each is closed by the header deadline.
    wait_for(
        Duration::from_secs(60),
        "every slow client closed by the server",
        || {
            let open = slow.iter().filter(|s| !closed_by_server(s)).count();
            if open == 0 {
                Ok(())
            } else {
                Err(format!("{open} still open"))
            }
        },
    );
    server.get("/api/admin/runtimes", &admin).expect(200);
}

#[test]
fn unauthenticated_large_bodies_are_answered_before_they_are_read() {
    let server = TestServer::start();
    let path = "/api/integration/v2/run/0123456789abcdef/0123456789abcdef";
    let declared = 1024 * 1024;
    let mut clients: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr()).expect("a connection");
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            write!(
                stream,
                "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-token\r\n\
                 Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
            )
            .unwrap();
            // A sliver of the megabyte declared; the rest never comes.
            stream.write_all(&[b' '; 16 * 1024]).unwrap();
            stream
        })
        .collect();
    let memory = rss_bytes(server.pid());
    for stream in &mut clients {
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        // The answer comes whole although the body never did.
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream
                .read(&mut buffer)
                .expect("an answer before the body is sent");
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buffer[..n]);
        }
        let head = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(head.starts_with("http/1.1 401"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
    }
    assert!(
        memory < MEMORY_CEILING,
        "the server holds {} MiB",
        memory >> 20
    );

    // A login body over its limit is refused from its declared length.
    let mut login = TcpStream::connect(server.addr()).unwrap();
    login
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        login,
        "POST /api/user/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {declared}\r\n\r\n{{\"username\": \"admin\""
    )
    .unwrap();
    let mut buffer = [0u8; 4096];
    let n = login.read(&mut buffer).expect("an answer before the body");
    let head = String::from_utf8_lossy(&buffer[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{head}");
}

#[test]
fn a_body_slower_than_the_minimum_rate_gets_408() {
    let server = TestServer::start_with(&[
        ("REGENTE_HEADER_TIMEOUT_SECONDS", "1"),
        ("REGENTE_BODY_MIN_BYTES_PER_SECOND", "1000"),
    ]);
    let admin = server.admin_token();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        stream,
        "POST /api/admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    .unwrap();
    // Ten bytes at a time, far below 1,000 a second, until the server answers.
    let answer = wait_for(
        Duration::from_secs(60),
        "an answer to the slow body",
        || {
            let _ = stream.write_all(b"          ");
            let mut buffer = [0u8; 4096];
            match stream.read(&mut buffer) {
                Ok(n) if n > 0 => Ok(String::from_utf8_lossy(&buffer[..n]).into_owned()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["path"], "/api/admin/users");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("bytes per second"),
        "{body}"
    );
}

#[test]
fn connections_past_the_cap_get_503_in_the_error_shape() {
    let server = TestServer::start_with(&[("REGENTE_MAX_CONNECTIONS", "8")]);
    server.req("GET", "/healthz").send().expect(200);
    // Eight idle connections fill the cap (the client's pooled one may be one).
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    let busy = wait_until(
        Duration::from_secs(30),
        "a 503 for a connection over the cap",
        || {
            let fresh = Api::new(&server.base);
            let reply = fresh.req("GET", "/api/admin/runtimes").try_send().ok()?;
            (reply.status == 503).then_some(reply)
        },
    );
    let body = assert_error(&busy, 503, "/api/admin/runtimes");
    assert!(message(&body).contains("too many connections"), "{body}");
    drop(idle);
    wait_until(
        Duration::from_secs(30),
        "a 200 once the idle connections are gone",
        || {
            let fresh = Api::new(&server.base);
            let reply = fresh.req("GET", "/healthz").try_send().ok()?;
            (reply.status == 200).then_some(())
        },
    );
}
