//! Scaled-out purge propagation over NATS JetStream: every purge is one message on the
//! `outpost.purge` subject of a file-backed stream, and the stream sequence is the purge
//! version. Each node reads the stream through a durable pull consumer of its own
//! (`outpost-<node_id>`), applies messages strictly in sequence order, and acknowledges each
//! after applying it; a gap (a message it never saw) is filled by reading the stream directly,
//! and repeats are acknowledged and skipped. After a disconnect or a server restart the client
//! reconnects and the consumer resumes where it left off. A purge published while the
//! server restarts is sent again until it is acknowledged (bounded by [`PUBLISH_PATIENCE`]),
//! under one message id, so the stream keeps it once.

use super::event::{PurgeEvent, PurgeTarget};
use agent::throttle::RepeatedWarning;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The subject purges are published on.
pub(crate) const SUBJECT: &str = "outpost.purge";

/// The message body: a purge without its version (the stream sequence is the version).
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    at_ms: u64,
    #[serde(default)]
    soft: bool,
    target: PurgeTarget,
}

/// Where the stream's purges go (the purge service): in version order, each once.
pub trait Apply: Send + Sync {
    /// The newest version applied.
    fn applied(&self) -> u64;
    /// Applies `ev` if it is the next version; false if it could not be applied.
    fn apply(&self, ev: &PurgeEvent) -> bool;
}

/// How long a purge is retried while the server cannot be reached before the purge is
/// refused (a restart of the server takes well under this).
pub(crate) const PUBLISH_PATIENCE: Duration = Duration::from_secs(10);

/// How long one publish attempt waits for the stream's acknowledgement.
const PUBLISH_ATTEMPT: Duration = Duration::from_secs(2);

/// A connection to the purge stream.
pub struct NatsBus {
    js: jetstream::Context,
    stream: String,
    durable: String,
    /// When this process connected (ns since the epoch) and how many purges it has sent:
    /// what makes each message id unique.
    started_ns: u128,
    sent: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .finish()
    }
}

impl NatsBus {
    /// Connects (retrying in the background if the server is not up yet).
    pub async fn connect(url: &str, stream: &str, node_id: &str) -> Result<Arc<Self>, String> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(3))
            .name(format!("outpost-{node_id}"))
            .connect(url)
            .await
            .map_err(|e| format!("NATS {url}: {e}"))?;
        Ok(Arc::new(Self {
            // Requests to the stream give up after one publish attempt's time, so a request
            // lost to a restarting server is sent again soon (see `publish`).
            js: jetstream::ContextBuilder::new()
                .timeout(PUBLISH_ATTEMPT)
                .build(client),
            stream: stream.to_string(),
            durable: format!("outpost-{node_id}"),
            started_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            sent: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    async fn stream(&self) -> Result<stream::Stream, String> {
        self.js
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![SUBJECT.to_string()],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("stream {}: {e}", self.stream))
    }

    /// Publishes a purge; returns its version (the stream sequence).
    ///
    /// A server restart or a dropped connection is ridden out: the purge is sent again
    /// (after a short backoff) until it is acknowledged or 10 s (`PUBLISH_PATIENCE`) have passed.
    /// Every attempt carries the same `Nats-Msg-Id`, so an attempt whose acknowledgement was
    /// lost is not stored twice: the stream answers a repeat with the first one's sequence.
    pub async fn publish(
        &self,
        target: PurgeTarget,
        soft: bool,
        at_ms: u64,
    ) -> Result<u64, String> {
        let body = Bytes::from(
            serde_json::to_vec(&Message {
                at_ms,
                soft,
                target,
            })
            .map_err(|e| e.to_string())?,
        );
        let id = self.next_message_id();
        let deadline = tokio::time::Instant::now() + PUBLISH_PATIENCE;
        let mut backoff = Duration::from_millis(50);
        loop {
            // Bounded here as a whole: a request lost with the old connection is not
            // answered, and the client's own request timeout is longer.
            let attempt = tokio::time::timeout(PUBLISH_ATTEMPT, self.publish_once(&body, &id))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "publish: no acknowledgement within {PUBLISH_ATTEMPT:?}"
                    ))
                });
            match attempt {
                Ok(seq) => return Ok(seq),
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, "publishing a purge failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt at publishing `body` as message `id`.
    async fn publish_once(&self, body: &Bytes, id: &str) -> Result<u64, String> {
        self.stream().await?;
        let msg = jetstream::message::PublishMessage::build()
            .payload(body.clone())
            .message_id(id);
        let ack = self
            .js
            .send_publish(SUBJECT, msg)
            .await
            .map_err(|e| format!("publish: {e}"))?;
        let ack = ack.await.map_err(|e| format!("publish: {e}"))?;
        Ok(ack.sequence)
    }

    /// A message id no other purge of the fleet has: this node's consumer name, when this
    /// process started, and a counter.
    fn next_message_id(&self) -> String {
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{}-{n}", self.durable, self.started_ns)
    }

    fn decode(seq: u64, payload: &[u8]) -> Result<PurgeEvent, String> {
        let m: Message = serde_json::from_slice(payload)
            .map_err(|e| format!("message {seq} is not a purge: {e}"))?;
        Ok(PurgeEvent {
            version: seq,
            at_ms: m.at_ms,
            soft: m.soft,
            target: m.target,
        })
    }

    /// Reads the stream and applies purges in order until `shutdown` flips.
    pub async fn consume(
        self: Arc<Self>,
        svc: Arc<dyn Apply>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(100);
        let unavailable = RepeatedWarning::new(
            format!("purge stream {} unavailable", self.stream),
            format!("purge stream {} available again", self.stream),
        );
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.consume_once(&svc, &unavailable, &mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    agent::log_report!(unavailable.failed(&e));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Reads the stream until an error or `shutdown`; `unavailable` learns when it is read
    /// again.
    async fn consume_once(
        &self,
        svc: &Arc<dyn Apply>,
        unavailable: &RepeatedWarning,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let stream = self.stream().await?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.durable,
                consumer::pull::Config {
                    durable_name: Some(self.durable.clone()),
                    deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: svc.applied() + 1,
                    },
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(10),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("consumer {}: {e}", self.durable))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| format!("consumer {}: {e}", self.durable))?;
        agent::log_report!(unavailable.succeeded());
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(format!("reading the purge stream: {e}")),
                None => return Err("the purge stream ended".into()),
            };
            let seq = msg.info().map_err(|e| e.to_string())?.stream_sequence;
            let applied = svc.applied();
            if seq > applied + 1 {
                // A gap: read what this node missed straight from the stream, in order.
                for s in applied + 1..seq {
                    let raw = stream
                        .get_raw_message(s)
                        .await
                        .map_err(|e| format!("reading purge {s}: {e}"))?;
                    let ev = Self::decode(s, &raw.payload)?;
                    if !svc.apply(&ev) {
                        return Err(format!("purge {s} could not be applied"));
                    }
                }
            }
            if seq > svc.applied() {
                match Self::decode(seq, &msg.payload) {
                    Ok(ev) => {
                        if !svc.apply(&ev) {
                            return Err(format!("purge {seq} could not be applied"));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            msg.ack().await.map_err(|e| format!("ack {seq}: {e}"))?;
        }
    }
}
