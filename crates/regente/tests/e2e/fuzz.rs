//! A deterministic fuzz run: a few hundred requests with random methods,
//! paths, tokens, content types and bodies (malformed, truncated, huge, odd
//! variables) at every route. No answer may be a 5xx, every 4xx must have the
//! JSON error shape with the request's path, and the server must stay healthy
//! with its data intact.
//!
//! `E2E_FUZZ_SEED` and `E2E_FUZZ_REQUESTS` change the seed and the count.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::support::*;

/// xorshift64*: small, deterministic, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn text(&mut self, max: usize) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", "0", "_", "-", " ", "é", "名", "😀", "\"", "\\", "{", "}", "[", "]", ":",
            ",", "\u{0}", "\n", "%", "/", ".", "..", "'", "<", ">", "null",
        ];
        let len = self.below(max + 1);
        (0..len).map(|_| *self.pick(PIECES)).collect()
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// An odd value for a variable.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(1e308),
        3 => json!(-0.0),
        4 => json!("123"),
        5 => json!("  42  "),
        6 => json!(u64::MAX),
        7 => json!(i64::MIN),
        8 => json!([[[]], [null]]),
        9 => json!({"a": {"b": [1, {"c": null}]}}),
        10 => json!("x".repeat(100_000)),
        11 => json!("{\"nested\": [1, 2]}"),
        12 => json!("true"),
        13 => json!("NaN"),
        14 => Value::String(rng.text(40)),
        _ => json!(1.5),
    }
}

fn odd_variable(rng: &mut Rng) -> Value {
    let name = match rng.below(12) {
        0 => Value::String("N".repeat(10_000)),
        1 => json!(""),
        2 => json!("1abc"),
        3 => json!("ñame"),
        4 => json!("😀"),
        5 => json!("CNPJ"),
        6 => json!("LIMIT"),
        7 => json!("__proto__"),
        8 => Value::Null,
        9 => json!(17),
        10 => json!(["CNPJ"]),
        _ => Value::String(rng.text(20)),
    };
    let kind = match rng.below(10) {
        0 => json!("text"),
        1 => json!("number"),
        2 => json!("boolean"),
        3 => json!("json"),
        4 => json!("TEXT"),
        5 => json!(""),
        6 => Value::Null,
        7 => json!(5),
        8 => json!("date"),
        _ => Value::String(rng.text(10)),
    };
    let mut variable = serde_json::Map::new();
    if !rng.chance(5) {
        variable.insert("name".into(), name);
    }
    if !rng.chance(20) {
        variable.insert("type".into(), kind);
    }
    if !rng.chance(10) {
        variable.insert("value".into(), odd_value(rng));
    }
    if rng.chance(10) {
        variable.insert("extra".into(), odd_value(rng));
    }
    Value::Object(variable)
}

/// A run body with odd variables, in any of the shapes integrations send.
fn odd_run_body(rng: &mut Rng) -> Value {
    let variables = match rng.below(8) {
        0 => Value::Null,
        1 => odd_variable(rng),
        2 => json!([[odd_variable(rng)]]),
        3 => json!("CNPJ=1"),
        4 => json!(3),
        _ => Value::Array((0..rng.below(5)).map(|_| odd_variable(rng)).collect()),
    };
    if rng.chance(10) {
        json!({"Variables": variables})
    } else {
        json!({"variables": variables})
    }
}

/// A JSON text cut anywhere.
fn truncated(rng: &mut Rng, value: &Value) -> Vec<u8> {
    let text = value.to_string().into_bytes();
    let cut = rng.below(text.len().max(1));
    text[..cut].to_vec()
}

