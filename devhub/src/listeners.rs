//! Accept loops: MQTT over TLS, plain MQTT, HTTPS (hyper over TLS, with upgrades for
//! WebSockets). Each accepted connection runs in its own task until it ends or devhub stops.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::http_util::RespBody;

/// A TLS handshake must finish within this time (a stuck client must not hold a task forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How an MQTT byte stream reached devhub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tls,
    WebSocket,
    Plain,
}

/// Any byte stream an MQTT connection runs on.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for T {}
pub type BoxStream = Box<dyn ByteStream>;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Serves one MQTT connection until it ends: `(stream, peer, kind)`.
pub type MqttHandler = Arc<dyn Fn(BoxStream, String, Kind) -> BoxFuture<()> + Send + Sync>;

/// Serves one HTTPS request: `(request, peer)`.
pub type HttpHandler =
    Arc<dyn Fn(Request<Incoming>, SocketAddr) -> BoxFuture<http::Response<RespBody>> + Send + Sync>;

async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                return (s, peer);
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Runs `fut` until it ends or `stop` flips.
async fn until_stopped<F: Future<Output = ()>>(fut: F, mut stop: watch::Receiver<bool>) {
    if *stop.borrow() {
        return;
    }
    tokio::select! {
        _ = fut => {}
        _ = stop.changed() => {}
    }
}

/// MQTT listener; `tls` = None for plain TCP.
pub async fn serve_mqtt(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: MqttHandler,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = accept(&listener).await;
        let handler = handler.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let peer = peer.to_string();
            let fut = async move {
                match tls {
                    None => handler(Box::new(tcp), peer, Kind::Plain).await,
                    Some(acc) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(tcp)).await {
                            Ok(Ok(s)) => handler(Box::new(s), peer, Kind::Tls).await,
                            Ok(Err(e)) => tracing::debug!("TLS handshake from {peer} failed: {e}"),
                            Err(_) => tracing::debug!("TLS handshake from {peer} timed out"),
                        }
                    }
                }
            };
            until_stopped(fut, stop).await;
        });
    }
}

/// HTTPS listener (HTTP/1.1 with upgrades, for WebSockets).
pub async fn serve_https(
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: HttpHandler,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = accept(&listener).await;
        let handler = handler.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let fut = async move {
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return tracing::debug!("TLS handshake from {peer} failed: {e}"),
                    Err(_) => return tracing::debug!("TLS handshake from {peer} timed out"),
                };
                let svc = hyper::service::service_fn(move |req| {
                    let h = handler.clone();
                    async move { Ok::<_, std::convert::Infallible>(h(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!("HTTPS connection from {peer}: {e}");
                }
            };
            until_stopped(fut, stop).await;
        });
    }
}
