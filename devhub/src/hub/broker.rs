//! Broker mode (edgeHub 1.2 preview, PROTOCOL §11): user topics between connected clients,
//! authorized by the manifest's `mqttBroker.authorizations`. Denied publishes are dropped
//! silently (with a log line), like mosquitto does for MQTT 3.1.1; denied subscriptions get
//! SUBACK 0x80. `mqtt:connect` is not enforced: modules always connect for their IoT Hub
//! topics, which edgeHub authorizes implicitly.

use super::auth::{topic_matches, SubKind};
use super::Hub;
use bytes::Bytes;

impl Hub {
    /// `{hub}/{device}/{module}`: the identity broker policies name.
    fn broker_identity(&self, module: &str) -> String {
        format!("{}/{}/{}", self.cfg.hub_host, self.cfg.device_id, module)
    }

    /// Whether `module` may do `operation` ("mqtt:publish" / "mqtt:subscribe") on `topic`.
    pub(super) fn broker_allows(&self, module: &str, operation: &str, topic: &str) -> bool {
        let Some(b) = &self.cfg.broker else {
            return false;
        };
        let identity = self.broker_identity(module);
        let client_id = format!("{}/{}", self.cfg.device_id, module);
        b.authorize(
            &identity,
            &client_id,
            &self.cfg.device_id,
            Some(module),
            operation,
            Some(topic),
        )
    }

    /// Fan a user-topic PUBLISH out to every connected subscriber (the sender included, as MQTT
    /// 3.1.1 brokers do), each at min(publish QoS, granted QoS).
    pub(super) fn broker_publish(&self, module: &str, topic: &str, payload: Bytes, qos: u8) {
        if self.cfg.broker.is_none() {
            tracing::info!(
                module,
                topic,
                "user topic publish dropped: broker mode is off"
            );
            return;
        }
        if !self.broker_allows(module, "mqtt:publish", topic) {
            tracing::info!(
                module,
                topic,
                "user topic publish denied by the broker policy"
            );
            return;
        }
        let mut st = self.lock();
        let targets: Vec<(String, u8)> = st
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_some())
            .filter_map(|(m, s)| {
                s.subs
                    .iter()
                    .filter(|(f, sub)| sub.kind == SubKind::User && topic_matches(f, topic))
                    .map(|(_, sub)| sub.qos)
                    .max()
                    .map(|q| (m.clone(), q.min(qos)))
            })
            .collect();
        for (m, q) in targets {
            st.publish_at(&m, topic, payload.clone(), q);
        }
    }
}
