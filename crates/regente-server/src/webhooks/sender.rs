//! Sending deliveries: claimed, POSTed with Standard Webhooks' headers and
//! signature, the attempt recorded with what it means (success, a retry at a
//! time of the schedule or of the endpoint's `Retry-After`, failure for good,
//! or 410 Gone: the webhook disabled).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use regente_store::{AttemptOutcome, Millis, Webhook, WebhookAttempt, WebhookDelivery};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use sha2::Sha256;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::target::{literal_address, GuardedResolver, TargetPolicy};
use crate::config::ServerConfig;
use crate::service::Context;

/// Deliveries in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Deliveries in flight at once to one webhook, so that a slow endpoint does
/// not hold up the others.
pub const PER_ENDPOINT: usize = 4;
/// A POST's total time bound.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claim keeps a delivery from being claimed again: past the POST's
/// bound, so that only a sender that died leaves it to be sent again.
const CLAIM: Millis = 20_000;
/// The longest `Retry-After` followed.
const MAX_RETRY_AFTER: Millis = 6 * 3600 * 1000;
/// How much of an answer is kept.
const EXCERPT_BYTES: usize = 1024;
/// How long the former secret signs beside the new one after a rotation.
pub const ROTATION_OVERLAP: Millis = 24 * 3600 * 1000;
/// The secrets' prefix (Standard Webhooks').
pub const SECRET_PREFIX: &str = "whsec_";

/// Attempts by what they came to, since this server started, for `/metrics`.
#[derive(Default)]
pub struct DeliveryCounts {
    pub succeeded: AtomicU64,
    /// Failed attempts followed by a retry.
    pub retrying: AtomicU64,
    /// Deliveries failed for good (attempts exhausted, or 410 Gone).
    pub failed: AtomicU64,
}

pub struct Sender {
    /// Built for the first delivery (see [`Sender::client`]); a failure is
    /// kept, so that it is not tried again at every look.
    client: Option<Result<reqwest::Client, String>>,
    policy: Arc<TargetPolicy>,
    delays: Arc<Vec<Duration>>,
    in_flight: HashSet<String>,
    per_webhook: HashMap<String, usize>,
    tasks: JoinSet<(String, String)>,
}

impl Sender {
    pub fn new(config: &ServerConfig) -> anyhow::Result<Sender> {
        let policy = Arc::new(TargetPolicy::parse(&config.webhook_allow_hosts)?);
        Ok(Sender {
            client: None,
            policy,
            delays: Arc::new(config.webhook_retry_delays.clone()),
            in_flight: HashSet::new(),
            per_webhook: HashMap::new(),
            tasks: JoinSet::new(),
        })
    }

