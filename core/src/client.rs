//! `ModuleClient`: the public API every binding wraps. Cheap to clone (an `Arc` inside), usable
//! from any thread and any executor: each call sends a command to the session task on the
//! core's runtime and awaits the answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rumqttc::QoS;
use tokio::sync::{mpsc, oneshot};

use crate::credentials::{Credentials, Identity};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{ConnectionStatus, Event};
use crate::http::{self, Endpoint};
use crate::message::Message;
use crate::options::{BrokerOptions, ClientOptions};
use crate::protocol::twin::Twin;
use crate::runtime::RuntimeGuard;
use crate::session::{self, Auth, Command, Session, Shared};

const ID_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Depth and age of the offline queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub depth: usize,
    pub oldest_age: Option<Duration>,
}

/// The answer of a direct method invoked on another module.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MethodResponse {
    pub status: i32,
    pub payload: serde_json::Value,
}

/// An IoT Edge module's connection to its edge hub.
#[derive(Clone)]
pub struct ModuleClient {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    shared: Arc<Mutex<Shared>>,
    credentials: Option<Arc<Credentials>>,
    options: ClientOptions,
    closed: AtomicBool,
    /// Dropped last: shuts the runtime down when this was the last client.
    runtime: RuntimeGuard,
}

impl std::fmt::Debug for ModuleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleClient")
            .field("identity", &self.identity())
            .finish()
    }
}

impl ModuleClient {
    /// A client for the module this process runs as, from the IoT Edge environment
    /// (IOTEDGE_* variables and the Workload API), or from `EdgeHubConnectionString` plus
    /// `EdgeModuleCACertificateFile` when those are not all set. Unset ports come from
    /// `EDGEMODULE_MQTT_PORT` / `EDGEMODULE_HTTPS_PORT` (a local devhub on ephemeral ports).
    pub fn from_environment(options: ClientOptions) -> Result<ModuleClient> {
        Self::from_environment_with(|k| std::env::var(k).ok(), options)
    }

    /// Like [`ModuleClient::from_environment`], reading variables through `get` (for hosts
    /// that keep their own environment, and for tests).
    pub fn from_environment_with(
        get: impl Fn(&str) -> Option<String>,
        options: ClientOptions,
    ) -> Result<ModuleClient> {
        let options = options.with_port_overrides(&get)?;
        let creds = Credentials::from_environment(get, options.trust_bundle_pem.clone())?;
        Self::with_auth(Auth::Module {
            credentials: Arc::new(creds),
            options,
        })
    }

