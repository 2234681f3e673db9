//! Simulated runtime agents: one lightweight task per runtime that speaks the real
//! protocol (`regente-proto` over a WebSocket), says hello, and then only answers
//! with heartbeats. They hold connections open so the server's memory per
//! connected runtime can be measured without a thousand agent processes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use regente_proto::{AgentMessage, ServerMessage, PROTOCOL_VERSION};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub struct SimAgents {
    tasks: JoinSet<()>,
    /// Agents the server has welcomed.
    pub welcomed: Arc<AtomicUsize>,
    /// What went wrong with any of them.
    pub failures: Arc<Mutex<Vec<String>>>,
}

/// Connects one simulated agent per key (at most 64 handshakes at once).
pub fn connect(base: &str, keys: Vec<String>) -> SimAgents {
    let url = format!(
        "{}{}",
        base.replacen("http://", "ws://", 1),
        regente_proto::CONNECT_PATH
    );
    let welcomed = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let handshakes = Arc::new(Semaphore::new(64));
    let mut tasks = JoinSet::new();
    for key in keys {
        let (url, welcomed, failures, handshakes) = (
            url.clone(),
            welcomed.clone(),
            failures.clone(),
            handshakes.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = agent(&url, &key, &welcomed, &handshakes).await {
                failures.lock().unwrap().push(format!("{e:#}"));
            }
        });
    }
    SimAgents {
        tasks,
        welcomed,
        failures,
    }
}

async fn agent(
    url: &str,
    key: &str,
    welcomed: &AtomicUsize,
    handshakes: &Semaphore,
) -> anyhow::Result<()> {
    let permit = handshakes.acquire().await?;
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse()?);
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting took over 30 s"))??;
    let (mut sink, mut stream) = socket.split();
    let hello = AgentMessage::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: format!("regente-bench {}", env!("CARGO_PKG_VERSION")),
        slots: 1,
        held: Vec::new(),
        instance: None,
    };
    sink.send(Message::Text(serde_json::to_string(&hello)?.into()))
        .await?;
    let heartbeat = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("no welcome within 30 s"))?;
        match message {
            Some(Ok(Message::Text(text))) => {
                if let Ok(ServerMessage::Welcome { heartbeat_ms, .. }) = serde_json::from_str(&text)
                {
                    break Duration::from_millis(heartbeat_ms.max(50));
                }
            }
            Some(Ok(Message::Close(frame))) => anyhow::bail!("closed before welcome: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("closed before welcome"),
        }
    };
    drop(permit);
    welcomed.fetch_add(1, Ordering::Relaxed);
    let mut tick = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                None | Some(Ok(Message::Close(_))) => anyhow::bail!("the server closed the connection"),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(_)) => {}
            },
            _ = tick.tick() => {
                sink.send(Message::Text(serde_json::to_string(&AgentMessage::Heartbeat)?.into())).await?;
            }
        }
    }
}

impl SimAgents {
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