    /// The HTTP client, built when the first delivery is due: it loads and
    /// keeps the system's root certificates, memory that a server without
    /// webhooks never needs. `None` if it cannot be built: said once, and the
    /// deliveries wait in the store for a server that can send them.
    async fn client(&mut self) -> Option<reqwest::Client> {
        if self.client.is_none() {
            let policy = self.policy.clone();
            // The certificates are files read and parsed: not on a Tokio worker.
            let built = tokio::task::spawn_blocking(move || build_client(policy))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|built| built)
                .map_err(|e| format!("{e:#}"));
            if let Err(e) = &built {
                warn!(error = %e, "webhooks are off: no HTTP client");
            }
            self.client = Some(built);
        }
        self.client.as_ref()?.as_ref().ok().cloned()
    }

    /// Claims and starts due deliveries, within the bounds of what is in flight.
    pub async fn start_due(&mut self, ctx: &Arc<Context>) -> anyhow::Result<()> {
        while let Some(Ok((delivery, webhook))) = self.tasks.try_join_next() {
            self.ended(&delivery, &webhook);
        }
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return Ok(());
        }
        let now = ctx.clock.now();
        let due = ctx.store.due_webhook_deliveries(now, 100).await?;
        if due.is_empty() {
            return Ok(());
        }
        let Some(client) = self.client().await else {
            return Ok(());
        };
        for delivery in due {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            let busy = self
                .per_webhook
                .get(&delivery.webhook_id)
                .copied()
                .unwrap_or(0);
            if busy >= PER_ENDPOINT || self.in_flight.contains(&delivery.id) {
                continue;
            }
            if !ctx
                .store
                .claim_webhook_delivery(&delivery.id, now, now + CLAIM)
                .await?
            {
                continue;
            }
            self.in_flight.insert(delivery.id.clone());
            *self
                .per_webhook
                .entry(delivery.webhook_id.clone())
                .or_default() += 1;
            let attempt = Attempt {
                ctx: ctx.clone(),
                client: client.clone(),
                policy: self.policy.clone(),
                delays: self.delays.clone(),
            };
            self.tasks.spawn(async move {
                let ids = (delivery.id.clone(), delivery.webhook_id.clone());
                if let Err(e) = attempt.run(delivery).await {
                    warn!(error = format!("{e:#}"), delivery = %ids.0, "a webhook attempt was not recorded; it is sent again once its claim ends");
                }
                ids
            });
        }
        Ok(())
    }

    /// Waits until a send ends (never, when none is in flight).
    pub async fn one_ended(&mut self) {
        match self.tasks.join_next().await {
            Some(Ok((delivery, webhook))) => self.ended(&delivery, &webhook),
            Some(Err(e)) => warn!(error = %e, "a webhook send panicked"),
            None => std::future::pending().await,
        }
    }

    fn ended(&mut self, delivery: &str, webhook: &str) {
        self.in_flight.remove(delivery);
        if let Some(busy) = self.per_webhook.get_mut(webhook) {
            *busy = busy.saturating_sub(1);
            if *busy == 0 {
                self.per_webhook.remove(webhook);
            }
        }
    }
}

fn build_client(policy: Arc<TargetPolicy>) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config()?)
        .timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Regente-Webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .build()
        .context("cannot build the webhooks' HTTP client")
}

/// The system's root certificates, on the ring provider as everywhere here.
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    // `ring`, as everywhere here; deprecated in rustls only for lacking the
    // post-quantum key exchange, which needs aws-lc-rs and a C build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `v1,SIGNATURE`: base64 of HMAC-SHA256 under the secret's bytes over
