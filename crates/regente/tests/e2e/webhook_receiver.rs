//! A webhook receiver of the tests' own: a small HTTP/1.1 server on 127.0.0.1
//! that checks every request as the Standard Webhooks specification says, with
//! its own HMAC-SHA256 (not the server's code): `webhook-signature` holds
//! space-separated `v1,BASE64` signatures over `{id}.{timestamp}.{body}` under
//! the secret's bytes (base64 after `whsec_`), and a timestamp more than five
//! minutes away is refused. It answers as its mode says (200, 503, 410, 429).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Mode {
    Ok,
    /// 503 until then, then 200.
    UnavailableUntil(Instant),
    /// 410 Gone.
    Gone,
    /// 429 with `Retry-After: seconds` for this many requests, then 200.
    TooMany {
        retry_after: u64,
        times: usize,
    },
}

/// One request that passed the checks, and what was answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: Value,
    pub raw_body: String,
    /// For each secret the receiver knows, in order, whether one of the
    /// signatures is that secret's.
    pub signed_by: Vec<bool>,
    pub user_agent: String,
    pub content_type: String,
    pub answered: u16,
}

#[derive(Default)]
struct State {
    secrets: Vec<Vec<u8>>,
    mode: Option<Mode>,
    received: Vec<Received>,
    /// Why requests were refused (bad signature, stale timestamp, missing header).
    refused: Vec<String>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            mode: Some(Mode::Ok),
            ..State::default()
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Receiver { url, state }
    }

    /// Trusts this secret (`whsec_...`) too.
    pub fn add_secret(&self, secret: &str) {
        let key = BASE64
            .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
            .expect("a base64 secret");
        assert_eq!(key.len(), 32, "32 random bytes");
        self.state.lock().unwrap().secrets.push(key);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        let state = self.state.lock().unwrap();
        state
            .received
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
            .cloned()
            .collect()
    }

    pub fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, extra) = answer(state, &request_line, &header, body);
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            410 => "Gone",
            429 => "Too Many Requests",
            _ => "Service Unavailable",
        };
        let response = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 2\r\n{extra}\r\nok");
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Checks a request and decides the answer: (status, extra header lines).
fn answer(
    state: &Mutex<State>,
    request_line: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut state = state.lock().unwrap();
    let refuse = |state: &mut State, why: String| {
        state.refused.push(why);
        (400, String::new())
    };
    if !request_line.starts_with("POST /hook ") {
        return refuse(&mut state, format!("unexpected request {request_line:?}"));
    }
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return refuse(&mut state, "a webhook header is missing".into());
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return refuse(&mut state, format!("timestamp {timestamp:?}"));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - timestamp).abs() > 300 {
        return refuse(
            &mut state,
            format!("stale timestamp {timestamp} (now {now})"),
        );
    }
    let raw_body = String::from_utf8(body).unwrap_or_default();
    let signed = format!("{id}.{timestamp}.{raw_body}");
    let given: Vec<&str> = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .collect();
    let signed_by: Vec<bool> = state
        .secrets
        .iter()
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            mac.update(signed.as_bytes());
            let expected = BASE64.encode(mac.finalize().into_bytes());
            given.contains(&expected.as_str())
        })
        .collect();
    if !signed_by.contains(&true) {
        return refuse(&mut state, format!("no signature verifies: {signatures}"));
    }
    let Ok(body) = serde_json::from_str::<Value>(&raw_body) else {
        return refuse(&mut state, format!("no JSON body: {raw_body}"));
    };
    let (status, extra) = match state.mode.clone().unwrap_or(Mode::Ok) {
        Mode::Ok => (200, String::new()),
        Mode::UnavailableUntil(until) if Instant::now() < until => (503, String::new()),
        Mode::UnavailableUntil(_) => (200, String::new()),
        Mode::Gone => (410, String::new()),
        Mode::TooMany { retry_after, times } if times > 0 => {
            state.mode = Some(Mode::TooMany {
                retry_after,
                times: times - 1,
            });
            (429, format!("retry-after: {retry_after}\r\n"))
        }
        Mode::TooMany { .. } => (200, String::new()),
    };
    state.received.push(Received {
        id,
        body,
        raw_body,
        signed_by,
        user_agent: header("user-agent").unwrap_or_default(),
        content_type: header("content-type").unwrap_or_default(),
        answered: status,
    });
    (status, extra)
}

/// Every delivery arrives within this.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);