fn body(rng: &mut Rng, robot_zip_bytes: &[u8]) -> Option<Vec<u8>> {
    let login = json!({"username": rng.text(12), "password": b64(&rng.text(12))});
    Some(match rng.below(22) {
        0 => return None,
        1 => Vec::new(),
        2..=5 => odd_run_body(rng).to_string().into_bytes(),
        6 => {
            let value = odd_run_body(rng);
            truncated(rng, &value)
        }
        7 => rng.bytes(300),
        8 => vec![b'['; 100_000],
        9 => format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
        10 => {
            if rng.chance(50) {
                vec![b'x'; 2 * 1024 * 1024]
            } else {
                let mut huge = b"{\"variables\": [{\"name\": \"CNPJ\", \"value\": \"".to_vec();
                huge.resize(2 * 1024 * 1024, b'9');
                huge.extend_from_slice(b"\"}]}");
                huge
            }
        }
        11 => (*rng.pick(&[
            "null",
            "1",
            "\"x\"",
            "[]",
            "{}",
            "true",
            "{\"variables\":{}}",
        ]))
        .as_bytes()
        .to_vec(),
        12 => login.to_string().into_bytes(),
        13 => truncated(rng, &login),
        14 => json!({"username": rng.text(300), "password": rng.text(30), "role": rng.text(12)})
            .to_string()
            .into_bytes(),
        15 => json!({"name": rng.text(250), "slots": odd_value(rng)})
            .to_string()
            .into_bytes(),
        16 => json!({"name": rng.text(20), "admin_username": Value::Null, "admin_password": 1})
            .to_string()
            .into_bytes(),
        17 => robot_zip_bytes.to_vec(),
        18 => {
            let cut = rng.below(robot_zip_bytes.len());
            robot_zip_bytes[..cut].to_vec()
        }
        19 => b"{\"username\": \"admin\", \"password\": \"\xff\xfe\"}".to_vec(),
        _ => odd_value(rng).to_string().into_bytes(),
    })
}

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json",
    "text/plain",
    "",
    "application/zip",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/json; charset=utf-16",
    "application/octet-stream",
    "*/*",
    "app\u{e9}/weird",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND",
];

const QUERIES: &[&str] = &[
    "",
    "?limit=1",
    "?limit=0",
    "?limit=99999999999999999999",
    "?status=PENDENT&status=CANCELED",
    "?status=",
    "?from=-1&to=9223372036854775807",
    "?cursor=-5",
    "?cursor=9223372036854775807",
    "?robot=%00",
    "?%zz=1",
    "?limit=2&cursor=abc",
    "?runtime=0123456789abcdef&robot=0123456789abcdef",
];

