//! CONNECT authentication and per-identity topic ACLs (pure: no I/O, no locks).

use edgemodule::protocol::{sas, topics};
use rumqttc::mqttbytes::v4::ConnectReturnCode;

/// What the hub needs to know to check a CONNECT.
pub(crate) struct AuthContext<'a> {
    pub hub_host: &'a str,
    pub device_id: &'a str,
    /// Module id -> decoded primary key.
    pub key_of: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    pub now_unix: u64,
    pub max_skew_secs: u64,
    /// Signatures of tokens revoked by `Faults::expire_tokens`.
    pub revoked: &'a dyn Fn(&str) -> bool,
}

/// A successfully authenticated module connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authenticated {
    pub module: String,
    /// The token's decoded signature, remembered so `expire_tokens` can revoke it.
    pub token_sig: String,
    /// Unix seconds the token expires (`se`).
    pub token_expiry: u64,
}

/// Why a CONNECT was refused; the reason is logged, never sent (it may hint at keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: ConnectReturnCode,
    pub reason: String,
}

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal {
        code: ConnectReturnCode::NotAuthorized,
        reason: reason.into(),
    }
}

/// Check client id, username and SAS password as edgeHub does (PROTOCOL §3, §4).
pub(crate) fn authenticate(
    ctx: &AuthContext<'_>,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<Authenticated, Refusal> {
    let username = username.ok_or_else(|| refuse("no username"))?;
    let user =
        topics::parse_username(username).map_err(|e| refuse(format!("bad username: {e}")))?;
    let module = user
        .module_id
        .clone()
        .ok_or_else(|| refuse("username names a device, not a module"))?;
    if client_id != format!("{}/{}", user.device_id, module) {
        return Err(refuse(format!(
            "client id {client_id:?} does not match username identity {}/{}",
            user.device_id, module
        )));
    }
    if user.device_id != ctx.device_id {
        return Err(refuse(format!(
            "device {:?} is not this edge device",
            user.device_id
        )));
    }
    let key = (ctx.key_of)(&module).ok_or_else(|| refuse(format!("unknown module {module:?}")))?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| refuse("no SAS token (X.509 is not supported)"))?;
    let (sig, se) = check_sas(ctx, password, &user.device_id, &module, &key)?;
    if (ctx.revoked)(&sig) {
        return Err(refuse("token was revoked by a fault injection"));
    }
    Ok(Authenticated {
        module,
        token_sig: sig,
        token_expiry: se,
    })
}

/// Verify a SAS token for `device/module`; returns the decoded signature and the expiry.
pub(crate) fn check_sas(
    ctx: &AuthContext<'_>,
    token: &str,
    device: &str,
    module: &str,
    key: &[u8],
) -> Result<(String, u64), Refusal> {
    let t =
        sas::parse_token(token).map_err(|e| refuse(format!("bad SAS token: {}", e.kind.name())))?;
    let (host, d, m) = sas::audience(&t).map_err(|_| refuse("bad SAS audience"))?;
    if !host.eq_ignore_ascii_case(ctx.hub_host) {
        return Err(refuse(format!(
            "SAS audience host {host:?} is not this hub"
        )));
    }
    let module_ok = m.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(module));
    if !d.eq_ignore_ascii_case(device) || !module_ok {
        return Err(refuse("SAS audience does not match the identity"));
    }
    sas::verify(&t, &[key], ctx.now_unix, ctx.max_skew_secs)
        .map_err(|e| refuse(format!("SAS rejected: {}", e.message)))?;
    Ok((t.sig, t.se))
}

/// What a client subscribed to, as the engine cares about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum SubKind {
    /// `devices/{d}/modules/{m}/#` or `.../inputs/#`: module input messages.
    Inputs,
    TwinResponses,
    DesiredPatches,
    Methods,
    /// A broker-mode user topic filter.
    User,
    /// Granted but nothing will ever be delivered (edgeHub: "Ignoring unknown subscription").
    Ignored,
}

