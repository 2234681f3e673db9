//! The agent's link to the server: dials out (runtimes sit behind NAT), keeps one
//! WebSocket open, sends heartbeats, and reconnects with backoff, moving to the
//! next server address when one does not answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use regente_proto::{AgentMessage, ServerMessage};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;
use tracing::{error, info, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping agent waits for its close frame to go out.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Heartbeat period until the server's welcome says otherwise.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// What the connection tells the agent.
pub enum Inbound {
    /// A new connection: send the hello on `outbound` first.
    Connected {
        outbound: mpsc::UnboundedSender<AgentMessage>,
        server: String,
    },
    Disconnected,
    Message(ServerMessage),
}

/// Keeps a connection to one of `servers` open for as long as the agent runs.
pub async fn maintain(
    servers: Vec<String>,
    key: String,
    tls: Arc<rustls::ClientConfig>,
    inbound: mpsc::UnboundedSender<Inbound>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut index = 0;
    loop {
        let server = &servers[index % servers.len()];
        let started = Instant::now();
        match connect_once(server, &key, &tls, &inbound).await {
            Ok(why) => info!(server, why, "disconnected from the server"),
            Err(e) => {
                match crate::tls::certificate_problem(&e) {
                    Some(problem) => error!(server, "{problem}"),
                    None => warn!(server, error = format!("{e:#}"), "cannot reach the server"),
                }
                index += 1;
            }
        }
        if inbound.send(Inbound::Disconnected).is_err() {
            return;
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = FIRST_BACKOFF;
        }
        let jitter =
            Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn websocket_url(server: &str) -> String {
    let base = server.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{base}{}", regente_proto::CONNECT_PATH)
}

async fn connect_once(
    server: &str,
    key: &str,
    tls: &Arc<rustls::ClientConfig>,
    inbound: &mpsc::UnboundedSender<Inbound>,
) -> anyhow::Result<&'static str> {
    let mut request = websocket_url(server).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse()?);
    // Small messages must not wait on Nagle's algorithm.
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        true,
        Some(Connector::Rustls(tls.clone())),
    );
    let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("connecting took longer than {CONNECT_TIMEOUT:?}"))??;
    info!(server, "connected to the server");
    let (mut sink, mut stream) = socket.split();
    let (outbound, mut outgoing) = mpsc::unbounded_channel();
    inbound
        .send(Inbound::Connected {
            outbound,
            server: server.to_owned(),
        })
        .map_err(|_| anyhow::anyhow!("the agent stopped"))?;
    let mut heartbeat = DEFAULT_HEARTBEAT;
    // The first tick one period from now, not at once: the hello must be the
    // first message on the connection, or the server closes it.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            message = stream.next() => {
                let text = match message {
                    None | Some(Ok(Message::Close(_))) => return Ok("the server closed the connection"),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                };
                last_heard = Instant::now();
                let message: ServerMessage = match serde_json::from_str(&text) {
                    Ok(message) => message,
                    Err(e) => {
                        warn!(error = %e, "unreadable server message ignored");
                        continue;
                    }
                };
                if let ServerMessage::Welcome { heartbeat_ms, .. } = &message {
                    heartbeat = Duration::from_millis((*heartbeat_ms).max(50));
                    tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
                }
                if inbound.send(Inbound::Message(message)).is_err() {
                    return Ok("the agent stopped");
                }
            }
            message = outgoing.recv() => {
                let Some(message) = message else {
                    // The agent is stopping: say goodbye, so the server sees a
                    // normal close rather than a reset.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                    return Ok("the agent stopped");
                };
                sink.send(Message::Text(serde_json::to_string(&message)?.into())).await?;
            }
            _ = tick.tick() => {
                // The server sends a heartbeat every period: three missed ones
                // (half the runtime timeout) mean it is gone; another server may
                // answer before the agent must fence its robots (see `fence`).
                if last_heard.elapsed() > heartbeat * 3 {
                    return Err(anyhow::anyhow!("no word from the server for {:?}", last_heard.elapsed()));
                }
                sink.send(Message::Text(serde_json::to_string(&AgentMessage::Heartbeat)?.into())).await?;
            }
        }
    }
}