/// A body aimed at what the route expects, so that requests get past the
/// token and id checks and reach the parsers and validators.
fn route_body(
    rng: &mut Rng,
    method: &str,
    template: &str,
    zip: &[u8],
    f: &Fixture,
    flow_id: &str,
) -> Option<Vec<u8>> {
    let odd_text = |rng: &mut Rng| -> Value {
        match rng.below(6) {
            0 => Value::String("u".repeat(5000)),
            1 => Value::Null,
            2 => json!(12345678),
            3 => json!(["x"]),
            _ => Value::String(rng.text(24)),
        }
    };
    let value = if template.contains("/run/") {
        odd_run_body(rng)
    } else if template.starts_with("/api/user/") {
        if rng.chance(20) {
            json!({"username": "fuzz-integration", "password": b64("fuzz-integration-pw")})
        } else {
            let username = match rng.below(4) {
                0 => json!(ADMIN_USER),
                1 => json!("fuzz-integration"),
                _ => odd_text(rng),
            };
            let password = match rng.below(4) {
                0 => json!(b64("wrong password")),
                1 => json!("%%% not base64"),
                _ => odd_text(rng),
            };
            json!({"username": username, "password": password})
        }
    } else if template == "/api/admin/users" && method == "POST" {
        let role = *rng.pick(&["admin", "integration", "root", "", "ADMIN"]);
        if rng.chance(25) {
            let username = format!("fuzz-user-{}", rng.next());
            json!({"username": username, "password": "fuzz-password", "role": role})
        } else {
            json!({"username": odd_text(rng), "password": odd_text(rng), "role": role})
        }
    } else if template == "/api/admin/runtimes" && method == "POST" {
        if rng.chance(25) {
            json!({"name": rng.text(30), "slots": rng.below(300)})
        } else {
            json!({"name": odd_text(rng), "slots": odd_value(rng)})
        }
    } else if method == "PATCH" && template == "/api/admin/runtimes/{id}" {
        json!({"name": if rng.chance(25) { json!(rng.text(30)) } else { odd_text(rng) }})
    } else if method == "PATCH" && template == "/api/admin/users/{id}" {
        json!({"role": *rng.pick(&["admin", "integration", "root", "", "ADMIN"])})
    } else if template.starts_with("/api/admin/credentials") {
        match rng.below(4) {
            0 => {
                json!({"name": format!("fuzz-{}", rng.next()), "fields": {"password": rng.text(20)}})
            }
            1 => json!({"name": odd_text(rng), "fields": odd_value(rng), "robots": odd_value(rng)}),
            2 => json!({"fields": {"password": odd_value(rng)}, "description": odd_value(rng)}),
            _ => json!({"fields": {"pass": rng.text(8)}, "robots": [odd_text(rng)]}),
        }
    } else if template == "/api/admin/api-keys" && method == "POST" {
        let role = *rng.pick(&["admin", "integration", "root", "", "ADMIN"]);
        let expires_at = match rng.below(5) {
            0 => json!(now_millis() + 86_400_000),
            1 => json!(now_millis() - 1),
            2 => json!("2999-05-01T08:00:00-03:00"),
            3 => Value::Null,
            _ => odd_text(rng),
        };
        if rng.chance(25) {
            json!({"name": format!("fuzz-key-{}", rng.next()), "role": role, "expires_at": expires_at})
        } else {
            json!({"name": odd_text(rng), "role": odd_text(rng), "expires_at": expires_at})
        }
    } else if template == "/api/admin/organizations" {
        if rng.chance(25) {
            let n = rng.next();
            json!({"name": format!("org {n}"), "admin_username": format!("fuzz-org-admin-{n}"), "admin_password": "fuzz-password"})
        } else {
            json!({"name": odd_text(rng), "admin_username": odd_text(rng), "admin_password": odd_text(rng)})
        }
    } else if template == "/api/admin/flows" && method == "POST" {
        match rng.below(4) {
            0 => json!({"name": rng.text(20), "steps": odd_value(rng)}),
            1 => {
                json!({"name": odd_text(rng), "steps": [{"id": odd_text(rng), "robot_id": odd_text(rng)}]})
            }
            2 => json!({"name": "fuzz-bad", "steps": [{"id": "a", "robot_id": "0000000000000000",
                "runtime_id": "0000000000000000", "when": rng.text(40)}]}),
            _ => {
                json!({"name": rng.text(12), "variables": odd_value(rng), "steps": [], "return": odd_text(rng)})
            }
        }
    } else if template.ends_with("/run") {
        odd_run_body(rng)
    } else if template.ends_with("/backfill") {
        let bound = |rng: &mut Rng| match rng.below(5) {
            0 => json!(now_millis() - rng.below(10 * 86_400_000) as i64),
            1 => json!("2026-05-01T08:00:00-03:00"),
            2 => json!(-1),
            3 => json!(now_millis() + 86_400_000),
            _ => odd_text(rng),
        };
        json!({"from": bound(rng), "to": bound(rng)})
    } else if template.starts_with("/api/admin/schedules") && method != "GET" {
        schedule_body(rng, f, flow_id, odd_text)
    } else if template.starts_with("/api/admin/webhooks") && method != "GET" {
        let events = match rng.below(4) {
            0 => json!(["execution.finished", "runtime.online"]),
            1 => json!([odd_text(rng)]),
            2 => json!([]),
            _ => odd_value(rng),
        };
        let url = match rng.below(4) {
            0 => json!("http://127.0.0.1:9/fuzz"),
            1 => json!("http://169.254.169.254/"),
            _ => odd_text(rng),
        };
        match rng.below(3) {
            0 => json!({"url": url, "events": events}),
            1 => json!({"enabled": odd_value(rng), "description": odd_value(rng)}),
            _ => json!({"url": url, "events": events, "description": odd_text(rng)}),
        }
    } else if template == "/api/admin/robots" && method == "POST" {
        return Some(match rng.below(5) {
            0 => zip.to_vec(),
            1 => zip[..rng.below(zip.len())].to_vec(),
            2 => robot_zip(&rng.text(60), &[]),
            3 => robot_zip(&manifest("consulta-cnpj"), &[(&rng.text(12), b"x")]),
            _ => {
                let mut bytes = zip.to_vec();
                let at = rng.below(bytes.len());
                bytes[at] ^= 0x5a;
                bytes
            }
        });
    } else {
        return body(rng, zip);
    };
    Some(match rng.below(30) {
        0..=2 => truncated(rng, &value),
        3..=5 => return body(rng, zip),
        6 => {
            // Over the 1 MiB limit, but of the expected kind.
            let mut huge = value.to_string().into_bytes();
            huge.resize(2 * 1024 * 1024, b' ');
            huge
        }
        _ => value.to_string().into_bytes(),
    })
}