/// Verdict on one SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterVerdict {
    Allow(SubKind),
    /// Another identity's topics, or a wildcard reaching into them: SUBACK 0x80.
    Deny,
    /// Not a valid MQTT filter: SUBACK 0x80.
    Invalid,
}

/// `devices/{d}/modules/{m}/`: the only `devices/` prefix a module may use.
pub(crate) fn own_prefix(device: &str, module: &str) -> String {
    format!("devices/{device}/modules/{module}/")
}

/// MQTT 3.1.1 §4.7 filter syntax: `#` last and alone in its level, `+` alone in its level.
pub(crate) fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return false;
        }
        if level.contains('+') && *level != "+" {
            return false;
        }
    }
    true
}

/// Classify a SUBSCRIBE filter of module `module` on `device`. `broker` = broker mode enabled.
pub(crate) fn classify_filter(
    device: &str,
    module: &str,
    filter: &str,
    broker: bool,
) -> FilterVerdict {
    if !valid_filter(filter) {
        return FilterVerdict::Invalid;
    }
    let own = own_prefix(device, module);
    if let Some(rest) = filter.strip_prefix(&own) {
        // edgeHub: any filter matching ^devices/.+/modules/.+/#$ means "module messages".
        if rest == "#" || rest.ends_with("/#") {
            return FilterVerdict::Allow(SubKind::Inputs);
        }
        return FilterVerdict::Allow(SubKind::Ignored);
    }
    let first = filter.split('/').next().unwrap_or("");
    if first == "devices" || first == "+" && filter.len() > 1 && could_reach_devices(filter) {
        return FilterVerdict::Deny;
    }
    if filter == "#" && !broker {
        return FilterVerdict::Allow(SubKind::Ignored);
    }
    if filter.starts_with("$iothub/twin/res/") {
        return FilterVerdict::Allow(SubKind::TwinResponses);
    }
    if filter.starts_with("$iothub/twin/PATCH/properties/desired/") {
        return FilterVerdict::Allow(SubKind::DesiredPatches);
    }
    if filter.starts_with("$iothub/methods/POST/") {
        return FilterVerdict::Allow(SubKind::Methods);
    }
    if filter.starts_with('$') {
        return FilterVerdict::Allow(SubKind::Ignored);
    }
    if broker {
        FilterVerdict::Allow(SubKind::User)
    } else {
        FilterVerdict::Allow(SubKind::Ignored)
    }
}

/// A `+/...` filter could match `devices/{other}/modules/...` topics; in broker mode these only
/// ever receive user topics (the engine never routes `devices/` topics to user subscriptions),
/// so only deny when the rest of the filter spells the module-topic shape.
fn could_reach_devices(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    levels.get(2).is_some_and(|l| *l == "modules")
}

/// What a PUBLISH from a module is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PublishKind {
    /// Own events/output topic; properties decoded.
    Events(topics::EventsTopic),
    TwinGet {
        rid: String,
    },
    TwinPatchReported {
        rid: String,
    },
    MethodResponse {
        status: i32,
        rid: String,
    },
    /// Broker-mode user topic.
    User,
    /// Another identity's topic: close the connection.
    Forbidden(String),
    /// Malformed or unsupported: log and drop (PUBACK anyway).
    Drop(String),
}

