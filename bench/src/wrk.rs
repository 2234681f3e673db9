//! Loads of GET requests driven by `wrk` (Debian package `wrk`): an event loop in C
//! that costs a fraction of what the server it measures does, where the
//! benchmark's own async client spent about as much CPU per request as the server
//! and capped the read figures near 29,000/s on 2 cores.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::http::{Latencies, Load};

/// `GET url` with `headers` at `connections` keep-alive connections for `duration`.
/// A request succeeds on a 2xx or 3xx answer; socket errors count as failures.
pub fn get(
    url: &str,
    headers: &[(&str, &str)],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let mut command = Command::new("wrk");
    command
        .arg("--threads")
        .arg(connections.clamp(1, 2).to_string())
        .arg("--connections")
        .arg(connections.to_string())
        .arg("--duration")
        .arg(format!("{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("10s")
        .arg("--latency");
    for (name, value) in headers {
        command.arg("--header").arg(format!("{name}: {value}"));
    }
    let output = command.arg(url).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "wrk is not installed (Debian: apt-get install wrk); the read figures need it"
            )
        } else {
            anyhow::anyhow!("starting wrk: {e}")
        }
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

/// Reads wrk's report (`--latency`).
fn parse(report: &str) -> anyhow::Result<Load> {
    let mut total = None;
    let mut rate = None;
    let mut not_ok = 0;
    let mut socket_errors = 0;
    let mut quantiles = Vec::new();
    let mut max_us = None;
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Latency", _avg, _stdev, max, ..] => max_us = Some(micros(max)?),
            [percent, value] if percent.ends_with('%') => {
                let p: f64 = percent.trim_end_matches('%').parse()?;
                quantiles.push((p / 100.0, micros(value)?));
            }
            [count, "requests", "in", ..] => total = Some(count.parse::<u64>()?),
            ["Requests/sec:", value] => rate = Some(value.parse::<f64>()?),
            ["Non-2xx", "or", "3xx", "responses:", count] => not_ok = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                socket_errors = rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    let (Some(total), Some(rate), Some(max_us)) = (total, rate, max_us) else {
        bail!("no request count, rate or latency line");
    };
    if quantiles.is_empty() || rate <= 0.0 {
        bail!("no latency distribution or no requests");
    }
    quantiles.push((1.0, max_us));
    let errors = not_ok + socket_errors;
    let ok = total.saturating_sub(not_ok);
    Ok(Load {
        ok,
        errors,
        first_error: (errors > 0).then(|| {
            format!("wrk: {not_ok} answers not 2xx or 3xx, {socket_errors} socket errors")
        }),
        latencies: Latencies::Quantiles(quantiles),
        elapsed: Duration::from_secs_f64(total as f64 / rate),
        out_of_time: false,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`, `1.00m`.
fn micros(text: &str) -> anyhow::Result<u64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok((number * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:18080/healthz
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.24ms    2.44ms  31.78ms   86.70%
    Req/Sec    16.60k     5.15k   31.67k    77.00%
  Latency Distribution
     50%  812.00us
     75%    2.50ms
     90%    4.00ms
     99%   12.00ms
  164409 requests in 5.00s, 20.06MB read
  Non-2xx or 3xx responses: 9
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  32881.77
Transfer/sec:      4.01MB
";

    #[test]
    fn reads_the_counts_the_rate_and_the_quantiles() {
        let load = parse(REPORT).unwrap();
        assert_eq!(load.ok, 164_400);
        assert_eq!(load.errors, 12);
        assert!((load.rate() - 32_880.0).abs() < 5.0, "{}", load.rate());
        assert_eq!(load.quantile_ms(0.5), 0.812);
        assert_eq!(load.quantile_ms(0.9), 4.0);
        assert_eq!(load.quantile_ms(0.99), 12.0);
        assert_eq!(load.quantile_ms(1.0), 31.78);
    }

    #[test]
    fn a_report_without_requests_is_an_error() {
        assert!(parse("Running 1s test @ http://x\n").is_err());
    }
}
