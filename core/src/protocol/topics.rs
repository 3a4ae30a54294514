//! MQTT topic names and the CONNECT username (PROTOCOL §4–8).
//!
//! Builders write ids, rids and method names as-is (IoT Hub ids never contain `/`, and rids are
//! opaque strings echoed back); parsers are the inverse and keep `$rid` raw for the same reason.
//! Malformed topics are `InvalidArgument` errors that quote the topic (topics carry no secrets).

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};
use crate::protocol::property_bag::{self, pct_decode_strict, pct_encode, PropertyBag};

pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
pub const TWIN_DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
pub const METHODS_FILTER: &str = "$iothub/methods/POST/#";

const TWIN_RES_PREFIX: &str = "$iothub/twin/res/";
const TWIN_GET_PREFIX: &str = "$iothub/twin/GET/";
const TWIN_REPORTED_PREFIX: &str = "$iothub/twin/PATCH/properties/reported/";
const TWIN_DESIRED_PREFIX: &str = "$iothub/twin/PATCH/properties/desired/";
const METHOD_POST_PREFIX: &str = "$iothub/methods/POST/";
const METHOD_RES_PREFIX: &str = "$iothub/methods/res/";

fn bad_topic(topic: &str, why: &str) -> Error {
    Error::invalid(format!("malformed topic {topic:?}: {why}"))
}

// ---- telemetry / outputs / inputs -------------------------------------------------------------

/// `devices/{d}/modules/{m}/messages/events/{bag}`.
pub fn events_topic(device: &str, module: &str, bag: &str) -> String {
    format!("devices/{device}/modules/{module}/messages/events/{bag}")
}

/// `devices/{d}/modules/{m}/inputs/#` (the Python/Node form).
pub fn inputs_filter(device: &str, module: &str) -> String {
    format!("devices/{device}/modules/{module}/inputs/#")
}