/// Classify a PUBLISH topic from module `module` on `device`.
pub(crate) fn classify_publish(device: &str, module: &str, topic: &str) -> PublishKind {
    if topic.contains(['+', '#']) {
        return PublishKind::Forbidden("wildcard in a PUBLISH topic".into());
    }
    if topic.starts_with("devices/") {
        let own = own_prefix(device, module);
        if !topic.starts_with(&own) {
            return PublishKind::Forbidden(format!("publish to another identity's topic {topic}"));
        }
        return match topics::parse_events_topic(topic) {
            Ok(t) if t.device_id == device && t.module_id.as_deref() == Some(module) => {
                PublishKind::Events(t)
            }
            Ok(_) => PublishKind::Forbidden(format!("publish to another identity's topic {topic}")),
            Err(e) => PublishKind::Drop(format!("unsupported topic {topic}: {}", e.message)),
        };
    }
    if topic.starts_with("$iothub/twin/") {
        return match topics::parse_twin_request_topic(topic) {
            Ok(topics::TwinRequest::Get { rid }) => PublishKind::TwinGet { rid },
            Ok(topics::TwinRequest::PatchReported { rid }) => {
                PublishKind::TwinPatchReported { rid }
            }
            Err(e) => PublishKind::Drop(format!("unsupported twin topic {topic}: {}", e.message)),
        };
    }
    if topic.starts_with("$iothub/methods/res/") {
        return match topics::parse_method_response_topic(topic) {
            Ok(r) => PublishKind::MethodResponse {
                status: r.status,
                rid: r.rid,
            },
            Err(e) => {
                PublishKind::Drop(format!("bad method response topic {topic}: {}", e.message))
            }
        };
    }
    if topic.starts_with('$') {
        return PublishKind::Drop(format!("unsupported topic {topic}"));
    }
    PublishKind::User
}

