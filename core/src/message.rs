//! The message sent to an output or received on an input, and its mapping to the MQTT
//! property bag (PROTOCOL §5–6).

use serde::{Deserialize, Serialize};

use crate::protocol::property_bag::{self, PropertyBag};

/// Largest message edgeHub routes: body plus properties (PROTOCOL §4 "Size").
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// Wire keys of the system properties (PROTOCOL §5 table).
pub mod keys {
    pub const OUTPUT_NAME: &str = "$.on";
    pub const MESSAGE_ID: &str = "$.mid";
    pub const CORRELATION_ID: &str = "$.cid";
    pub const USER_ID: &str = "$.uid";
    pub const CONTENT_TYPE: &str = "$.ct";
    pub const CONTENT_ENCODING: &str = "$.ce";
    pub const EXPIRY_TIME_UTC: &str = "$.exp";
    pub const CREATION_TIME_UTC: &str = "$.ctime";
    pub const CONNECTION_DEVICE_ID: &str = "$.cdid";
    pub const CONNECTION_MODULE_ID: &str = "$.cmid";
}

/// A telemetry/output message or a received input message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub user_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// ISO-8601, as on the wire.
    pub expiry_time_utc: Option<String>,
    /// ISO-8601, as on the wire.
    pub creation_time_utc: Option<String>,
    /// Custom (application) properties, in order; `None` is a null value.
    pub properties: Vec<(String, Option<String>)>,
    /// Received messages only: the input the message arrived on.
    pub input_name: Option<String>,
    /// Received messages only: the sender's device id (`$.cdid`).
    pub connection_device_id: Option<String>,
    /// Received messages only: the sender's module id (`$.cmid`).
    pub connection_module_id: Option<String>,
}

/// What `set_property` accepts as a value: a string (`"v"`, `String`) or an optional one
/// (`None` = null property, sent as the bare key).
pub trait IntoPropertyValue {
    fn into_property_value(self) -> Option<String>;
}

impl IntoPropertyValue for &str {
    fn into_property_value(self) -> Option<String> {
        Some(self.to_owned())
    }
}
impl IntoPropertyValue for String {
    fn into_property_value(self) -> Option<String> {
        Some(self)
    }
}
impl IntoPropertyValue for &String {
    fn into_property_value(self) -> Option<String> {
        Some(self.clone())
    }
}
impl IntoPropertyValue for Option<String> {
    fn into_property_value(self) -> Option<String> {
        self
    }
}
impl IntoPropertyValue for Option<&str> {
    fn into_property_value(self) -> Option<String> {
        self.map(str::to_owned)
    }
}

impl Message {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Message {
            body: body.into(),
            ..Default::default()
        }
    }

    pub fn with_message_id(mut self, v: impl Into<String>) -> Self {
        self.message_id = Some(v.into());
        self
    }
    pub fn with_correlation_id(mut self, v: impl Into<String>) -> Self {
        self.correlation_id = Some(v.into());
        self
    }
    pub fn with_user_id(mut self, v: impl Into<String>) -> Self {
        self.user_id = Some(v.into());
        self
    }
    pub fn with_content_type(mut self, v: impl Into<String>) -> Self {
        self.content_type = Some(v.into());
        self
    }
    pub fn with_content_encoding(mut self, v: impl Into<String>) -> Self {
        self.content_encoding = Some(v.into());
        self
    }
    pub fn with_expiry_time_utc(mut self, v: impl Into<String>) -> Self {
        self.expiry_time_utc = Some(v.into());
        self
    }
    pub fn with_creation_time_utc(mut self, v: impl Into<String>) -> Self {
        self.creation_time_utc = Some(v.into());
        self
    }
    /// Sets (or replaces) a custom property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl IntoPropertyValue) -> Self {
        self.set_property(key, value);
        self
    }

    /// The value of custom property `key`; `None` if absent or null (see [`Message::has_property`]).
    pub fn property(&self, key: &str) -> Option<&str> {
        property_bag::get(&self.properties, key).flatten()
    }

    /// Whether custom property `key` is present (null values included).
    pub fn has_property(&self, key: &str) -> bool {
        self.properties.iter().any(|(k, _)| k == key)
    }

    /// Sets custom property `key`, replacing the first existing pair with that key in place
    /// (keeping its position) or appending it.
    pub fn set_property(&mut self, key: impl Into<String>, value: impl IntoPropertyValue) {
        let key = key.into();
        let value = value.into_property_value();
        match self.properties.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.properties.push((key, value)),
        }
    }

    /// Removes custom property `key`; returns whether it was present.
    pub fn remove_property(&mut self, key: &str) -> bool {
        let before = self.properties.len();
        self.properties.retain(|(k, _)| k != key);
        before != self.properties.len()
    }

    /// Body plus encoded property bag (without output name): what the 256 KB limit is checked on.
    pub fn wire_size(&self) -> usize {
        self.wire_size_for(None)
    }

    /// Like [`Message::wire_size`], counting the `$.on` pair of `output` too.
    pub fn wire_size_for(&self, output: Option<&str>) -> usize {
        self.body.len() + property_bag::encode(&to_bag(self, output)).len()
    }
}