/// `{id}.{timestamp}.{body}`.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> anyhow::Result<String> {
    let key = BASE64
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|_| anyhow::anyhow!("a webhook secret is not base64"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

struct Attempt {
    ctx: Arc<Context>,
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    delays: Arc<Vec<Duration>>,
}

/// What a POST came to.
struct Answer {
    status: Option<StatusCode>,
    retry_after: Option<Millis>,
    error: Option<String>,
    excerpt: Option<String>,
}

impl Attempt {
    async fn run(self, delivery: WebhookDelivery) -> anyhow::Result<()> {
        let ctx = &self.ctx;
        let webhook = match ctx
            .store
            .get_webhook(&delivery.organization_id, &delivery.webhook_id)
            .await
        {
            // Deleted meanwhile, with its deliveries.
            Err(regente_store::Error::NotFound) => return Ok(()),
            webhook => webhook?,
        };
        let at = ctx.clock.now();
        let started = Instant::now();
        let answer = match self.signatures(&webhook, &delivery, at) {
            Ok((timestamp, signatures)) => {
                self.post(&webhook, &delivery, timestamp, &signatures).await
            }
            Err(e) => Answer {
                status: None,
                retry_after: None,
                error: Some(format!("{e:#}")),
                excerpt: None,
            },
        };
        let duration_ms = started.elapsed().as_millis() as i64;
        let outcome = self.outcome(&delivery, &answer, ctx.clock.now());
        let counts = &ctx.webhook_counts;
        match &outcome {
            AttemptOutcome::Succeeded => counts.succeeded.fetch_add(1, Ordering::Relaxed),
            AttemptOutcome::RetryAt(_) => counts.retrying.fetch_add(1, Ordering::Relaxed),
            AttemptOutcome::Failed | AttemptOutcome::Gone { .. } => {
                counts.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        debug!(delivery = %delivery.id, webhook = %webhook.id, status = ?answer.status, error = ?answer.error, "webhook attempt");
        let attempt = WebhookAttempt {
            delivery_id: delivery.id.clone(),
            attempt: delivery.attempts + 1,
            at,
            duration_ms,
            status_code: answer.status.map(|status| i64::from(status.as_u16())),
            error: answer.error,
            response: answer.excerpt,
        };
        ctx.store.record_webhook_attempt(&attempt, &outcome).await?;
        Ok(())
    }

    /// The attempt's timestamp (unix seconds) and its `webhook-signature`: the
    /// current secret's, and during a rotation's overlap the former one's too.
    fn signatures(
        &self,
        webhook: &Webhook,
        delivery: &WebhookDelivery,
        now: Millis,
    ) -> anyhow::Result<(i64, String)> {
        let vault = &self.ctx.vault;
        let timestamp = now.div_euclid(1000);
        let mut sealed = vec![&webhook.secret];
        if let (Some(previous), Some(until)) =
            (&webhook.previous_secret, webhook.previous_secret_until)
        {
            if now < until {
                sealed.push(previous);
            }
        }
        let mut signatures = Vec::new();
        for sealed in sealed {
            let secret =
                vault.open_webhook_secret(&webhook.organization_id, &webhook.id, sealed)?;
            signatures.push(signature(
                &secret,
                &delivery.id,
                timestamp,
                &delivery.payload,
            )?);
        }
        Ok((timestamp, signatures.join(" ")))
    }

    async fn post(
        &self,
        webhook: &Webhook,
        delivery: &WebhookDelivery,
        timestamp: i64,
        signatures: &str,
    ) -> Answer {
        let failed = |error: String| Answer {
            status: None,
            retry_after: None,
            error: Some(error),
            excerpt: None,
        };
        let url = match super::target::parse_url(&webhook.url) {
            Ok(url) => url,
            Err(e) => return failed(format!("the URL {e}")),
        };
        if let Some(address) = literal_address(&url) {
            if let Some(refusal) = self
                .policy
                .refusal(url.host_str().unwrap_or_default(), address)
            {
                return failed(refusal);
            }
        }
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(delivery.payload.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return failed(describe(&e)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers(), self.ctx.clock.now());
        let mut excerpt = Vec::new();
        let mut error = None;
        while excerpt.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(&e));
                    break;
                }
            }
        }
        excerpt.truncate(EXCERPT_BYTES);
        Answer {
            status: Some(status),
            retry_after,
            error,
            excerpt: Some(String::from_utf8_lossy(&excerpt).into_owned()),
        }
    }

    fn outcome(&self, delivery: &WebhookDelivery, answer: &Answer, now: Millis) -> AttemptOutcome {
        match answer.status {
            Some(status) if status.is_success() => return AttemptOutcome::Succeeded,
            Some(StatusCode::GONE) => {
                return AttemptOutcome::Gone {
                    reason: format!(
                        "the endpoint answered 410 Gone at {}",
                        crate::console::format::iso(now)
                    ),
                }
            }
            _ => {}
        }
        let this_round = usize::try_from(delivery.round_attempts).unwrap_or(usize::MAX);
        let Some(delay) = self.delays.get(this_round) else {
            return AttemptOutcome::Failed;
        };
        let scheduled = now + delay.as_millis() as Millis;
        let asked = match answer.status {
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) => {
                answer.retry_after.map(|at| at.min(now + MAX_RETRY_AFTER))
            }
            _ => None,
        };
        AttemptOutcome::RetryAt(asked.map_or(scheduled, |asked| asked.max(scheduled)))
    }
}

/// `Retry-After` as a time: delay seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, now: Millis) -> Option<Millis> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(now.saturating_add(seconds.saturating_mul(1000).min(i64::MAX as u64) as i64));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(ms.min(i64::MAX as u128) as Millis)
}

/// A send's failure in a few words, with its causes.
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "no answer within 15 s"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let mut text = what.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_follows_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let signed = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers, 1_000), Some(4_000));
        headers.insert(
            RETRY_AFTER,
            "Thu, 01 Jan 1970 00:01:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, 1_000), Some(60_000));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, 1_000), None);
    }
}