/// `devices/{d}/modules/{m}/inputs/{pctenc(input)}/{bag}`; the `/` before the bag is always there.
pub fn input_topic(device: &str, module: &str, input: &str, bag: &str) -> String {
    format!(
        "devices/{device}/modules/{module}/inputs/{}/{bag}",
        pct_encode(input)
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputTopic {
    pub device_id: String,
    pub module_id: String,
    pub input_name: String,
    pub properties: PropertyBag,
}

/// Parses `devices/{d}/modules/{m}/inputs/{input}[/[bag][/]]`; the input name is percent-decoded.
pub fn parse_input_topic(topic: &str) -> Result<InputTopic> {
    let segs: Vec<&str> = topic.splitn(7, '/').collect();
    if segs.len() < 6 || segs[0] != "devices" || segs[2] != "modules" || segs[4] != "inputs" {
        return Err(bad_topic(
            topic,
            "expected devices/{d}/modules/{m}/inputs/{input}/{bag}",
        ));
    }
    let (device_id, module_id) = ids(topic, segs[1], segs[3])?;
    if segs[5].is_empty() {
        return Err(bad_topic(topic, "empty input name"));
    }
    let input_name = pct_decode_strict(segs[5], "input name")?;
    let properties = property_bag::decode(segs.get(6).copied().unwrap_or(""))?;
    Ok(InputTopic {
        device_id,
        module_id: module_id.unwrap_or_default(),
        input_name,
        properties,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsTopic {
    pub device_id: String,
    pub module_id: Option<String>,
    pub properties: PropertyBag,
}

/// Parses every form edgeHub accepts: `devices/{d}[/modules/{m}]/messages/events` followed by
/// nothing, `/`, `/{bag}` or `/{bag}/` (Node).
pub fn parse_events_topic(topic: &str) -> Result<EventsTopic> {
    const SHAPE: &str = "expected devices/{d}[/modules/{m}]/messages/events[/{bag}]";
    let segs: Vec<&str> = topic.splitn(7, '/').collect();
    if segs.len() < 4 || segs[0] != "devices" {
        return Err(bad_topic(topic, SHAPE));
    }
    // The literal third segment decides the shape; matching by position keeps ids such as
    // "modules" or "messages" unambiguous.
    let (module, rest_idx) = if segs[2] == "modules" {
        if segs.len() < 6 || segs[4] != "messages" || segs[5] != "events" {
            return Err(bad_topic(topic, SHAPE));
        }
        (Some(segs[3]), 6)
    } else if segs[2] == "messages" && segs[3] == "events" {
        (None, 4)
    } else {
        return Err(bad_topic(topic, SHAPE));
    };
    let (device_id, module_id) = match module {
        Some(m) => ids(topic, segs[1], m)?,
        None => (non_empty_id(topic, segs[1], "device")?, None),
    };
    // For the device form, splitn(7) may have split the bag: rejoin everything after "events".
    let rest = if rest_idx < segs.len() {
        segs[rest_idx..].join("/")
    } else {
        String::new()
    };
    Ok(EventsTopic {
        device_id,
        module_id,
        properties: property_bag::decode(&rest)?,
    })
}

fn non_empty_id(topic: &str, id: &str, what: &str) -> Result<String> {
    if id.is_empty() {
        Err(bad_topic(topic, &format!("empty {what} id")))
    } else {
        Ok(id.to_owned())
    }
}

fn ids(topic: &str, device: &str, module: &str) -> Result<(String, Option<String>)> {
    Ok((
        non_empty_id(topic, device, "device")?,
        Some(non_empty_id(topic, module, "module")?),
    ))
}

// ---- twin and methods ------------------------------------------------------------------------

/// Splits `{path}[/]?{query}` into the path (without trailing `/`) and the raw query pairs.
fn split_query(s: &str) -> (&str, Vec<(&str, &str)>) {
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, q),
        None => (s, ""),
    };
    let path = path.strip_suffix('/').unwrap_or(path);
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    (path, pairs)
}

fn query_get<'a>(pairs: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn required_rid<'a>(topic: &str, pairs: &[(&'a str, &'a str)]) -> Result<&'a str> {
    match query_get(pairs, "$rid") {
        Some(r) if !r.is_empty() => Ok(r),
        _ => Err(bad_topic(topic, "missing $rid")),
    }
}

fn optional_version(topic: &str, pairs: &[(&str, &str)]) -> Result<Option<i64>> {
    query_get(pairs, "$version")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| bad_topic(topic, "$version is not an integer"))
        })
        .transpose()
}

/// `$iothub/twin/GET/?$rid={rid}`.
pub fn twin_get_topic(rid: &str) -> String {
    format!("{TWIN_GET_PREFIX}?$rid={rid}")
}

/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
pub fn twin_patch_reported_topic(rid: &str) -> String {
    format!("{TWIN_REPORTED_PREFIX}?$rid={rid}")
}

/// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`.
pub fn twin_response_topic(status: u16, rid: &str, version: Option<i64>) -> String {
    match version {
        Some(v) => format!("{TWIN_RES_PREFIX}{status}/?$rid={rid}&$version={v}"),
        None => format!("{TWIN_RES_PREFIX}{status}/?$rid={rid}"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwinResponse {
    pub status: u16,
    pub rid: String,
    pub version: Option<i64>,
}

pub fn parse_twin_response_topic(topic: &str) -> Result<TwinResponse> {
    let rest = topic
        .strip_prefix(TWIN_RES_PREFIX)
        .ok_or_else(|| bad_topic(topic, "not a twin response"))?;
    let (status, pairs) = split_query(rest);
    let status = status
        .parse::<u16>()
        .map_err(|_| bad_topic(topic, "status is not a number"))?;
    Ok(TwinResponse {
        status,
        rid: required_rid(topic, &pairs)?.to_owned(),
        version: optional_version(topic, &pairs)?,
    })
}

/// `$iothub/twin/PATCH/properties/desired/?$version={v}`.
pub fn desired_patch_topic(version: i64) -> String {
    format!("{TWIN_DESIRED_PREFIX}?$version={version}")
}

/// The `$version` of a desired-patch notification topic (`None` if the topic carries none).
pub fn parse_desired_patch_topic(topic: &str) -> Result<Option<i64>> {
    let rest = topic
        .strip_prefix(TWIN_DESIRED_PREFIX)
        .or_else(|| topic.strip_prefix(&TWIN_DESIRED_PREFIX[..TWIN_DESIRED_PREFIX.len() - 1]))
        .ok_or_else(|| bad_topic(topic, "not a desired properties patch"))?;
    let (path, pairs) = split_query(rest);
    if !path.is_empty() {
        return Err(bad_topic(topic, "unexpected path after properties/desired"));
    }
    optional_version(topic, &pairs)
}

/// A twin operation published by a client (what a hub parses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TwinRequest {
    Get { rid: String },
    PatchReported { rid: String },
}

pub fn parse_twin_request_topic(topic: &str) -> Result<TwinRequest> {
    let (rest, get) = if let Some(r) = topic.strip_prefix(TWIN_GET_PREFIX) {
        (r, true)
    } else if let Some(r) = topic.strip_prefix(TWIN_REPORTED_PREFIX) {
        (r, false)
    } else {
        return Err(bad_topic(topic, "unsupported twin operation"));
    };
    let (path, pairs) = split_query(rest);
    if !path.is_empty() {
        return Err(bad_topic(topic, "unsupported twin operation"));
    }
    let rid = required_rid(topic, &pairs)?.to_owned();
    Ok(if get {
        TwinRequest::Get { rid }
    } else {
        TwinRequest::PatchReported { rid }
    })
}

/// `$iothub/methods/POST/{name}/?$rid={rid}`.
pub fn method_request_topic(name: &str, rid: &str) -> String {
    format!("{METHOD_POST_PREFIX}{name}/?$rid={rid}")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodRequestTopic {
    pub name: String,
    pub rid: String,
}

pub fn parse_method_request_topic(topic: &str) -> Result<MethodRequestTopic> {
    let rest = topic
        .strip_prefix(METHOD_POST_PREFIX)
        .ok_or_else(|| bad_topic(topic, "not a method request"))?;
    let (name, pairs) = split_query(rest);
    if name.is_empty() || name.contains('/') {
        return Err(bad_topic(topic, "bad method name"));
    }
    Ok(MethodRequestTopic {
        name: name.to_owned(),
        rid: required_rid(topic, &pairs)?.to_owned(),
    })
}

/// `$iothub/methods/res/{status}/?$rid={rid}`.
pub fn method_response_topic(status: i32, rid: &str) -> String {
    format!("{METHOD_RES_PREFIX}{status}/?$rid={rid}")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodResponseTopic {
    pub status: i32,
    pub rid: String,
}

pub fn parse_method_response_topic(topic: &str) -> Result<MethodResponseTopic> {
    let rest = topic
        .strip_prefix(METHOD_RES_PREFIX)
        .ok_or_else(|| bad_topic(topic, "not a method response"))?;
    let (status, pairs) = split_query(rest);
    let status = status
        .parse::<i32>()
        .map_err(|_| bad_topic(topic, "status is not an integer"))?;
    Ok(MethodResponseTopic {
        status,
        rid: required_rid(topic, &pairs)?.to_owned(),
    })
}

// ---- CONNECT username -------------------------------------------------------------------------

/// `{host}/{d}/{m}/?api-version={v}&DeviceClientType={urlenc(ua)}[&model-id={urlenc(id)}]`.
pub fn username(
    hub_host: &str,
    device: &str,
    module: &str,
    api_version: &str,
    client_type: &str,
    model_id: Option<&str>,
) -> String {
    let mut u = format!(
        "{hub_host}/{device}/{module}/?api-version={api_version}&DeviceClientType={}",
        pct_encode(client_type)
    );
    if let Some(m) = model_id {
        u.push_str("&model-id=");
        u.push_str(&pct_encode(m));
    }
    u
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username {
    pub host: String,
    pub device_id: String,
    pub module_id: Option<String>,
    pub api_version: String,
    pub client_type: Option<String>,
    pub model_id: Option<String>,
}

/// Parses a username the way edgeHub's `MqttUsernameParser` does: `host/device[/module]/` then
/// the property segment, with or without a leading `?`; `api-version` must be present and
/// non-empty; `DeviceClientType` and `model-id` are read, other properties ignored; values are
/// unescaped leniently (like `Uri.UnescapeDataString`, a bad escape stays literal).
/// Unlike edgeHub, in the `?` form the properties may contain a raw `/` (an unencoded user agent).
pub fn parse_username(u: &str) -> Result<Username> {
    let bad = |why: &str| Error::invalid(format!("malformed MQTT username {u:?}: {why}"));
    let (ids, props): (Vec<&str>, &str) = match u.split_once("/?") {
        Some((ids, props)) => (ids.split('/').collect(), props),
        None => {
            let mut segs: Vec<&str> = u.split('/').collect();
            let props = segs.pop().unwrap_or("");
            (segs, props)
        }
    };
    let (host, device, module) = match ids.as_slice() {
        [h, d] => (*h, *d, None),
        [h, d, m] => (*h, *d, Some(*m)),
        _ => return Err(bad("expected {host}/{device}[/{module}]/?{properties}")),
    };
    if device.trim().is_empty() {
        return Err(bad("empty device id"));
    }
    if module.is_some_and(|m| m.trim().is_empty()) {
        return Err(bad("empty module id"));
    }
    let mut api_version = None;
    let mut client_type = None;
    let mut model_id = None;
    for pair in props.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| bad("a property value is not UTF-8"))?
            .into_owned();
        match k {
            "api-version" => api_version = Some(v),
            "DeviceClientType" => client_type = Some(v),
            "model-id" => model_id = Some(v),
            _ => {}
        }
    }
    let api_version = match api_version {
        Some(v) if !v.trim().is_empty() => v,
        _ => return Err(bad("api-version is missing")),
    };
    Ok(Username {
        host: host.to_owned(),
        device_id: device.to_owned(),
        module_id: module.map(str::to_owned),
        api_version,
        client_type,
        model_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::message::{self, Message};
    use crate::protocol::property_bag::test_vectors;
    use serde_json::Value;

    fn p(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_owned(), v.map(str::to_owned))
    }

    fn opt(v: &Value, key: &str) -> Option<String> {
        match &v[key] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => panic!("{key}: unexpected {other}"),
        }
    }

    fn custom(v: &Value) -> Vec<(String, Option<String>)> {
        let mut out: Vec<_> = v["custom_properties"]
            .as_object()
            .expect("custom_properties")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned)))
            .collect();
        out.sort();
        out
    }

    fn sorted(mut v: Vec<(String, Option<String>)>) -> Vec<(String, Option<String>)> {
        v.sort();
        v
    }

    fn vectors(name: &str) -> Vec<Value> {
        let v = test_vectors(name)["vectors"]
            .as_array()
            .expect("vectors array")
            .clone();
        assert!(!v.is_empty(), "{name} holds no vectors");
        v
    }

    /// Decodes an output topic like the hub does.
    fn decode_output(topic: &str) -> (EventsTopic, Option<String>, Message) {
        let t = parse_events_topic(topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
        let out = message::output_name(&t.properties).map(str::to_owned);
        let msg = message::from_bag(Vec::new(), t.properties.clone(), None);
        (t, out, msg)
    }

    #[test]
    fn python_output_vectors_decode_and_encode() {
        for v in vectors("output_topics_python.json") {
            let topic = v["topic"].as_str().unwrap();
            let case = v["case"].as_str().unwrap();
            let (t, out, msg) = decode_output(topic);
            assert_eq!(t.device_id, "edge1", "{case}");
            assert_eq!(t.module_id.as_deref(), Some("filter"), "{case}");
            assert_eq!(out, opt(&v, "output_name"), "{case}");
            assert_eq!(msg.message_id, opt(&v, "message_id"), "{case}");
            assert_eq!(msg.correlation_id, opt(&v, "correlation_id"), "{case}");
            assert_eq!(msg.user_id, opt(&v, "user_id"), "{case}");
            assert_eq!(msg.content_type, opt(&v, "content_type"), "{case}");
            assert_eq!(msg.content_encoding, opt(&v, "content_encoding"), "{case}");
            assert_eq!(sorted(msg.properties.clone()), custom(&v), "{case}");

            // Python sorts custom properties; with the same order our encoder is byte-identical.
            let mut m = Message::new(Vec::new());
            m.message_id = opt(&v, "message_id");
            m.correlation_id = opt(&v, "correlation_id");
            m.user_id = opt(&v, "user_id");
            m.content_type = opt(&v, "content_type");
            m.content_encoding = opt(&v, "content_encoding");
            m.properties = custom(&v);
            let bag = property_bag::encode(&message::to_bag(&m, out.as_deref()));
            assert_eq!(events_topic("edge1", "filter", &bag), topic, "{case}");
        }
    }

    #[test]
    fn node_output_vectors_decode_like_python() {
        let py = vectors("output_topics_python.json");
        let node = vectors("output_topics_node.json");
        let mut matched = 0;
        for n in &node {
            let topic = n["topic"].as_str().unwrap();
            assert!(topic.ends_with('/'), "node adds a trailing '/'");
            let case = n["case"].as_str().unwrap();
            let (t, out, msg) = decode_output(topic);
            assert_eq!(t.module_id.as_deref(), Some("filter"));
            assert_eq!(out, opt(n, "output_name"), "{case}");
            let p = py
                .iter()
                .find(|p| p["case"] == n["case"])
                .unwrap_or_else(|| panic!("no python vector for {case}"));
            let (_, pout, pmsg) = decode_output(p["topic"].as_str().unwrap());
            assert_eq!(out, pout, "{case}");
            assert_eq!(
                Message {
                    properties: sorted(msg.properties.clone()),
                    ..msg
                },
                Message {
                    properties: sorted(pmsg.properties.clone()),
                    ..pmsg
                },
                "{case}"
            );
            matched += 1;
        }
        assert_eq!(matched, node.len());
    }

    #[test]
    fn python_input_vectors() {
        for v in vectors("input_topics_python.json") {
            let topic = v["topic"].as_str().unwrap();
            let t = parse_input_topic(topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert_eq!(t.device_id, "edge1");
            assert_eq!(t.module_id, "filter");
            assert_eq!(Some(t.input_name.clone()), opt(&v, "input_name"), "{topic}");
            let msg = message::from_bag(Vec::new(), t.properties, Some(t.input_name));
            assert_eq!(msg.message_id, opt(&v, "message_id"), "{topic}");
            assert_eq!(msg.correlation_id, opt(&v, "correlation_id"), "{topic}");
            assert_eq!(msg.user_id, opt(&v, "user_id"), "{topic}");
            assert_eq!(msg.content_type, opt(&v, "content_type"), "{topic}");
            assert_eq!(msg.content_encoding, opt(&v, "content_encoding"), "{topic}");
            // The intended difference: $.cdid/$.cmid become fields instead of custom properties.
            let mut expected = custom(&v);
            let cdid = take(&mut expected, "$.cdid");
            let cmid = take(&mut expected, "$.cmid");
            assert_eq!(msg.connection_device_id, cdid, "{topic}");
            assert_eq!(msg.connection_module_id, cmid, "{topic}");
            assert_eq!(sorted(msg.properties), expected, "{topic}");
        }
    }

    fn take(v: &mut Vec<(String, Option<String>)>, key: &str) -> Option<String> {
        let i = v.iter().position(|(k, _)| k == key)?;
        v.remove(i).1
    }

    #[test]
    fn input_topic_build_and_parse() {
        let bag = "%24.cdid=e&k=v";
        let t = input_topic("edge1", "filter", "in put/1", bag);
        assert_eq!(
            t,
            "devices/edge1/modules/filter/inputs/in%20put%2F1/%24.cdid=e&k=v"
        );
        let parsed = parse_input_topic(&t).unwrap();
        assert_eq!(
            parsed,
            InputTopic {
                device_id: "edge1".into(),
                module_id: "filter".into(),
                input_name: "in put/1".into(),
                properties: vec![p("$.cdid", Some("e")), p("k", Some("v"))],
            }
        );
        assert_eq!(
            input_topic("d", "m", "i", ""),
            "devices/d/modules/m/inputs/i/"
        );
        for form in [
            "devices/d/modules/m/inputs/i",
            "devices/d/modules/m/inputs/i/",
            "devices/d/modules/m/inputs/i//",
        ] {
            let t = parse_input_topic(form).unwrap();
            assert_eq!(t.input_name, "i", "{form}");
            assert!(t.properties.is_empty(), "{form}");
        }
        assert_eq!(
            parse_input_topic("devices/d/modules/m/inputs/i/a=1/")
                .unwrap()
                .properties,
            vec![p("a", Some("1"))]
        );
    }

    #[test]
    fn input_topic_rejects_bad_shapes() {
        for bad in [
            "",
            "devices/d/modules/m/inputs",
            "devices/d/modules/m/inputs/",
            "devices/d/modules/m/outputs/i/x",
            "devices//modules/m/inputs/i/",
            "devices/d/modules//inputs/i/",
            "device/d/modules/m/inputs/i/",
            "devices/d/modules/m/inputs/i%2/",
            "devices/d/modules/m/inputs/i/a=1/b=2",
            "devices/d/modules/m/inputs/i/a=%zz",
        ] {
            let e = parse_input_topic(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn events_topic_all_forms() {
        assert_eq!(
            events_topic("d", "m", "a=1"),
            "devices/d/modules/m/messages/events/a=1"
        );
        let with_bag = vec![p("$.on", Some("o")), p("a", Some("1"))];
        for (topic, module, props) in [
            ("devices/d/modules/m/messages/events", Some("m"), vec![]),
            ("devices/d/modules/m/messages/events/", Some("m"), vec![]),
            (
                "devices/d/modules/m/messages/events/%24.on=o&a=1",
                Some("m"),
                with_bag.clone(),
            ),
            (
                "devices/d/modules/m/messages/events/%24.on=o&a=1/",
                Some("m"),
                with_bag.clone(),
            ),
            ("devices/d/messages/events", None, vec![]),
            ("devices/d/messages/events/", None, vec![]),
            (
                "devices/d/messages/events/%24.on=o&a=1",
                None,
                with_bag.clone(),
            ),
            (
                "devices/d/messages/events/%24.on=o&a=1/",
                None,
                with_bag.clone(),
            ),
            // ids that look like keywords stay positional
            (
                "devices/modules/messages/events/a",
                None,
                vec![p("a", None)],
            ),
            (
                "devices/messages/modules/messages/messages/events",
                Some("messages"),
                vec![],
            ),
        ] {
            let t = parse_events_topic(topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert_eq!(t.module_id.as_deref(), module, "{topic}");
            assert_eq!(t.properties, props, "{topic}");
        }
        assert_eq!(
            parse_events_topic("devices/messages/modules/messages/messages/events")
                .unwrap()
                .device_id,
            "messages"
        );
    }

    #[test]
    fn events_topic_rejects_bad_shapes() {
        for bad in [
            "devices/d/modules/m/messages",
            "devices/d/modules/m/messages/eventsX",
            "devices/d/modules/m/messages/devicebound/",
            "devices/d/messages",
            "devices//messages/events",
            "devices/d/modules//messages/events",
            "devices/d/modules/m/messages/events/a=1/b",
            "devices/d/messages/events/a=1/b=2/",
            "devices/d/modules/m/messages/events/%",
            "$iothub/twin/GET/?$rid=1",
        ] {
            let e = parse_events_topic(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn filters() {
        assert_eq!(inputs_filter("d", "m"), "devices/d/modules/m/inputs/#");
        assert_eq!(TWIN_RESPONSE_FILTER, "$iothub/twin/res/#");
        assert_eq!(
            TWIN_DESIRED_FILTER,
            "$iothub/twin/PATCH/properties/desired/#"
        );
        assert_eq!(METHODS_FILTER, "$iothub/methods/POST/#");
    }

    #[test]
    fn twin_topics_round_trip() {
        assert_eq!(twin_get_topic("r1"), "$iothub/twin/GET/?$rid=r1");
        assert_eq!(
            twin_patch_reported_topic("r2"),
            "$iothub/twin/PATCH/properties/reported/?$rid=r2"
        );
        assert_eq!(
            twin_response_topic(200, "r1", None),
            "$iothub/twin/res/200/?$rid=r1"
        );
        assert_eq!(
            twin_response_topic(204, "r2", Some(7)),
            "$iothub/twin/res/204/?$rid=r2&$version=7"
        );
        assert_eq!(
            parse_twin_response_topic("$iothub/twin/res/204/?$rid=r2&$version=7").unwrap(),
            TwinResponse {
                status: 204,
                rid: "r2".into(),
                version: Some(7)
            }
        );
        assert_eq!(
            parse_twin_response_topic("$iothub/twin/res/429/?$version=3&$rid=a-b").unwrap(),
            TwinResponse {
                status: 429,
                rid: "a-b".into(),
                version: Some(3)
            }
        );
        assert_eq!(
            parse_twin_response_topic("$iothub/twin/res/200?$rid=x").unwrap(),
            TwinResponse {
                status: 200,
                rid: "x".into(),
                version: None
            }
        );
        for bad in [
            "$iothub/twin/res/abc/?$rid=1",
            "$iothub/twin/res/200/",
            "$iothub/twin/res/200/?$rid=",
            "$iothub/twin/res/200/?$rid=1&$version=x",
            "$iothub/twin/res/99999/?$rid=1",
            "$iothub/methods/res/200/?$rid=1",
        ] {
            assert_eq!(
                parse_twin_response_topic(bad).unwrap_err().kind,
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn desired_patch_topics() {
        assert_eq!(
            desired_patch_topic(12),
            "$iothub/twin/PATCH/properties/desired/?$version=12"
        );
        assert_eq!(
            parse_desired_patch_topic(&desired_patch_topic(12)).unwrap(),
            Some(12)
        );
        assert_eq!(
            parse_desired_patch_topic("$iothub/twin/PATCH/properties/desired/").unwrap(),
            None
        );
        assert_eq!(
            parse_desired_patch_topic("$iothub/twin/PATCH/properties/desired?$version=3").unwrap(),
            Some(3)
        );
        assert!(
            parse_desired_patch_topic("$iothub/twin/PATCH/properties/desired/?$version=").is_err()
        );
        assert!(
            parse_desired_patch_topic("$iothub/twin/PATCH/properties/reported/?$rid=1").is_err()
        );
        assert!(
            parse_desired_patch_topic("$iothub/twin/PATCH/properties/desired/x/?$version=1")
                .is_err()
        );
    }

    #[test]
    fn twin_request_topics() {
        assert_eq!(
            parse_twin_request_topic(&twin_get_topic("42")).unwrap(),
            TwinRequest::Get { rid: "42".into() }
        );
        assert_eq!(
            parse_twin_request_topic("$iothub/twin/PATCH/properties/reported/?$rid=x&$version=3")
                .unwrap(),
            TwinRequest::PatchReported { rid: "x".into() }
        );
        for bad in [
            "$iothub/twin/GET/",
            "$iothub/twin/GET/?$version=1",
            "$iothub/twin/PATCH/properties/reported/",
            "$iothub/twin/PATCH/properties/desired/?$rid=1",
            "$iothub/twin/DELETE/?$rid=1",
            "$iothub/twin/GET/extra/?$rid=1",
        ] {
            assert!(parse_twin_request_topic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn method_topics() {
        let t = method_request_topic("reboot", "abc-1");
        assert_eq!(t, "$iothub/methods/POST/reboot/?$rid=abc-1");
        assert_eq!(
            parse_method_request_topic(&t).unwrap(),
            MethodRequestTopic {
                name: "reboot".into(),
                rid: "abc-1".into()
            }
        );
        assert!(parse_method_request_topic("$iothub/methods/POST//?$rid=1").is_err());
        assert!(parse_method_request_topic("$iothub/methods/POST/a/b/?$rid=1").is_err());
        assert!(parse_method_request_topic("$iothub/methods/POST/a/").is_err());
        let r = method_response_topic(-3, "abc");
        assert_eq!(r, "$iothub/methods/res/-3/?$rid=abc");
        assert_eq!(
            parse_method_response_topic(&r).unwrap(),
            MethodResponseTopic {
                status: -3,
                rid: "abc".into()
            }
        );
        assert!(parse_method_response_topic("$iothub/methods/res/x/?$rid=1").is_err());
        assert!(parse_method_response_topic("$iothub/methods/res/200/").is_err());
    }

    #[test]
    fn username_build_and_round_trip() {
        let ua = "edgemodule/0.1.0 (rust; linux x86_64)";
        let u = username(
            "hub.azure-devices.net",
            "edge1",
            "filter",
            "2020-09-30",
            ua,
            None,
        );
        assert_eq!(
            u,
            "hub.azure-devices.net/edge1/filter/?api-version=2020-09-30&DeviceClientType=edgemodule%2F0.1.0%20%28rust%3B%20linux%20x86_64%29"
        );
        let parsed = parse_username(&u).unwrap();
        assert_eq!(
            parsed,
            Username {
                host: "hub.azure-devices.net".into(),
                device_id: "edge1".into(),
                module_id: Some("filter".into()),
                api_version: "2020-09-30".into(),
                client_type: Some(ua.into()),
                model_id: None,
            }
        );
        let with_model = username("h", "d", "$edgeAgent", "v", "x", Some("dtmi:com:x;1"));
        assert!(with_model.ends_with("&model-id=dtmi%3Acom%3Ax%3B1"));
        let parsed = parse_username(&with_model).unwrap();
        assert_eq!(parsed.model_id.as_deref(), Some("dtmi:com:x;1"));
        assert_eq!(parsed.module_id.as_deref(), Some("$edgeAgent"));
    }

    #[test]
    fn username_edgehub_rules() {
        // device form, with and without '?'
        let u = parse_username("h/d/?api-version=1&DeviceClientType=a%20b&auth-chain=x;y").unwrap();
        assert_eq!((u.device_id.as_str(), u.module_id.as_deref()), ("d", None));
        assert_eq!(u.client_type.as_deref(), Some("a b"));
        let u = parse_username("h/d/api-version=1").unwrap();
        assert_eq!((u.device_id.as_str(), u.module_id), ("d", None));
        let u = parse_username("h/d/m/api-version=2&DeviceClientType=c").unwrap();
        assert_eq!(u.module_id.as_deref(), Some("m"));
        assert_eq!(u.api_version, "2");
        // lenient unescape keeps a broken escape literally; raw '/' allowed in the '?' form
        let u =
            parse_username("h/d/m/?api-version=1&DeviceClientType=iothubclient/1.2 %zz").unwrap();
        assert_eq!(u.client_type.as_deref(), Some("iothubclient/1.2 %zz"));
        for bad in [
            "h/d/m/?DeviceClientType=x",
            "h/d/m/?api-version=",
            "h/d/m/?api-version=%20",
            "h/d/m/",
            "h/d",
            "h/d/m/x/?api-version=1",
            "h//m/?api-version=1",
            "h/d//?api-version=1",
            "h/d/m/x/api-version=1",
        ] {
            let e = parse_username(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