    /// A client from a module connection string (`HostName=..;DeviceId=..;ModuleId=..;
    /// SharedAccessKey=..[;GatewayHostName=host[:port]]`). The TLS roots come from
    /// `options.trust_bundle_pem`, else from the file named by `EdgeModuleCACertificateFile`.
    pub fn from_connection_string(cs: &str, options: ClientOptions) -> Result<ModuleClient> {
        let options = options.with_port_overrides(|k| std::env::var(k).ok())?;
        let ca = match &options.trust_bundle_pem {
            Some(p) => Some(p.clone()),
            None => match std::env::var("EdgeModuleCACertificateFile") {
                Ok(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                    Error::config(format!("EdgeModuleCACertificateFile {path:?}: {e}"))
                })?),
                Err(_) => None,
            },
        };
        let creds = Credentials::from_connection_string(cs, ca)?;
        Self::with_auth(Auth::Module {
            credentials: Arc::new(creds),
            options,
        })
    }

    /// A client of a plain MQTT 3.1.1 broker (broker mode: `publish`, `subscribe`,
    /// `TopicMessage` events), e.g. mosquitto.
    pub fn from_broker(broker: BrokerOptions, mut options: ClientOptions) -> Result<ModuleClient> {
        if broker.host.is_empty() || broker.client_id.is_empty() {
            return Err(Error::config("broker host and client id must not be empty"));
        }
        options.enable_inputs = false;
        options.enable_methods = false;
        options.enable_twin_patches = false;
        Self::with_auth(Auth::Broker(broker, options))
    }

    fn with_auth(auth: Auth) -> Result<ModuleClient> {
        let runtime = RuntimeGuard::acquire().map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot start the runtime: {e}"),
            )
        })?;
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (credentials, options) = match &auth {
            Auth::Module {
                credentials,
                options,
            } => (Some(credentials.clone()), options.clone()),
            Auth::Broker(_, options) => (None, options.clone()),
        };
        let session = Session::new(auth, commands_tx.clone(), events_tx, shared.clone());
        runtime.handle().spawn(session.run(commands_rx));
        Ok(ModuleClient {
            inner: Arc::new(Inner {
                commands: commands_tx,
                events: tokio::sync::Mutex::new(events_rx),
                shared,
                credentials,
                options,
                closed: AtomicBool::new(false),
                runtime,
            }),
        })
    }

    /// Who this client is (None for a plain broker client).
    pub fn identity(&self) -> Option<Identity> {
        self.inner.credentials.as_ref().map(|c| c.identity.clone())
    }

    /// The core runtime's handle, for bindings that need to run a future (a timer, a blocking
    /// wait with a deadline) where the client's I/O lives. Never block inside it.
    pub fn runtime_handle(&self) -> tokio::runtime::Handle {
        self.inner.runtime.handle().clone()
    }

    /// Wait up to `timeout` for the next event: `Ok(Some)` an event, `Ok(None)` closed,
    /// `Err(Timeout)` nothing arrived in time. Blocks the calling thread (C and sync facades).
    pub fn next_event_blocking(&self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let this = self.clone();
        let task = self.inner.runtime.handle().spawn(async move {
            match timeout {
                Some(t) => tokio::time::timeout(t, this.next_event())
                    .await
                    .map_err(|_| Error::timeout("waiting for an event")),
                None => Ok(this.next_event().await),
            }
        });
        futures_lite_block_on(task)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("event wait failed: {e}")))?
    }

    /// The options it was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    async fn call<T>(&self, make: impl FnOnce(session::Reply<T>) -> Command) -> Result<T> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(tx))
            .map_err(|_| Error::closed())?;
        rx.await.map_err(|_| Error::closed())?
    }

    /// Connect to the hub. Resolves once connected; transient failures are retried within
    /// `options.connect_timeout`, refused credentials fail at once. After this the client
    /// reconnects by itself whenever the link drops.
    pub async fn connect(&self) -> Result<()> {
        self.call(Command::Connect).await
    }

    fn module_ids(&self) -> Result<(String, String)> {
        let c = self.inner.credentials.as_ref().ok_or_else(|| {
            Error::invalid("this is a broker-mode client: it has no module identity")
        })?;
        Ok((c.identity.device_id.clone(), c.identity.module_id.clone()))
    }

    /// Send a message to a named output; resolves on the hub's PUBACK. While offline the
    /// message waits in the bounded offline queue.
    pub async fn send_message_to_output(&self, output: &str, message: Message) -> Result<()> {
        let (d, m) = self.module_ids()?;
        let (topic, payload) = session::output_publish(&d, &m, Some(output), &message)?;
        self.publish_raw(topic, payload, QoS::AtLeastOnce).await
    }

    /// Send telemetry (no output name).
    pub async fn send_message(&self, message: Message) -> Result<()> {
        let (d, m) = self.module_ids()?;
        let (topic, payload) = session::output_publish(&d, &m, None, &message)?;
        self.publish_raw(topic, payload, QoS::AtLeastOnce).await
    }

    /// Send many messages to one output, pipelined (all in flight at once); one result each,
    /// in order.
    pub async fn send_messages_to_output(
        &self,
        output: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<()>> {
        let mut waiting = Vec::with_capacity(messages.len());
        for message in messages {
            let submitted = (|| {
                let (d, m) = self.module_ids()?;
                let (topic, payload) = session::output_publish(&d, &m, Some(output), &message)?;
                self.submit_publish(topic, payload, QoS::AtLeastOnce)
            })();
            waiting.push(submitted);
        }
        let mut results = Vec::with_capacity(waiting.len());
        for w in waiting {
            results.push(match w {
                Ok(rx) => rx.await.unwrap_or_else(|_| Err(Error::closed())),
                Err(e) => Err(e),
            });
        }
        results
    }

    fn submit_publish(
        &self,
        topic: String,
        payload: Bytes,
        qos: QoS,
    ) -> Result<oneshot::Receiver<Result<()>>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Publish {
                topic,
                payload,
                qos,
                reply: Some(tx),
            })
            .map_err(|_| Error::closed())?;
        Ok(rx)
    }

    async fn publish_raw(&self, topic: String, payload: Bytes, qos: QoS) -> Result<()> {
        let rx = self.submit_publish(topic, payload, qos)?;
        rx.await.map_err(|_| Error::closed())?
    }

    /// The next event, or `None` once the client is closed.
    pub async fn next_event(&self) -> Option<Event> {
        if self.inner.closed.load(Ordering::Acquire) {
            return None;
        }
        let mut rx = self.inner.events.lock().await;
        let ev = rx.recv().await;
        if self.inner.closed.load(Ordering::Acquire) {
            return None;
        }
        ev
    }

    /// The next event if one is waiting now.
    pub fn try_next_event(&self) -> Option<Event> {
        if self.inner.closed.load(Ordering::Acquire) {
            return None;
        }
        self.inner.events.try_lock().ok()?.try_recv().ok()
    }

    /// The module twin (desired and reported sections).
    pub async fn get_twin(&self) -> Result<Twin> {
        self.module_ids()?;
        self.call(Command::GetTwin).await
    }

    /// Patch reported properties (`null` deletes a member). Returns the new reported version
    /// when the hub gives one.
    pub async fn patch_reported(&self, patch: serde_json::Value) -> Result<Option<i64>> {
        self.module_ids()?;
        self.call(|r| Command::PatchReported(patch, r)).await
    }

    /// Answer a direct method request.
    pub async fn respond_method(
        &self,
        request_id: &str,
        status: i32,
        payload: serde_json::Value,
    ) -> Result<()> {
        self.module_ids()?;
        if request_id.is_empty() {
            return Err(Error::invalid("the method request id is empty"));
        }
        let topic = crate::protocol::topics::method_response_topic(status, request_id);
        let body = Bytes::from(payload.to_string());
        self.publish_raw(topic, body, QoS::AtMostOnce).await
    }

    /// Invoke a direct method on another module (or leaf device when `module` is empty) through
    /// the gateway's HTTPS API (PROTOCOL §9).
    pub async fn invoke_method(
        &self,
        device_id: &str,
        module_id: &str,
        method: &str,
        payload: serde_json::Value,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<MethodResponse> {
        let creds = self
            .inner
            .credentials
            .clone()
            .ok_or_else(|| Error::invalid("a broker-mode client cannot invoke methods"))?;
        if device_id.is_empty() || method.is_empty() {
            return Err(Error::invalid(
                "device id and method name must not be empty",
            ));
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        let path = if module_id.is_empty() {
            format!(
                "/twins/{}/methods",
                utf8_percent_encode(device_id, ID_SEGMENT)
            )
        } else {
            format!(
                "/twins/{}/modules/{}/methods",
                utf8_percent_encode(device_id, ID_SEGMENT),
                utf8_percent_encode(module_id, ID_SEGMENT)
            )
        };
        let body = serde_json::json!({
            "methodName": method,
            "payload": payload,
            "responseTimeoutInSeconds": response_timeout.as_secs(),
            "connectTimeoutInSeconds": connect_timeout.as_secs(),
        });
        let port = self.inner.options.https_port.unwrap_or(443);
        let fut = async move {
            let ca = creds.trust_bundle().await?;
            let tls = crate::tls::client_config(&ca, &[b"http/1.1"])?;
            let token = creds.token(Duration::from_secs(3600)).await?;
            let endpoint = Endpoint::Tls {
                host: creds.identity.gateway_host.clone(),
                port,
                config: tls,
            };
            let headers = [
                ("Authorization", token.value.clone()),
                (
                    "x-ms-edge-moduleId",
                    format!("{}/{}", creds.identity.device_id, creds.identity.module_id),
                ),
                ("Content-Type", "application/json".to_string()),
                ("User-Agent", crate::options::client_type(None)),
            ];
            let timeout = response_timeout + connect_timeout + Duration::from_secs(10);
            let resp = http::request(
                &endpoint,
                "POST",
                &format!("{path}?api-version=2020-09-30"),
                &headers,
                Some(body.to_string().into_bytes()),
                timeout,
                ErrorKind::Connection,
            )
            .await?;
            match resp.status {
                200 => serde_json::from_slice::<MethodResponse>(&resp.body).map_err(|e| {
                    Error::new(
                        ErrorKind::Protocol,
                        format!("malformed method response from the gateway: {e}"),
                    )
                }),
                404 => Err(Error::with_status(
                    ErrorKind::NotFound,
                    404,
                    http::error_message(&resp.body),
                )),
                504 => Err(Error::with_status(
                    ErrorKind::Timeout,
                    504,
                    http::error_message(&resp.body),
                )),
                401 | 403 => Err(Error::with_status(
                    ErrorKind::Authentication,
                    resp.status,
                    http::error_message(&resp.body),
                )),
                400 => Err(Error::with_status(
                    ErrorKind::InvalidArgument,
                    400,
                    http::error_message(&resp.body),
                )),
                s => Err(Error::with_status(
                    if s == 429 {
                        ErrorKind::Throttled
                    } else {
                        ErrorKind::HubError
                    },
                    s,
                    http::error_message(&resp.body),
                )),
            }
        };
        self.inner
            .runtime
            .handle()
            .spawn(fut)
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("invoke task failed: {e}")))?
    }

    /// Publish on a user topic (broker mode). `qos` is 0 or 1.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, qos: u8) -> Result<()> {
        validate_user_topic(topic, false)?;
        let qos = to_qos(qos)?;
        if payload.len() > crate::message::MAX_MESSAGE_SIZE {
            return Err(Error::new(
                ErrorKind::MessageTooLarge,
                format!(
                    "the payload is {} bytes; at most {} are allowed",
                    payload.len(),
                    crate::message::MAX_MESSAGE_SIZE
                ),
            ));
        }
        self.publish_raw(topic.to_string(), Bytes::from(payload), qos)
            .await
    }

    /// Subscribe to a user topic filter (`+` and `#` wildcards); kept across reconnects.
    pub async fn subscribe(&self, filter: &str, qos: u8) -> Result<()> {
        validate_user_topic(filter, true)?;
        let qos = to_qos(qos)?;
        let filter = filter.to_string();
        self.call(|reply| Command::Subscribe { filter, qos, reply })
            .await
    }

    pub async fn unsubscribe(&self, filter: &str) -> Result<()> {
        validate_user_topic(filter, true)?;
        let filter = filter.to_string();
        self.call(|reply| Command::Unsubscribe { filter, reply })
            .await
    }

    /// Close gracefully: pending operations fail with `Closed`, `next_event` yields `None`.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The current connection status.
    pub fn status(&self) -> ConnectionStatus {
        self.inner
            .shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
    }

    /// Depth and age of the offline queue.
    pub fn queue_stats(&self) -> QueueStats {
        let s = self.inner.shared.lock().unwrap_or_else(|p| p.into_inner());
        QueueStats {
            depth: s.queue_depth,
            oldest_age: s.oldest_queued.map(|t| t.elapsed()),
        }
    }

    /// Run a future on the core's runtime and block the calling thread until it completes
    /// (for blocking facades: C, the sync Python client). Never call it from async code.
    pub fn block_on<F: std::future::Future>(&self, fut: F) -> F::Output {
        futures_lite_block_on(fut)
    }
}