/// The property bag of an outgoing message: `$.on` first (if `output`), then
/// `$.mid $.cid $.uid $.ct $.ce $.exp $.ctime` (those set), then the custom properties in order.
/// This is the order Python uses for system properties.
pub fn to_bag(msg: &Message, output: Option<&str>) -> PropertyBag {
    let mut bag = PropertyBag::with_capacity(msg.properties.len() + 8);
    let mut sys = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            bag.push((k.to_owned(), Some(v.to_owned())));
        }
    };
    sys(keys::OUTPUT_NAME, output);
    sys(keys::MESSAGE_ID, msg.message_id.as_deref());
    sys(keys::CORRELATION_ID, msg.correlation_id.as_deref());
    sys(keys::USER_ID, msg.user_id.as_deref());
    sys(keys::CONTENT_TYPE, msg.content_type.as_deref());
    sys(keys::CONTENT_ENCODING, msg.content_encoding.as_deref());
    sys(keys::EXPIRY_TIME_UTC, msg.expiry_time_utc.as_deref());
    sys(keys::CREATION_TIME_UTC, msg.creation_time_utc.as_deref());
    bag.extend(msg.properties.iter().cloned());
    bag
}

/// Builds a message from a received bag. System keys map to fields (a repeated key: the last
/// wins; a null system value leaves the field unset); `$.on` is dropped (the routing layer
/// reads it with [`output_name`]); every other key, including `$.to`, `$.schema` and
/// `iothub-ack`, becomes a custom property, in order.
pub fn from_bag(body: Vec<u8>, bag: PropertyBag, input_name: Option<String>) -> Message {
    let mut msg = Message {
        body,
        input_name,
        ..Default::default()
    };
    for (k, v) in bag {
        let field = match k.as_str() {
            keys::OUTPUT_NAME => continue,
            keys::MESSAGE_ID => &mut msg.message_id,
            keys::CORRELATION_ID => &mut msg.correlation_id,
            keys::USER_ID => &mut msg.user_id,
            keys::CONTENT_TYPE => &mut msg.content_type,
            keys::CONTENT_ENCODING => &mut msg.content_encoding,
            keys::EXPIRY_TIME_UTC => &mut msg.expiry_time_utc,
            keys::CREATION_TIME_UTC => &mut msg.creation_time_utc,
            keys::CONNECTION_DEVICE_ID => &mut msg.connection_device_id,
            keys::CONNECTION_MODULE_ID => &mut msg.connection_module_id,
            _ => {
                msg.properties.push((k, v));
                continue;
            }
        };
        *field = v;
    }
    msg
}

