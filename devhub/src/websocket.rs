//! MQTT over WebSockets on the HTTPS port (PROTOCOL §4): the upgrade handshake, then binary
//! frames bridged to a byte stream for the MQTT engine.
//!
//! Like edgeHub, the listener is chosen by the `mqtt` subprotocol, not by the path
//! (`/$iothub/websocket` is what the SDKs use). A client offering no subprotocol at all is
//! accepted too (lenient for hand-written tests).

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::WebSocketStream;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use ws_stream_tungstenite::WsStream;

use crate::http_util::{self, RespBody};
use crate::listeners::{Kind, MqttHandler};

/// Whether `req` asks for a WebSocket upgrade.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("websocket"))
        .unwrap_or(false)
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Answers the upgrade (101) and, once hyper hands over the connection, serves MQTT on it.
pub fn upgrade(
    mut req: Request<Incoming>,
    peer: String,
    handler: MqttHandler,
    mut stop: watch::Receiver<bool>,
) -> Response<RespBody> {
    let h = req.headers();
    if req.method() != http::Method::GET
        || !header_has_token(h, header::CONNECTION, "upgrade")
        || h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13")
    {
        return http_util::error(StatusCode::BAD_REQUEST, "bad WebSocket upgrade request");
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return http_util::error(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let accept = derive_accept_key(key.as_bytes());
    let offered = h.contains_key(header::SEC_WEBSOCKET_PROTOCOL);
    let mqtt = header_has_token(h, header::SEC_WEBSOCKET_PROTOCOL, "mqtt");
    if offered && !mqtt {
        return http_util::error(
            StatusCode::BAD_REQUEST,
            "unsupported WebSocket subprotocol (expected mqtt)",
        );
    }

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let serve = async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => return tracing::debug!("WebSocket upgrade from {peer} failed: {e}"),
            };
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded).compat(),
                Role::Server,
                None,
            )
            .await;
            let stream = WsStream::new(ws).compat();
            handler(Box::new(stream), peer, Kind::WebSocket).await;
        };
        tokio::select! {
            _ = serve => {}
            _ = stop.changed() => {}
        }
    });

    let mut r = Response::new(http_util::full(bytes::Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = r.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if mqtt {
        hs.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("mqtt"),
        );
    }
    r
}