fn to_qos(qos: u8) -> Result<QoS> {
    match qos {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => Err(Error::invalid(format!(
            "QoS {qos} is not supported (0 or 1; the hub closes connections that use QoS 2)"
        ))),
    }
}

fn validate_user_topic(topic: &str, filter: bool) -> Result<()> {
    if topic.is_empty() || topic.len() > 65535 || topic.contains('\0') {
        return Err(Error::invalid(
            "the topic is empty, too long or holds a NUL",
        ));
    }
    if !filter && (topic.contains('+') || topic.contains('#')) {
        return Err(Error::invalid(format!(
            "wildcards are not allowed in a publish topic: {topic:?}"
        )));
    }
    if filter {
        let levels: Vec<&str> = topic.split('/').collect();
        for (i, l) in levels.iter().enumerate() {
            if (l.contains('#') && (*l != "#" || i != levels.len() - 1))
                || (l.contains('+') && *l != "+")
            {
                return Err(Error::invalid(format!("malformed topic filter {topic:?}")));
            }
        }
    }
    Ok(())
}

/// A minimal executor for blocking facades: park the thread until the future is ready. The
/// future only awaits channels fed by the core's runtime, so no reactor is needed here.
pub fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_topics_are_validated() {
        assert!(validate_user_topic("a/b", false).is_ok());
        assert!(validate_user_topic("a/+/c/#", true).is_ok());
        assert!(validate_user_topic("a/#/c", true).is_err());
        assert!(validate_user_topic("a/b+", true).is_err());
        assert!(validate_user_topic("a/+", false).is_err());
        assert!(validate_user_topic("", false).is_err());
        assert!(to_qos(2).is_err());
    }
}