/// The output name (`$.on`) of a bag, if present and non-null.
pub fn output_name(bag: &[(String, Option<String>)]) -> Option<&str> {
    property_bag::get(bag, keys::OUTPUT_NAME).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::property_bag::{decode, encode};

    fn p(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_owned(), v.map(str::to_owned))
    }

    fn full() -> Message {
        Message::new("hi")
            .with_message_id("m")
            .with_correlation_id("c")
            .with_user_id("u")
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
            .with_expiry_time_utc("2030-01-01T00:00:00.000Z")
            .with_creation_time_utc("2024-01-01T00:00:00.000Z")
            .with_property("z", "1")
            .with_property("a", None::<String>)
            .with_property("e", "")
    }

    #[test]
    fn to_bag_order_and_encoding() {
        let bag = to_bag(&full(), Some("out"));
        assert_eq!(
            encode(&bag),
            "%24.on=out&%24.mid=m&%24.cid=c&%24.uid=u&%24.ct=application%2Fjson&%24.ce=utf-8\
             &%24.exp=2030-01-01T00%3A00%3A00.000Z&%24.ctime=2024-01-01T00%3A00%3A00.000Z&z=1&a&e="
        );
        assert_eq!(encode(&to_bag(&Message::new("x"), None)), "");
    }

    #[test]
    fn from_bag_round_trip() {
        let m = full();
        let bag = decode(&encode(&to_bag(&m, Some("out")))).unwrap();
        assert_eq!(output_name(&bag), Some("out"));
        let back = from_bag(b"hi".to_vec(), bag, None);
        assert_eq!(back, m);
    }

    #[test]
    fn from_bag_maps_connection_ids_and_keeps_others() {
        let bag = vec![
            p("$.cdid", Some("edge1")),
            p("$.cmid", Some("sensor")),
            p("$.on", Some("dropped")),
            p("$.to", Some("/devices/x")),
            p("$.schema", Some("s")),
            p("iothub-ack", Some("full")),
            p("flag", None),
        ];
        let m = from_bag(vec![1, 2], bag, Some("input1".into()));
        assert_eq!(m.input_name.as_deref(), Some("input1"));
        assert_eq!(m.connection_device_id.as_deref(), Some("edge1"));
        assert_eq!(m.connection_module_id.as_deref(), Some("sensor"));
        assert_eq!(
            m.properties,
            vec![
                p("$.to", Some("/devices/x")),
                p("$.schema", Some("s")),
                p("iothub-ack", Some("full")),
                p("flag", None)
            ]
        );
        assert_eq!(m.body, vec![1, 2]);
    }

    #[test]
    fn properties_get_set_replace_remove() {
        let mut m = Message::new(Vec::new());
        m.set_property("a", "1");
        m.set_property("b", String::from("2"));
        m.set_property("a", "3");
        m.set_property("n", None::<&str>);
        assert_eq!(
            m.properties,
            vec![p("a", Some("3")), p("b", Some("2")), p("n", None)]
        );
        assert_eq!(m.property("a"), Some("3"));
        assert_eq!(m.property("n"), None);
        assert!(m.has_property("n"));
        assert!(!m.has_property("x"));
        assert!(m.remove_property("a"));
        assert!(!m.remove_property("a"));
        assert_eq!(m.properties, vec![p("b", Some("2")), p("n", None)]);
    }

    #[test]
    fn wire_size_counts_body_and_encoded_bag() {
        let m = Message::new(vec![0u8; 10]).with_property("k", "a b");
        assert_eq!(m.wire_size(), 10 + "k=a%20b".len());
        assert_eq!(m.wire_size_for(Some("o")), 10 + "%24.on=o&k=a%20b".len());
        assert_eq!(MAX_MESSAGE_SIZE, 262_144);
    }

    #[test]
    fn serde_round_trip() {
        let m = full();
        let s = serde_json::to_string(&m).unwrap();
        let back: Message = serde_json::from_str(&s).unwrap();
        assert_eq!(back, m);
    }
}