/// A flow of one step on the fuzz's robot and runtime.
fn flow_definition(name: &str, robot: &str, runtime: &str) -> Value {
    json!({"name": name, "steps": [{"id": "only", "robot_id": robot, "runtime_id": runtime}]})
}

/// A schedule's body, valid in parts: its target a robot on a runtime, a flow
/// (the fuzz's, or an unknown one), both or none; each field good, odd or
/// missing.
fn schedule_body(
    rng: &mut Rng,
    f: &Fixture,
    flow_id: &str,
    odd_text: impl Fn(&mut Rng) -> Value,
) -> Value {
    let every = json!({"frequency": *rng.pick(&["weekly", "hourly"]), "at": "06:30", "weekdays": ["mon", "funday"]});
    let flow = json!(*rng.pick(&[flow_id, "0123456789abcdef"]));
    let target = match rng.below(5) {
        0 | 1 => vec![
            ("robot_id", json!(f.robot)),
            ("runtime_id", json!(f.runtime)),
        ],
        2 | 3 => vec![("flow_id", flow)],
        _ => vec![("robot_id", json!(f.robot)), ("flow_id", flow)],
    };
    let fields = [
        ("name", json!(format!("fuzz-{}", rng.next()))),
        (
            "cron",
            json!(*rng.pick(&["0 3 * * *", "*/5 * * * *", "61 * * * *", "0 0 30 2 *", ""])),
        ),
        ("every", every),
        (
            "timezone",
            json!(*rng.pick(&["UTC", "America/Sao_Paulo", "Mars/Olympus", ""])),
        ),
        ("start_at", json!(now_millis() + 3_600_000)),
        ("end_at", json!("2020-01-01T00:00:00Z")),
        ("paused", json!(rng.chance(50))),
        ("note", json!("fuzz")),
        (
            "overlap",
            json!(*rng.pick(&["skip", "buffer_one", "allow", "sometimes"])),
        ),
        (
            "misfire",
            json!(*rng.pick(&["run_latest", "run_all", "never"])),
        ),
        (
            "catchup_window_seconds",
            json!(rng.below(100_000) as i64 - 10),
        ),
        ("jitter_seconds", json!(rng.below(5_000))),
        ("pause_after_failures", json!(rng.below(3))),
        (
            "variables",
            json!([{"name": "CNPJ", "type": "text", "value": "x"}]),
        ),
    ];
    let mut body = serde_json::Map::new();
    for (name, value) in fields.into_iter().chain(target) {
        match rng.below(5) {
            0 | 1 if name == "every" || name == "end_at" => {}
            0 => {}
            1 => {
                body.insert(name.into(), odd_text(rng));
            }
            _ => {
                body.insert(name.into(), value);
            }
        }
    }
    Value::Object(body)
}

/// A valid body for each route, so that the warm-up reaches every handler.
fn warm_up_body(n: usize, template: &str, zip: &[u8], f: &Fixture) -> Option<Vec<u8>> {
    let value = match template {
        "/api/admin/schedules" => json!({
            "name": format!("warm-{n}"),
            "robot_id": f.robot,
            "runtime_id": f.runtime,
            "cron": "0 3 * * *",
        }),
        "/api/admin/schedules/{id}" => json!({"paused": true, "note": "warm"}),
        "/api/admin/schedules/{id}/backfill" => {
            json!({"from": now_millis() - 2 * 86_400_000, "to": now_millis()})
        }
        "/api/user/auth" | "/api/user/v2/auth" => {
            json!({"username": "fuzz-integration", "password": b64("fuzz-integration-pw")})
        }
        "/api/admin/users" => {
            json!({"username": format!("warm-{n}"), "password": "fuzz-password", "role": "integration"})
        }
        "/api/admin/runtimes" | "/api/admin/runtimes/{id}" => json!({"name": format!("warm-{n}")}),
        "/api/admin/users/{id}" => json!({"role": "integration"}),
        "/api/admin/robots" => return Some(zip.to_vec()),
        "/api/admin/credentials" => {
            json!({"name": format!("warm-{n}"), "fields": {"password": "warm-value"}})
        }
        "/api/admin/credentials/{id}" => json!({"fields": {"password": "warm-value-2"}}),
        "/api/admin/api-keys" => json!({"name": format!("warm-{n}"), "role": "integration"}),
        "/api/admin/webhooks" => {
            json!({"url": "http://127.0.0.1:9/warm", "events": ["execution.finished"]})
        }
        "/api/admin/webhooks/{id}" => json!({"description": format!("warm {n}")}),
        "/api/admin/flows" => flow_definition(&format!("warm-flow-{n}"), &f.robot, &f.runtime),
        _ if template.ends_with("/run") => json!({}),
        "/api/admin/organizations" => json!({
            "name": format!("warm {n}"),
            "admin_username": format!("warm-admin-{n}"),
            "admin_password": "fuzz-password",
        }),
        _ if template.contains("/run/") => {
            json!({"variables": [{"name": "CNPJ", "type": "text", "value": "warm"}]})
        }
        _ => return None,
    };
    Some(value.to_string().into_bytes())
}

