//! This server's answers by route, method and status code, and how long they
//! took, for `/metrics`. A route is the router's template of the path it matched
//! (`/api/integration/v1/result/{runtime_id}/{execution_id}`), or `unmatched`,
//! so the series are bounded by the routes whatever the paths asked. A route's
//! counters are made the first time it answers; after that an answer costs a
//! read lock, a few atomic additions and a short lock of its status counts,
//! and allocates nothing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use regente_store::Histogram;

use super::metrics::{family, histogram, label};

/// The route of requests that matched none (404s outside the router).
pub const UNMATCHED: &str = "unmatched";

/// The methods counted apart; any other is counted as `OTHER`.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
const OTHER_METHOD: &str = "OTHER";

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One route's and method's figures.
struct MethodFigures {
    /// (status code, answers), in the order first seen; a handful at most.
    statuses: Mutex<Vec<(u16, u64)>>,
    latency: Histogram,
}

struct RouteFigures {
    /// By [`METHODS`], then other methods.
    by_method: [MethodFigures; METHODS.len() + 1],
}

impl Default for RouteFigures {
    fn default() -> RouteFigures {
        RouteFigures {
            by_method: std::array::from_fn(|_| MethodFigures {
                statuses: Mutex::new(Vec::new()),
                latency: Histogram::new(LATENCY_BOUNDS),
            }),
        }
    }
}

/// This server's answers by route, method and status, since it started.
#[derive(Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<Arc<str>, Arc<RouteFigures>>>,
}

impl HttpMetrics {
    /// Counts one answer of `route` (a route template or [`UNMATCHED`]).
    pub fn count(&self, route: &str, method: &str, status: u16, took: Duration) {
        let figures = self.route(route);
        let index = METHODS
            .iter()
            .position(|known| *known == method)
            .unwrap_or(METHODS.len());
        let figures = &figures.by_method[index];
        figures.latency.observe(took);
        let mut statuses = figures.statuses.lock().unwrap_or_else(|e| e.into_inner());
        match statuses.iter_mut().find(|(code, _)| *code == status) {
            Some((_, count)) => *count += 1,
            None => statuses.push((status, 1)),
        }
    }

    fn route(&self, route: &str) -> Arc<RouteFigures> {
        let known = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
            .cloned();
        known.unwrap_or_else(|| {
            self.routes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .entry(Arc::from(route))
                .or_default()
                .clone()
        })
    }

    /// Writes `regente_http_requests_total` and
    /// `regente_http_request_duration_seconds`.
    pub fn render(&self, out: &mut String) {
        let mut routes: Vec<(Arc<str>, Arc<RouteFigures>)> = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(route, figures)| (route.clone(), figures.clone()))
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let methods = || METHODS.iter().copied().chain([OTHER_METHOD]).enumerate();
        let name = "regente_http_requests_total";
        family(
            out,
            name,
            "counter",
            "Answers of this server since it started, by route template (or unmatched), method \
             and status code.",
        );
        for (route, figures) in &routes {
            for (index, method) in methods() {
                let mut statuses = figures.by_method[index]
                    .statuses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                statuses.sort_unstable();
                for (status, count) in statuses {
                    let _ = writeln!(
                        out,
                        "{name}{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {count}",
                        label(route)
                    );
                }
            }
        }
        let name = "regente_http_request_duration_seconds";
        family(
            out,
            name,
            "histogram",
            "How long this server took to answer, since it started, by route template (or \
             unmatched) and method.",
        );
        for (route, figures) in &routes {
            for (index, method) in methods() {
                let latency = &figures.by_method[index].latency;
                let snapshot = latency.snapshot();
                if snapshot.counts.iter().any(|count| *count > 0) {
                    let labels = format!("route=\"{}\",method=\"{method}\"", label(route));
                    histogram(out, name, &labels, &snapshot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_route_method_and_status() {
        let metrics = HttpMetrics::default();
        let route = "/api/things/{id}";
        let fast = Duration::from_micros(500);
        metrics.count(route, "GET", 200, fast);
        metrics.count(route, "GET", 200, Duration::from_secs(20));
        metrics.count(route, "GET", 404, fast);
        metrics.count(UNMATCHED, "BREW", 404, fast);
        let mut out = String::new();
        metrics.render(&mut out);
        for line in [
            "regente_http_requests_total{route=\"/api/things/{id}\",method=\"GET\",status=\"200\"} 2",
            "regente_http_requests_total{route=\"/api/things/{id}\",method=\"GET\",status=\"404\"} 1",
            "regente_http_requests_total{route=\"unmatched\",method=\"OTHER\",status=\"404\"} 1",
            "regente_http_request_duration_seconds_bucket{route=\"/api/things/{id}\",method=\"GET\",le=\"0.001\"} 2",
            "regente_http_request_duration_seconds_bucket{route=\"/api/things/{id}\",method=\"GET\",le=\"10\"} 2",
            "regente_http_request_duration_seconds_bucket{route=\"/api/things/{id}\",method=\"GET\",le=\"+Inf\"} 3",
            "regente_http_request_duration_seconds_count{route=\"/api/things/{id}\",method=\"GET\"} 3",
            "regente_http_request_duration_seconds_sum{route=\"/api/things/{id}\",method=\"GET\"} 20.001",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
        assert!(!out.contains("method=\"POST\""), "{out}");
    }
}
