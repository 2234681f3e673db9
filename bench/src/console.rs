//! The console's figures, on the memory figure's server with its executions
//! stored (1,000,000 in a full run): how long the executions page, a filtered
//! one and the dashboard take, signed in through the sign-in form as a browser
//! is, one request at a time.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use regente_testkit::{console_sign_in, set_cookie, ADMIN_PASSWORD, ADMIN_USER};
use reqwest::blocking::Client;
use serde_json::json;

use crate::http::quantile;
use crate::report::{self, Figure, Target};
use crate::setup::Served;
use crate::{note, Bench};

/// Executions canceled first, so that the dashboard's rollups have rows.
const CANCELED: usize = 2_000;

/// Signs in through the form; answers the `Cookie` header of the session.
fn sign_in(client: &Client, base: &str) -> anyhow::Result<String> {
    let signed_in = console_sign_in(client, base, ADMIN_USER, ADMIN_PASSWORD)?;
    let session = set_cookie(&signed_in, "regente_session").context("signing in set no session")?;
    Ok(session.split(';').next().unwrap_or_default().to_owned())
}

impl Bench {
    pub(crate) fn console_pages(
        &mut self,
        served: &Served,
        runtime: &str,
        stored: u64,
    ) -> anyhow::Result<()> {
        let mut canceled = 0;
        let mut cursor = String::new();
        while canceled < CANCELED.min(stored as usize) {
            let page = served.executions(&format!("status=PENDENT&limit=500{cursor}"))?;
            let ids: Vec<String> = page["executions"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|e| e["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() {
                break;
            }
            for id in ids.iter().take(CANCELED - canceled) {
                let reply = served.server.delete(&served.admin, runtime, id);
                if reply.status != 200 {
                    bail!("canceling {id}: {} {}", reply.status, reply.text());
                }
                canceled += 1;
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        let client = Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = served.server.base.clone();
        let session = sign_in(&client, &base)?;
        let samples = if self.sizes.smoke { 20 } else { 200 };
        let pages = [
            ("console.executions_page", "/executions"),
            (
                "console.executions_filtered",
                "/executions?status=CANCELED&window=30d",
            ),
            ("console.dashboard_30d", "/dashboard?window=30d"),
        ];
        for (name, path) in pages {
            note(&format!("console: {samples} x GET {path}"));
            let mut latencies = Vec::with_capacity(samples);
            for i in 0..samples + 5 {
                let started = Instant::now();
                let reply = client
                    .get(format!("{base}{path}"))
                    .header("cookie", &session)
                    .send()?;
                let status = reply.status();
                let body = reply.text()?;
                let took = started.elapsed();
                if status != 200 || !body.starts_with("<!doctype html>") {
                    bail!("GET {path}: {status}");
                }
                // The first few warm the caches.
                if i >= 5 {
                    latencies.push(took.as_micros() as u64);
                }
            }
            latencies.sort_unstable();
            let ms = |p| quantile(&latencies, p) as f64 / 1000.0;
            self.emit(
                Figure::new(name, ms(0.99), "ms")
                    .target(Target::AtMost(150.0))
                    .details(json!({
                        "what": format!("GET {path} signed in, one at a time: p99 of {samples}, client side"),
                        "p50_ms": report::round(ms(0.5)),
                        "executions_in_store": stored,
                        "canceled_for_the_dashboard": canceled,
                    })),
            );
        }
        Ok(())
    }
}