#[test]
fn random_requests_never_get_a_5xx_and_leave_the_data_intact() {
    let seed: u64 = std::env::var("E2E_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2024_cafe_f00d);
    let count: usize = std::env::var("E2E_FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let mut rng = Rng(seed.max(1));

    let server = TestServer::start();
    let f = fixture(&server);
    let (_, runtime_key) = server.create_runtime(&f.admin, "fuzz-runtime");
    server.create_user(
        &f.admin,
        "fuzz-integration",
        "fuzz-integration-pw",
        "integration",
    );
    let integration = server.login("fuzz-integration", "fuzz-integration-pw");
    let victim_user = server.create_user(&f.admin, "fuzz-victim", "fuzz-victim-pw", "integration");
    let victim_user = victim_user["id"].as_str().unwrap().to_owned();
    // Offline and idle: renamed, given a new key, then deleted.
    let (victim_runtime, _) = server.create_runtime(&f.admin, "fuzz-victim-runtime");
    let admin_id = user_id(&server, &f.admin, ADMIN_USER);
    let keep = server.queue(
        &f.admin,
        &f.runtime,
        &f.robot,
        Some(&json!({"variables": [{"name": "CNPJ", "type": "text", "value": "keep me"}]})),
    );
    let victims: Vec<String> = (0..3)
        .map(|_| server.queue(&integration, &f.runtime, &f.robot, None))
        .collect();
    // A flow and a run of it, for the flow routes to reach.
    let flow_id = server
        .req("POST", "/api/admin/flows")
        .auth(&f.admin)
        .json(&flow_definition("fuzz-flow", &f.robot, &f.runtime))
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let flow_run = server
        .req("POST", &format!("/api/integration/v2/flows/{flow_id}/run"))
        .auth(&integration)
        .json(&json!({}))
        .send()
        .expect(200)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A credential, for the vault's routes to reach.
    let credential = server
        .req("POST", "/api/admin/credentials")
        .auth(&f.admin)
        .json(&json!({"name": "fuzz-credential", "fields": {"password": "fuzz-value"}}))
        .send()
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // An API key for its routes to reach (revoked in the warm-up), and one
    // kept, sent as a token.
    let new_key = |name: &str| {
        server
            .req("POST", "/api/admin/api-keys")
            .auth(&f.admin)
            .json(&json!({"name": name, "role": "integration"}))
            .send()
            .expect(201)
            .json()
    };
    let api_key = new_key("fuzz-key")["id"].as_str().unwrap().to_owned();
    let kept_key = new_key("fuzz-kept-key")["key"].as_str().unwrap().to_owned();
    // Webhooks for their routes to reach (the first deleted in the warm-up),
    // and a delivery of each (to a closed port: it stays pending).
    let webhooks: Vec<String> = ["victim", "kept"]
        .iter()
        .map(|name| {
            let body = json!({"url": format!("http://127.0.0.1:9/{name}"), "events": ["execution.queued"]});
            server.req("POST", "/api/admin/webhooks").auth(&f.admin).json(&body).send().expect(201).json()
                ["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    server.queue(&f.admin, &f.runtime, &f.robot, None);
    let webhook_deliveries: Vec<String> = webhooks
        .iter()
        .map(|webhook| {
            wait_until(Duration::from_secs(30), "a webhook delivery", || {
                let page = server
                    .get(
                        &format!("/api/admin/webhooks/{webhook}/deliveries"),
                        &f.admin,
                    )
                    .expect(200)
                    .json();
                page["deliveries"][0]["id"].as_str().map(str::to_owned)
            })
        })
        .collect();
    let keep_result = server
        .result(&f.admin, &f.runtime, &keep)
        .expect(200)
        .json();
    let schedules: Vec<String> = ["fuzz-victim", "fuzz-kept"]
        .iter()
        .map(|name| {
            let body = json!({"name": name, "robot_id": f.robot, "runtime_id": f.runtime, "cron": "0 3 * * *"});
            server.req("POST", "/api/admin/schedules").auth(&f.admin).json(&body).send().expect(201).json()
                ["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let without_queue = |mut detail: Value| {
        detail.as_object_mut().unwrap().remove("queue_position");
        detail
    };
    let keep_detail = without_queue(server.execution(&f.admin, &keep));
    let robot_before = server
        .get(&format!("/api/admin/robots/{}", f.robot), &f.admin)
        .expect(200)
        .json();

    let now = now_millis() / 1000;
    let good_claims = claims(ADMIN_USER, &admin_id, now + 3600);
    let valid_tokens = [f.admin.clone(), integration.clone()];
    let tokens: Vec<Option<String>> = vec![
        None,
        Some(f.admin.clone()),
        Some(integration.clone()),
        Some(format!("Bearer {runtime_key}")),
        Some(format!("Bearer {kept_key}")),
        Some("Bearer rgk_not-a-key".into()),
        Some("Bearer".into()),
        Some("Bearer x.y.z".into()),
        Some(format!("Basic {}", b64("admin:admin"))),
        Some(forge_token(
            &claims(ADMIN_USER, &admin_id, now - 100),
            JWT_SECRET,
            Algorithm::HS512,
        )),
        Some(forge_token(
            &good_claims,
            "not-the-secret-not-the-secret-123",
            Algorithm::HS512,
        )),
        Some(forge_token(&good_claims, JWT_SECRET, Algorithm::HS384)),
        Some(alg_none_token(&good_claims)),
        Some("Bearer \u{e9}\u{e9}".into()),
        Some(format!("bearer {}", &f.admin["Bearer ".len()..])),
    ];
    let zip = robot_zip(&manifest("consulta-cnpj"), &[("main.py", b"print(1)\n")]);
    let unknown = "0123456789abcdef".to_owned();
    let garbage: Vec<String> = vec![
        "x".into(),
        "a".repeat(300),
        "%2e%2e".into(),
        "%00".into(),
        "%C3%A9".into(),
        "-1".into(),
        "0123456789ABCDEF".into(),
        "0123456789abcdef0".into(),
    ];
    // A good id most of the time when aiming, a bad one otherwise.
    // The first good id in the warm-up; a good id most of the time when
    // aiming; often a bad one otherwise.
    let pick_id = |rng: &mut Rng, good: &[&String], aiming: Option<bool>| -> String {
        let odds = match aiming {
            None => return good[0].clone(),
            Some(true) => 85,
            Some(false) => 40,
        };
        if rng.chance(odds) {
            (*rng.pick(good)).clone()
        } else if rng.chance(40) {
            unknown.clone()
        } else {
            rng.pick(&garbage).clone()
        }
    };
    let mut all_paths: Vec<(&str, &str)> = ROUTES.to_vec();
    all_paths.extend(OTHER_ROUTES);
    all_paths.extend([
        ("GET", "/"),
        ("GET", "/api"),
        ("GET", "/api/integration/v1/run"),
        ("POST", "/api/integration/v1/run/{runtime_id}"),
        ("POST", "/api/integration/v3/run/{runtime_id}/{robot_id}"),
        ("GET", "/api/admin"),
        ("GET", "/api/admin/users/"),
        ("GET", "/api/admin/robots/{id}/versions"),
        ("POST", "/api/user/auth/"),
        ("GET", "/nope"),
        (
            "GET",
            "/api/integration/v1/result/{runtime_id}/{execution_id}/extra",
        ),
    ]);

    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut reached: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut failures = Vec::new();
    let mut previous = String::new();
    // First every route with its own method and a valid token (admin, then
    // integration); then half aimed requests (a valid token, the route's
    // method, mostly good ids, a body of the expected kind, often odd) and half
    // random ones.
    let warm_up = 2 * ROUTES.len();
    for n in 0..count + warm_up {
        let warming = n < warm_up;
        let aiming = warming || rng.chance(50);
        let id_mode = if warming { None } else { Some(aiming) };
        let (route_method, template) = if n < warm_up {
            ROUTES[n % ROUTES.len()]
        } else if aiming {
            *rng.pick(ROUTES)
        } else {
            *rng.pick(&all_paths)
        };
        let method = if aiming || rng.chance(70) {
            route_method
        } else {
            *rng.pick(METHODS)
        };
        let token = if n < warm_up {
            Some(valid_tokens[n / ROUTES.len()].clone())
        } else if aiming {
            // Mostly the admin on admin routes, so that their handlers run.
            let admin_odds = if template.starts_with("/api/admin/") {
                85
            } else {
                50
            };
            Some(valid_tokens[usize::from(!rng.chance(admin_odds))].clone())
        } else {
            rng.pick(&tokens).clone()
        };
        let mut path = template.to_owned();
        if path.contains("{runtime_id}") {
            let id = pick_id(&mut rng, &[&f.runtime], id_mode);
            path = path.replace("{runtime_id}", &id);
        }
        if path.contains("{robot_id}") {
            let id = pick_id(&mut rng, &[&f.robot], id_mode);
            path = path.replace("{robot_id}", &id);
        }
        if path.contains("{execution_id}") {
            // The kept execution is read but never deleted.
            let mut good: Vec<&String> = victims.iter().collect();
            if !template.contains("/delete/") {
                good.push(&keep);
            }
            let id = pick_id(&mut rng, &good, id_mode);
            path = path.replace("{execution_id}", &id);
        }
        if path.contains("{flow_id}") {
            let id = pick_id(&mut rng, &[&flow_id], id_mode);
            path = path.replace("{flow_id}", &id);
        }
        if path.contains("{version}") {
            let version = *rng.pick(&["1", "1", "2", "0", "x", "99999999999", "-1"]);
            path = path.replace("{version}", version);
        }
        if path.contains("{delivery_id}") {
            // Each webhook's own delivery, when aiming at its webhook.
            let good: Vec<&String> = webhook_deliveries.iter().collect();
            let id = pick_id(&mut rng, &good, id_mode);
            path = path.replace("{delivery_id}", &id);
        }
        if path.contains("{id}") {
            let id = if template.starts_with("/api/admin/users") {
                pick_id(&mut rng, &[&victim_user, &admin_id], id_mode)
            } else if template.starts_with("/api/admin/runtimes") {
                pick_id(&mut rng, &[&victim_runtime], id_mode)
            } else if template.starts_with("/api/admin/robots") {
                pick_id(&mut rng, &[&f.robot], id_mode)
            } else if template.starts_with("/api/admin/flows") {
                pick_id(&mut rng, &[&flow_id], id_mode)
            } else if template.starts_with("/api/admin/credentials") {
                pick_id(&mut rng, &[&credential], id_mode)
            } else if template.starts_with("/api/admin/api-keys") {
                pick_id(&mut rng, &[&api_key], id_mode)
            } else if template.starts_with("/api/integration/v2/flows/runs") {
                pick_id(&mut rng, &[&flow_run], id_mode)
            } else if template.starts_with("/api/admin/schedules") {
                // The first is deleted in the warm-up.
                pick_id(&mut rng, &[&schedules[0], &schedules[1]], id_mode)
            } else if template.starts_with("/api/admin/webhooks") {
                // The first is deleted in the warm-up.
                pick_id(&mut rng, &[&webhooks[0], &webhooks[1]], id_mode)
            } else {
                let mut good: Vec<&String> = victims.iter().collect();
                good.push(&keep);
                pick_id(&mut rng, &good, id_mode)
            };
            path = path.replace("{id}", &id);
        }
        if template == "/api/admin/executions" {
            let query = *rng.pick(QUERIES);
            path.push_str(query);
        }
        let mut headers: Vec<(&str, Vec<u8>)> = Vec::new();
        if let Some(token) = &token {
            headers.push(("Authorization", token.as_bytes().to_vec()));
        }
        let body = if warming {
            warm_up_body(n, template, &zip, &f)
        } else if aiming {
            route_body(&mut rng, method, template, &zip, &f, &flow_id)
        } else {
            body(&mut rng, &zip)
        };
        if body.is_some() {
            let content_type = if aiming && rng.chance(70) {
                if template == "/api/admin/robots" {
                    "application/zip"
                } else {
                    "application/json"
                }
            } else {
                rng.pick(CONTENT_TYPES)
            };
            if !content_type.is_empty() {
                headers.push(("Content-Type", content_type.as_bytes().to_vec()));
            }
        }
        if template.contains("/run/") && rng.chance(20) {
            let key: Vec<u8> = match rng.below(4) {
                0 => b"retry-1".to_vec(),
                1 => vec![b'k'; 1000],
                2 => "cl\u{e9}".as_bytes().to_vec(),
                _ => rng.text(8).into_bytes(),
            };
            if key.iter().all(|&b| b >= 0x20 && b != 0x7f) {
                headers.push(("Idempotency-Key", key));
            }
        }
        let body_len = body.as_ref().map(Vec::len);
        let what = format!("request {n}: {method} {path} token {token:?} body {body_len:?}");
        // Bodies over the 1 MiB limit are answered before they are read: send
        // those with a client that reads the answer while writing.
        let sent = if body_len.is_some_and(|len| len > 1024 * 1024) {
            let headers: Vec<(&str, &[u8])> =
                headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            raw_send(&server, method, &path, &headers, body.unwrap_or_default())
        } else {
            let mut request = server.req(method, &path);
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            if let Some(body) = body {
                request = request.body(body, "");
            }
            request.try_send()
        };
        let reply = match sent {
            Ok(reply) => reply,
            Err(e) => panic!(
                "{what}: no answer ({e}); the request before: {previous}\n--- server log\n{}",
                server.stderr()
            ),
        };
        *statuses.entry(reply.status).or_default() += 1;
        previous = format!("{what} -> {}", reply.status);
        if reply.status < 400
            && method == route_method
            && ROUTES.contains(&(route_method, template))
        {
            reached.insert((route_method, template));
        }
        if reply.status >= 500 {
            failures.push(format!("{what}: {} {}", reply.status, reply.text()));
        } else if reply.status >= 400 && method != "HEAD" {
            if let Err(why) = check_error_shape(&reply, &reply.path) {
                failures.push(format!("{what}: {} {why}: {}", reply.status, reply.text()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad answers (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("fuzz statuses (seed {seed}): {statuses:?}");
    for status in [200, 201, 400, 401, 403, 404, 405, 409, 413] {
        assert!(
            statuses.contains_key(&status),
            "no {status} answer in the run: {statuses:?}"
        );
    }
    let unreached: Vec<_> = ROUTES.iter().filter(|r| !reached.contains(*r)).collect();
    assert!(
        unreached.is_empty(),
        "never answered a success, so the fuzz does not reach their handlers: {unreached:?}"
    );

    // The server is healthy and the kept execution is as it was.
    assert_eq!(
        server.req("GET", "/healthz").send().expect(200).text(),
        "ok"
    );
    assert_eq!(
        server
            .result(&f.admin, &f.runtime, &keep)
            .expect(200)
            .json(),
        keep_result
    );
    assert_eq!(
        without_queue(server.execution(&f.admin, &keep)),
        keep_detail
    );
    // Uploads may have added versions, but version 1 is untouched.
    let robot_after = server
        .get(&format!("/api/admin/robots/{}", f.robot), &f.admin)
        .expect(200)
        .json();
    assert_eq!(robot_after["versions"][0], robot_before["versions"][0]);
    server.get("/api/admin/users", &integration).expect(403);
    server.get("/api/admin/users", &f.admin).expect(200);
}

#[test]
fn answers_given_before_the_body_is_read_keep_the_connection_usable() {
    let server = TestServer::start();
    let body = json!({"variables": [{"name": "CNPJ", "value": "x".repeat(200_000)}]}).to_string();
    let mut failures = Vec::new();
    for n in 0..20 {
        let path = "/api/integration/v2/run/0123456789abcdef/0123456789abcdef";
        // Answered 401 by the token check, before the body is read.
        let first = server
            .req("POST", path)
            .auth("Bearer bad")
            .body(body.clone().into_bytes(), "application/json")
            .try_send();
        // The next request reuses the pooled connection.
        let second = server
            .req("POST", "/api/user/auth")
            .body(b"{}".to_vec(), "application/json")
            .try_send();
        match (first, second) {
            (Ok(a), Ok(b)) if a.status == 401 && b.status == 400 => {}
            other => failures.push(format!("{n}: {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