/// MQTT topic matching for broker-mode user topics (filter already validated).
pub(crate) fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn check(
        client_id: &str,
        user: &str,
        token: &str,
        now: u64,
        revoked: bool,
    ) -> Result<Authenticated, Refusal> {
        let key_of = |m: &str| (m == "a").then(|| KEY.to_vec());
        let is_revoked = move |_: &str| revoked;
        let ctx = AuthContext {
            hub_host: "Hub.Example.NET",
            device_id: "dev",
            key_of: &key_of,
            now_unix: now,
            max_skew_secs: 300,
            revoked: &is_revoked,
        };
        authenticate(&ctx, client_id, Some(user), Some(token))
    }

    #[test]
    fn authenticate_like_edgehub() {
        let user = topics::username("hub.example.net", "dev", "a", "2020-09-30", "x", None);
        let tok = |host: &str, d: &str, m: &str, key: &[u8], se: u64| {
            sas::module_token(host, d, m, key, se)
        };
        let good = tok("hub.example.net", "dev", "a", KEY, 2000);
        let ok = check("dev/a", &user, &good, 1000, false).unwrap();
        assert_eq!((ok.module.as_str(), ok.token_expiry), ("a", 2000));
        // Audience host and ids compare case-insensitively.
        assert!(check(
            "dev/a",
            &user,
            &tok("HUB.example.net", "DEV", "A", KEY, 2000),
            1000,
            false
        )
        .is_ok());
        // Expiry honours the skew: se + 300 >= now is still fine.
        assert!(check("dev/a", &user, &good, 2300, false).is_ok());
        let bad = |r: Result<Authenticated, Refusal>| r.unwrap_err().code;
        assert_eq!(
            bad(check("dev/a", &user, &good, 2301, false)),
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            bad(check("dev/a", &user, &good, 1000, true)),
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            bad(check("dev/b", &user, &good, 1000, false)),
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            bad(check(
                "dev/a",
                &user,
                &tok("other.net", "dev", "a", KEY, 2000),
                1000,
                false
            )),
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            bad(check(
                "dev/a",
                &user,
                &tok("hub.example.net", "dev", "a", b"wrong", 2000),
                1000,
                false
            )),
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            bad(check(
                "dev/a",
                &user,
                &tok("hub.example.net", "dev", "b", KEY, 2000),
                1000,
                false
            )),
            ConnectReturnCode::NotAuthorized
        );
        let other_dev = topics::username("hub.example.net", "dev2", "a", "2020-09-30", "x", None);
        assert_eq!(
            bad(check(
                "dev2/a",
                &other_dev,
                &tok("hub.example.net", "dev2", "a", KEY, 2000),
                1000,
                false
            )),
            ConnectReturnCode::NotAuthorized
        );
        let unknown = topics::username("hub.example.net", "dev", "zz", "2020-09-30", "x", None);
        assert_eq!(
            bad(check(
                "dev/zz",
                &unknown,
                &tok("hub.example.net", "dev", "zz", KEY, 2000),
                1000,
                false
            )),
            ConnectReturnCode::NotAuthorized
        );
        assert_eq!(
            bad(check("dev/a", "garbage", &good, 1000, false)),
            ConnectReturnCode::NotAuthorized
        );
    }

    #[test]
    fn publish_classification() {
        let c = |t: &str| classify_publish("dev", "a", t);
        assert!(matches!(
            c("devices/dev/modules/a/messages/events/%24.on=o"),
            PublishKind::Events(_)
        ));
        assert!(matches!(
            c("devices/dev/modules/a/messages/events"),
            PublishKind::Events(_)
        ));
        assert!(matches!(
            c("devices/dev/modules/b/messages/events/"),
            PublishKind::Forbidden(_)
        ));
        assert!(matches!(
            c("devices/dev/messages/events/"),
            PublishKind::Forbidden(_)
        ));
        assert!(matches!(
            c("devices/dev/modules/a/messages/events/a=%zz"),
            PublishKind::Drop(_)
        ));
        assert_eq!(
            c("$iothub/twin/GET/?$rid=7"),
            PublishKind::TwinGet { rid: "7".into() }
        );
        assert_eq!(
            c("$iothub/twin/PATCH/properties/reported/?$rid=8"),
            PublishKind::TwinPatchReported { rid: "8".into() }
        );
        assert_eq!(
            c("$iothub/methods/res/200/?$rid=ab"),
            PublishKind::MethodResponse {
                status: 200,
                rid: "ab".into()
            }
        );
        assert!(matches!(c("$iothub/other"), PublishKind::Drop(_)));
        assert_eq!(c("alerts/x"), PublishKind::User);
        assert!(matches!(c("alerts/#"), PublishKind::Forbidden(_)));
    }

    #[test]
    fn filter_syntax() {
        assert!(valid_filter("a/+/b/#"));
        assert!(valid_filter("#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a+/b"));
        assert!(!valid_filter("a/b#"));
        assert!(!valid_filter(""));
    }

    #[test]
    fn acl_on_filters() {
        use FilterVerdict::*;
        let c = |f: &str| classify_filter("dev", "a", f, false);
        assert_eq!(c("devices/dev/modules/a/#"), Allow(SubKind::Inputs));
        assert_eq!(c("devices/dev/modules/a/inputs/#"), Allow(SubKind::Inputs));
        assert_eq!(c("devices/dev/modules/b/#"), Deny);
        assert_eq!(c("devices/dev/modules/+/#"), Deny);
        assert_eq!(c("devices/other/modules/a/#"), Deny);
        assert_eq!(c("devices/#"), Deny);
        assert_eq!(c("+/dev/modules/b/#"), Deny);
        assert_eq!(c("$iothub/twin/res/#"), Allow(SubKind::TwinResponses));
        assert_eq!(
            c("$iothub/twin/PATCH/properties/desired/#"),
            Allow(SubKind::DesiredPatches)
        );
        assert_eq!(c("$iothub/methods/POST/#"), Allow(SubKind::Methods));
        assert_eq!(c("$iothub/something/#"), Allow(SubKind::Ignored));
        assert_eq!(c("alerts/#"), Allow(SubKind::Ignored));
        assert_eq!(c("a/#/b"), Invalid);
        assert_eq!(
            classify_filter("dev", "a", "alerts/#", true),
            Allow(SubKind::User)
        );
        assert_eq!(classify_filter("dev", "a", "#", true), Allow(SubKind::User));
    }

    #[test]
    fn matching() {
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(!topic_matches("a/b", "a/c"));
        assert!(topic_matches("#", "x/y"));
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b/c", "a/b"));
    }
}
