//! Deployment manifests (PROTOCOL.md §10) and the edgeHub 1.2 broker authorization policy (§11).
//!
//! Accepted shapes: `{"modulesContent":{...}}`, `{"content":{"modulesContent":{...}}}` (az CLI
//! deployment files) and the bare modulesContent map `{"$edgeHub":{...},...}`. Errors carry the JSON
//! path of the offending value, e.g. `modulesContent.$edgeHub.properties.desired.routes.r1`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::routing::{parse_route, Route, Router};

/// Global store-and-forward TTL when the manifest does not set one (edgeHub's documented default).
pub const DEFAULT_TTL_SECS: i64 = 7200;

#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// `$edgeHub` schemaVersion as written (`1.0`, `1.1`, `1.2`, `1.3`, or with a patch part).
    pub schema_version: String,
    /// Module ids: keys of `$edgeAgent.properties.desired.modules` (system modules excluded).
    pub modules: Vec<String>,
    pub routes: Vec<Route>,
    /// `storeAndForwardConfiguration.timeToLiveSecs`; 7200 when absent; < 0 means infinite.
    pub default_ttl_secs: i64,
    /// `storeAndForwardConfiguration.storeLimits.maxSizeBytes`.
    pub max_store_bytes: Option<u64>,
    /// Module id -> its `properties.desired` from modulesContent.
    pub desired: BTreeMap<String, Value>,
    /// `mqttBroker` (schema >= 1.2 only).
    pub broker: Option<BrokerConfig>,
}

impl Manifest {
    /// A router over the manifest's routes.
    pub fn router(&self) -> Router {
        Router::new(self.routes.clone())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerConfig {
    pub authorizations: Vec<AuthorizationStatement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationStatement {
    pub identities: Vec<String>,
    pub allow: Vec<AuthRule>,
    pub deny: Vec<AuthRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRule {
    pub operations: Vec<String>,
    /// Topic filters (`+`, `#`); empty for a connect-only rule.
    pub resources: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "manifest: {}", self.message)
        } else {
            write!(f, "manifest at {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ManifestError {}

impl From<ManifestError> for edgemodule::Error {
    fn from(e: ManifestError) -> Self {
        edgemodule::Error::new(edgemodule::ErrorKind::Configuration, e.to_string())
    }
}

fn error(path: &str, message: impl Into<String>) -> ManifestError {
    ManifestError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ManifestError> {
    v.as_object()
        .ok_or_else(|| error(path, format!("expected an object, found {}", type_name(v))))
}

fn as_array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, ManifestError> {
    v.as_array()
        .ok_or_else(|| error(path, format!("expected an array, found {}", type_name(v))))
}

fn as_int(v: &Value, path: &str) -> Result<i64, ManifestError> {
    v.as_i64()
        .ok_or_else(|| error(path, format!("expected an integer, found {v}")))
}

fn strings(v: &Value, path: &str) -> Result<Vec<String>, ManifestError> {
    as_array(v, path)?
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_str().map(str::to_string).ok_or_else(|| {
                error(
                    &format!("{path}[{i}]"),
                    format!("expected a string, found {}", type_name(s)),
                )
            })
        })
        .collect()
}

/// `properties.desired` of a modulesContent entry (edgeHub also accepts the nested form).
fn desired_of<'a>(
    entry: &'a Value,
    path: &str,
) -> Result<Option<(&'a Value, String)>, ManifestError> {
    let obj = as_object(entry, path)?;
    if let Some(d) = obj.get("properties.desired") {
        return Ok(Some((d, join(path, "properties.desired"))));
    }
    if let Some(d) = obj.get("properties").and_then(|p| p.get("desired")) {
        return Ok(Some((d, join(path, "properties.desired"))));
    }
    Ok(None)
}

/// (major, minor) of a schema version such as `1.1` or `1.1.0`.
fn schema(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    for p in parts {
        p.parse::<u32>().ok()?;
    }
    Some((major, minor))
}

/// Parses a deployment manifest.
pub fn parse_manifest(json: &str) -> Result<Manifest, ManifestError> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| error("", format!("invalid JSON: {e}")))?;
    let root_obj = as_object(&root, "")?;
    let (content, base) = if let Some(mc) = root_obj.get("modulesContent") {
        (mc, "modulesContent".to_string())
    } else if let Some(mc) = root_obj
        .get("content")
        .and_then(|c| c.get("modulesContent"))
    {
        (mc, "content.modulesContent".to_string())
    } else if root_obj.contains_key("$edgeHub") || root_obj.contains_key("$edgeAgent") {
        (&root, String::new())
    } else {
        return Err(error("", "missing modulesContent"));
    };
    let content = as_object(content, &base)?;

    // $edgeHub
    let hub_path = join(&base, "$edgeHub");
    let hub = content
        .get("$edgeHub")
        .ok_or_else(|| error(&base, "missing $edgeHub"))?;
    let (hub_desired, hd_path) = desired_of(hub, &hub_path)?
        .ok_or_else(|| error(&hub_path, "missing properties.desired"))?;
    let hub_desired = as_object(hub_desired, &hd_path)?;
    let sv_path = join(&hd_path, "schemaVersion");
    let schema_version = match hub_desired.get("schemaVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(error(
                &sv_path,
                format!("expected a string, found {}", type_name(other)),
            ))
        }
        None => return Err(error(&hd_path, "missing schemaVersion")),
    };
    let (major, minor) = match schema(&schema_version) {
        Some(v @ (1, 0..=3)) => v,
        _ => {
            return Err(error(
                &sv_path,
                format!(
                    "unsupported schemaVersion '{schema_version}' (expected 1.0, 1.1, 1.2 or 1.3)"
                ),
            ))
        }
    };
    let _ = major;

    let routes = parse_routes(hub_desired, &hd_path, minor >= 1)?;

    let mut default_ttl_secs = DEFAULT_TTL_SECS;
    let mut max_store_bytes = None;
    if let Some(sf) = hub_desired.get("storeAndForwardConfiguration") {
        let sf_path = join(&hd_path, "storeAndForwardConfiguration");
        let sf = as_object(sf, &sf_path)?;
        if let Some(ttl) = sf.get("timeToLiveSecs") {
            default_ttl_secs = as_int(ttl, &join(&sf_path, "timeToLiveSecs"))?;
        }
        if let Some(limits) = sf.get("storeLimits") {
            let l_path = join(&sf_path, "storeLimits");
            let limits = as_object(limits, &l_path)?;
            if let Some(max) = limits.get("maxSizeBytes") {
                let m_path = join(&l_path, "maxSizeBytes");
                max_store_bytes = Some(max.as_u64().ok_or_else(|| {
                    error(
                        &m_path,
                        format!("expected a non-negative integer, found {max}"),
                    )
                })?);
            }
        }
    }

    // mqttBroker exists from 1.2 on; older schemas ignore it, as edgeHub's 1.0/1.1 models do.
    let broker = match hub_desired.get("mqttBroker") {
        Some(b) if minor >= 2 => Some(parse_broker(b, &join(&hd_path, "mqttBroker"))?),
        _ => None,
    };

    // Modules: $edgeAgent's list when present, else every non-system modulesContent entry.
    let modules: Vec<String> = match content.get("$edgeAgent") {
        Some(agent) => {
            let agent_path = join(&base, "$edgeAgent");
            match desired_of(agent, &agent_path)? {
                Some((d, d_path)) => match as_object(d, &d_path)?.get("modules") {
                    Some(m) => as_object(m, &join(&d_path, "modules"))?
                        .keys()
                        .cloned()
                        .collect(),
                    None => Vec::new(),
                },
                None => Vec::new(),
            }
        }
        None => content
            .keys()
            .filter(|k| !k.starts_with('$'))
            .cloned()
            .collect(),
    };

    let mut desired = BTreeMap::new();
    for (name, entry) in content {
        if name.starts_with('$') {
            continue;
        }
        if let Some((d, _)) = desired_of(entry, &join(&base, name))? {
            desired.insert(name.clone(), d.clone());
        }
    }

    Ok(Manifest {
        schema_version,
        modules,
        routes,
        default_ttl_secs,
        max_store_bytes,
        desired,
        broker,
    })
}

fn parse_routes(
    hub_desired: &Map<String, Value>,
    hd_path: &str,
    objects_allowed: bool,
) -> Result<Vec<Route>, ManifestError> {
    let Some(routes) = hub_desired.get("routes") else {
        return Ok(Vec::new());
    };
    let routes_path = join(hd_path, "routes");
    let mut out = Vec::new();
    for (name, spec) in as_object(routes, &routes_path)? {
        let path = join(&routes_path, name);
        let (text, priority, ttl) =
            match spec {
                Value::String(s) => (s.as_str(), None, None),
                Value::Object(o) if objects_allowed => {
                    let text = match o.get("route") {
                        Some(Value::String(s)) => s.as_str(),
                        Some(other) => {
                            return Err(error(
                                &join(&path, "route"),
                                format!("expected a string, found {}", type_name(other)),
                            ))
                        }
                        None => return Err(error(&path, "missing route")),
                    };
                    let priority = match o.get("priority") {
                        None => None,
                        Some(p) => match p.as_u64() {
                            Some(n @ 0..=9) => Some(n as u32),
                            _ => {
                                return Err(error(
                                    &join(&path, "priority"),
                                    format!("priority must be an integer from 0 to 9, found {p}"),
                                ))
                            }
                        },
                    };
                    let ttl = match o.get("timeToLiveSecs") {
                        None => None,
                        Some(t) => match t.as_u64().and_then(|n| u32::try_from(n).ok()) {
                            Some(n) => Some(n),
                            None => {
                                return Err(error(
                                    &join(&path, "timeToLiveSecs"),
                                    format!("expected a non-negative 32-bit integer, found {t}"),
                                ))
                            }
                        },
                    };
                    (text, priority, ttl)
                }
                Value::Object(_) => return Err(error(
                    &path,
                    "route objects need schemaVersion 1.1 or later; schema 1.0 allows only strings",
                )),
                other => {
                    return Err(error(
                        &path,
                        format!(
                            "expected a route string or object, found {}",
                            type_name(other)
                        ),
                    ))
                }
            };
        let mut route = parse_route(name, text)
            .map_err(|e| error(&path, format!("column {}: {}", e.column, e.message)))?;
        if let Some(p) = priority {
            route.priority = p;
        }
        if let Some(t) = ttl {
            route.ttl_secs = t;
        }
        out.push(route);
    }
    Ok(out)
}

const OPERATIONS: [&str; 3] = ["mqtt:connect", "mqtt:publish", "mqtt:subscribe"];
const VARIABLES: [&str; 5] = [
    "{{iot:identity}}",
    "{{iot:device_id}}",
    "{{iot:module_id}}",
    "{{mqtt:client_id}}",
    "{{iot:this_device_id}}",
];

/// Rejects `{{...}}` placeholders other than the five the broker knows.
fn check_variables(s: &str, path: &str) -> Result<(), ManifestError> {
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start..];
        let end = after
            .find("}}")
            .ok_or_else(|| error(path, format!("unterminated variable in '{s}'")))?;
        let var = &after[..end + 2];
        if !VARIABLES.contains(&var) {
            return Err(error(
                path,
                format!(
                    "unknown variable '{var}' (expected one of {})",
                    VARIABLES.join(", ")
                ),
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

fn parse_broker(v: &Value, path: &str) -> Result<BrokerConfig, ManifestError> {
    let obj = as_object(v, path)?;
    let mut authorizations = Vec::new();
    if let Some(auths) = obj.get("authorizations") {
        let a_path = join(path, "authorizations");
        for (i, st) in as_array(auths, &a_path)?.iter().enumerate() {
            let st_path = format!("{a_path}[{i}]");
            let st_obj = as_object(st, &st_path)?;
            let id_path = join(&st_path, "identities");
            let identities = match st_obj.get("identities") {
                Some(ids) => strings(ids, &id_path)?,
                None => return Err(error(&st_path, "missing identities")),
            };
            if identities.is_empty() {
                return Err(error(&id_path, "identities must not be empty"));
            }
            for (j, id) in identities.iter().enumerate() {
                if id.is_empty() {
                    return Err(error(
                        &format!("{id_path}[{j}]"),
                        "identity must not be empty",
                    ));
                }
                check_variables(id, &format!("{id_path}[{j}]"))?;
            }
            let allow = parse_rules(st_obj.get("allow"), &join(&st_path, "allow"))?;
            let deny = parse_rules(st_obj.get("deny"), &join(&st_path, "deny"))?;
            if allow.is_empty() && deny.is_empty() {
                return Err(error(
                    &st_path,
                    "a statement needs at least one allow or deny rule",
                ));
            }
            authorizations.push(AuthorizationStatement {
                identities,
                allow,
                deny,
            });
        }
    }
    Ok(BrokerConfig { authorizations })
}

fn parse_rules(v: Option<&Value>, path: &str) -> Result<Vec<AuthRule>, ManifestError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let mut rules = Vec::new();
    for (i, r) in as_array(v, path)?.iter().enumerate() {
        let r_path = format!("{path}[{i}]");
        let obj = as_object(r, &r_path)?;
        let ops_path = join(&r_path, "operations");
        let operations = match obj.get("operations") {
            Some(o) => strings(o, &ops_path)?,
            None => return Err(error(&r_path, "missing operations")),
        };
        if operations.is_empty() {
            return Err(error(&ops_path, "operations must not be empty"));
        }
        for (j, op) in operations.iter().enumerate() {
            if !OPERATIONS.contains(&op.as_str()) {
                return Err(error(
                    &format!("{ops_path}[{j}]"),
                    format!(
                        "unknown operation '{op}' (expected mqtt:connect, mqtt:publish or mqtt:subscribe)"
                    ),
                ));
            }
        }
        let res_path = join(&r_path, "resources");
        let resources = match obj.get("resources") {
            Some(r) => strings(r, &res_path)?,
            None => Vec::new(),
        };
        let needs_topic = operations.iter().any(|o| o != "mqtt:connect");
        if needs_topic && resources.is_empty() {
            return Err(error(
                &r_path,
                "resources may be omitted only for a connect-only rule",
            ));
        }
        for (j, res) in resources.iter().enumerate() {
            let p = format!("{res_path}[{j}]");
            check_variables(res, &p)?;
            if !valid_filter(res) {
                return Err(error(&p, format!("invalid topic filter '{res}'")));
            }
        }
        rules.push(AuthRule {
            operations,
            resources,
        });
    }
    Ok(rules)
}

/// MQTT topic-filter syntax: non-empty; `#` only as a whole last level; `+` only as a whole level.
fn valid_filter(f: &str) -> bool {
    if f.is_empty() {
        return false;
    }
    let levels: Vec<&str> = f.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| {
        if l.contains('#') {
            *l == "#" && i == levels.len() - 1
        } else {
            !l.contains('+') || *l == "+"
        }
    })
}

/// Whether `topic` (a topic name) matches `filter`. Wildcards at the first level do not match
/// topics starting with `$` (MQTT 3.1.1 §4.7.2).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && matches!(f.first(), Some(&"+") | Some(&"#")) {
        return false;
    }
    for (i, level) in f.iter().enumerate() {
        match *level {
            "#" => return true,
            "+" => {
                if i >= t.len() {
                    return false;
                }
            }
            lit => {
                if t.get(i) != Some(&lit) {
                    return false;
                }
            }
        }
    }
    f.len() == t.len()
}

/// Whether every topic matched by the subscription `requested` is also matched by `allowed`, so a
/// `+` resource does not grant a `#` subscription.
pub fn filter_covers(allowed: &str, requested: &str) -> bool {
    let a: Vec<&str> = allowed.split('/').collect();
    let r: Vec<&str> = requested.split('/').collect();
    if requested.starts_with('$') && matches!(a.first(), Some(&"+") | Some(&"#")) {
        return false;
    }
    for (i, level) in a.iter().enumerate() {
        let Some(req) = r.get(i) else {
            // `a/#` also covers `a` itself.
            return *level == "#" && i == r.len();
        };
        match *level {
            "#" => return true,
            "+" => {
                if *req == "#" {
                    return false;
                }
            }
            lit => {
                if req != &lit {
                    return false;
                }
            }
        }
    }
    a.len() == r.len()
}

/// Values substituted for the policy variables.
struct Vars<'a> {
    identity: &'a str,
    client_id: &'a str,
    device_id: &'a str,
    module_id: Option<&'a str>,
    this_device_id: &'a str,
}

impl Vars<'_> {
    /// Substitutes variables; `None` when the text needs `{{iot:module_id}}` and there is none.
    fn substitute(&self, s: &str) -> Option<String> {
        if s.contains("{{iot:module_id}}") && self.module_id.is_none() {
            return None;
        }
        Some(
            s.replace("{{iot:identity}}", self.identity)
                .replace("{{iot:device_id}}", self.device_id)
                .replace("{{iot:module_id}}", self.module_id.unwrap_or(""))
                .replace("{{mqtt:client_id}}", self.client_id)
                .replace("{{iot:this_device_id}}", self.this_device_id),
        )
    }
}

impl BrokerConfig {
    /// Decides an MQTT operation. `this_device_id` (the edge device hosting the broker) is taken to
    /// be `device_id`, which holds for modules; use [`BrokerConfig::authorize_on`] for leaf devices.
    /// `$iothub/...` topics are not special-cased here: the hub grants them to the client's own
    /// identity before consulting the policy.
    pub fn authorize(
        &self,
        identity: &str,
        client_id: &str,
        device_id: &str,
        module_id: Option<&str>,
        operation: &str,
        topic: Option<&str>,
    ) -> bool {
        self.authorize_on(
            device_id, identity, client_id, device_id, module_id, operation, topic,
        )
    }

    /// Deny by default; statements in order; the first statement whose identities match and that
    /// has a rule (allow or deny) matching the operation and topic decides, deny winning within it.
    /// For `mqtt:subscribe` the topic is the requested filter and must be covered by a resource.
    #[allow(clippy::too_many_arguments)]
    pub fn authorize_on(
        &self,
        this_device_id: &str,
        identity: &str,
        client_id: &str,
        device_id: &str,
        module_id: Option<&str>,
        operation: &str,
        topic: Option<&str>,
    ) -> bool {
        let vars = Vars {
            identity,
            client_id,
            device_id,
            module_id,
            this_device_id,
        };
        let rule_matches = |rule: &AuthRule| -> bool {
            if !rule.operations.iter().any(|o| o == operation) {
                return false;
            }
            if operation == "mqtt:connect" {
                return true;
            }
            let Some(topic) = topic else {
                return false;
            };
            rule.resources.iter().any(|res| match vars.substitute(res) {
                Some(res) if operation == "mqtt:subscribe" => filter_covers(&res, topic),
                Some(res) => topic_matches(&res, topic),
                None => false,
            })
        };
        for st in &self.authorizations {
            let identity_matches = st
                .identities
                .iter()
                .any(|id| vars.substitute(id).as_deref() == Some(identity));
            if !identity_matches {
                continue;
            }
            if st.deny.iter().any(rule_matches) {
                return false;
            }
            if st.allow.iter().any(rule_matches) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{source_path, RoutedMessage, Sink};

    fn err(json: &str) -> ManifestError {
        match parse_manifest(json) {
            Ok(m) => panic!("expected an error, got {m:?}"),
            Err(e) => e,
        }
    }

    /// A full manifest around `$edgeHub` desired properties.
    fn full(hub_desired: &str) -> String {
        format!(
            r#"{{"modulesContent":{{
                "$edgeAgent":{{"properties.desired":{{"schemaVersion":"1.1",
                    "systemModules":{{"edgeAgent":{{}},"edgeHub":{{}}}},
                    "modules":{{"a":{{"type":"docker"}},"b":{{"type":"docker"}}}}}}}},
                "$edgeHub":{{"properties.desired":{hub_desired}}},
                "a":{{"properties.desired":{{"threshold":30}}}}
            }}}}"#
        )
    }

    const HUB: &str = "modulesContent.$edgeHub.properties.desired";

    #[test]
    fn protocol_sample() {
        let json = r#"{"$edgeHub":{"properties.desired":{
          "schemaVersion":"1.1",
          "routes":{"r1":"FROM /messages/modules/a/outputs/o1 INTO BrokeredEndpoint(\"/modules/b/inputs/i1\")",
                    "r2":{"route":"FROM /messages/* INTO $upstream","priority":0,"timeToLiveSecs":86400}},
          "storeAndForwardConfiguration":{"timeToLiveSecs":7200}}}}"#;
        let m = parse_manifest(json).unwrap();
        assert_eq!(m.schema_version, "1.1");
        assert_eq!(m.default_ttl_secs, 7200);
        assert_eq!(m.max_store_bytes, None);
        assert_eq!(m.broker, None);
        assert!(m.modules.is_empty());
        assert_eq!(m.routes.len(), 2);
        let r1 = m.routes.iter().find(|r| r.name == "r1").unwrap();
        assert_eq!(r1.source, "/messages/modules/a/outputs/o1/");
        assert_eq!(
            r1.sink,
            Sink::Module {
                module: "b".into(),
                input: "i1".into()
            }
        );
        assert_eq!((r1.priority, r1.ttl_secs), (2_000_000_000, 0));
        let r2 = m.routes.iter().find(|r| r.name == "r2").unwrap();
        assert_eq!(r2.sink, Sink::Upstream);
        assert_eq!((r2.priority, r2.ttl_secs), (0, 86400));
        assert!(r2.matches(
            &source_path(Some("a"), Some("o1")),
            &RoutedMessage::default()
        ));
        let router = m.router();
        let mut hit: Vec<&str> = router
            .route(
                &source_path(Some("a"), Some("o1")),
                &RoutedMessage::default(),
            )
            .into_iter()
            .map(|r| r.name.as_str())
            .collect();
        hit.sort_unstable();
        assert_eq!(hit, vec!["r1", "r2"]);
    }

    #[test]
    fn full_manifest_modules_desired_and_store() {
        let m = parse_manifest(&full(
            r#"{"schemaVersion":"1.1.0","routes":{},
                "storeAndForwardConfiguration":{"timeToLiveSecs":-1,"storeLimits":{"maxSizeBytes":1048576}}}"#,
        ))
        .unwrap();
        assert_eq!(m.schema_version, "1.1.0");
        assert_eq!(m.modules, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(m.default_ttl_secs, -1);
        assert_eq!(m.max_store_bytes, Some(1_048_576));
        assert_eq!(m.desired.len(), 1);
        assert_eq!(m.desired["a"], serde_json::json!({"threshold": 30}));
        assert!(m.routes.is_empty());
    }

    #[test]
    fn content_wrapper_and_defaults() {
        let m = parse_manifest(
            r#"{"content":{"modulesContent":{
                "$edgeHub":{"properties.desired":{"schemaVersion":"1.0","routes":{"up":"FROM /* INTO $upstream"}}},
                "sensor":{"properties.desired":{"rate":5}}}}}"#,
        )
        .unwrap();
        assert_eq!(m.default_ttl_secs, 7200);
        // Without $edgeAgent, modules come from modulesContent entries.
        assert_eq!(m.modules, vec!["sensor".to_string()]);
        assert_eq!(m.desired["sensor"], serde_json::json!({"rate": 5}));
        assert_eq!(m.routes[0].name, "up");
    }

    #[test]
    fn schema_1_0_rejects_object_routes() {
        let e = err(&full(
            r#"{"schemaVersion":"1.0","routes":{"r1":{"route":"FROM /* INTO $upstream"}}}"#,
        ));
        assert_eq!(e.path, format!("{HUB}.routes.r1"));
        assert!(e.message.contains("schema 1.0"), "{}", e.message);
    }

    #[test]
    fn route_errors_name_route_and_column() {
        let e = err(&full(
            r#"{"schemaVersion":"1.1","routes":{"r1":"FROM /messages/* INT $upstream"}}"#,
        ));
        assert_eq!(e.path, format!("{HUB}.routes.r1"));
        assert_eq!(e.message, "column 18: expected INTO, found 'INT'");
        assert_eq!(
            e.to_string(),
            format!("manifest at {HUB}.routes.r1: column 18: expected INTO, found 'INT'")
        );
        let ee: edgemodule::Error = e.into();
        assert_eq!(ee.kind, edgemodule::ErrorKind::Configuration);
    }

    #[test]
    fn route_object_validation() {
        let e = err(&full(
            r#"{"schemaVersion":"1.1","routes":{"r":{"route":"FROM /* INTO $upstream","priority":10}}}"#,
        ));
        assert_eq!(e.path, format!("{HUB}.routes.r.priority"));
        let e = err(&full(
            r#"{"schemaVersion":"1.1","routes":{"r":{"route":"FROM /* INTO $upstream","timeToLiveSecs":-5}}}"#,
        ));
        assert_eq!(e.path, format!("{HUB}.routes.r.timeToLiveSecs"));
        let e = err(&full(
            r#"{"schemaVersion":"1.1","routes":{"r":{"priority":1}}}"#,
        ));
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            (&*format!("{HUB}.routes.r"), "missing route")
        );
        let e = err(&full(r#"{"schemaVersion":"1.1","routes":{"r":5}}"#));
        assert_eq!(e.path, format!("{HUB}.routes.r"));
        let e = err(&full(r#"{"schemaVersion":"1.1","routes":[]}"#));
        assert_eq!(e.path, format!("{HUB}.routes"));
        assert_eq!(e.message, "expected an object, found an array");
    }

    #[test]
    fn schema_and_structure_errors() {
        let e = err(&full(r#"{"schemaVersion":"2.0"}"#));
        assert_eq!(e.path, format!("{HUB}.schemaVersion"));
        let e = err(&full(r#"{"schemaVersion":"1"}"#));
        assert_eq!(e.path, format!("{HUB}.schemaVersion"));
        let e = err(&full(r#"{"routes":{}}"#));
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            (HUB, "missing schemaVersion")
        );
        let e = err(&full(
            r#"{"schemaVersion":"1.1","storeAndForwardConfiguration":{"timeToLiveSecs":"x"}}"#,
        ));
        assert_eq!(
            e.path,
            format!("{HUB}.storeAndForwardConfiguration.timeToLiveSecs")
        );
        let e = err(r#"{"modulesContent":{"a":{}}}"#);
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("modulesContent", "missing $edgeHub")
        );
        let e = err("{not json");
        assert_eq!(e.path, "");
        assert!(e.message.starts_with("invalid JSON"));
        assert!(parse_manifest("{}").is_err());
    }

    const BROKER: &str = r#"{"schemaVersion":"1.2","routes":{},"mqttBroker":{"authorizations":[
        {"identities":["{{iot:identity}}"],
         "allow":[{"operations":["mqtt:connect"]}]},
        {"identities":["hub.azure-devices.net/dev/a"],
         "deny":[{"operations":["mqtt:publish"],"resources":["alerts/secret/#"]}],
         "allow":[{"operations":["mqtt:publish"],"resources":["alerts/#"]}]},
        {"identities":["{{iot:identity}}"],
         "allow":[{"operations":["mqtt:publish","mqtt:subscribe"],"resources":["devices/{{iot:device_id}}/{{iot:module_id}}/+","clients/{{mqtt:client_id}}/#","edge/{{iot:this_device_id}}/x"]},
                  {"operations":["mqtt:subscribe"],"resources":["alerts/+"]}]},
        {"identities":["hub.azure-devices.net/dev/a"],
         "allow":[{"operations":["mqtt:publish"],"resources":["alerts/secret/override"]}]}
    ]}}"#;

    fn broker() -> BrokerConfig {
        parse_manifest(&full(BROKER))
            .unwrap()
            .broker
            .expect("broker")
    }

    fn can(b: &BrokerConfig, module: &str, op: &str, topic: Option<&str>) -> bool {
        let identity = format!("hub.azure-devices.net/dev/{module}");
        let client = format!("dev/{module}");
        b.authorize(&identity, &client, "dev", Some(module), op, topic)
    }

    #[test]
    fn broker_parsed() {
        let b = broker();
        assert_eq!(b.authorizations.len(), 4);
        assert_eq!(b.authorizations[0].identities, vec!["{{iot:identity}}"]);
        assert_eq!(
            b.authorizations[0].allow,
            vec![AuthRule {
                operations: vec!["mqtt:connect".into()],
                resources: vec![]
            }]
        );
        assert_eq!(
            b.authorizations[1].deny[0].resources,
            vec!["alerts/secret/#"]
        );
    }

    #[test]
    fn broker_connect_and_default_deny() {
        let b = broker();
        assert!(can(&b, "a", "mqtt:connect", None));
        assert!(can(&b, "zzz", "mqtt:connect", None));
        assert!(!can(&b, "zzz", "other/topic", Some("x")));
        assert!(!can(&b, "zzz", "mqtt:publish", Some("unlisted/topic")));
        assert!(!BrokerConfig::default().authorize(
            "h/d/m",
            "d/m",
            "d",
            Some("m"),
            "mqtt:connect",
            None
        ));
    }

    #[test]
    fn broker_statement_order_and_deny_wins() {
        let b = broker();
        // Statement 2 applies to module a only: deny beats allow within it.
        assert!(can(&b, "a", "mqtt:publish", Some("alerts/temp")));
        assert!(!can(&b, "a", "mqtt:publish", Some("alerts/secret/x")));
        // The first deciding statement wins: the later allow for this exact topic is never reached.
        assert!(!can(
            &b,
            "a",
            "mqtt:publish",
            Some("alerts/secret/override")
        ));
        // Module b is not named in statement 2.
        assert!(!can(&b, "b", "mqtt:publish", Some("alerts/temp")));
    }

    #[test]
    fn broker_variables() {
        let b = broker();
        assert!(can(&b, "b", "mqtt:publish", Some("devices/dev/b/t1")));
        assert!(!can(&b, "b", "mqtt:publish", Some("devices/dev/a/t1")));
        assert!(!can(
            &b,
            "b",
            "mqtt:publish",
            Some("devices/dev/b/t1/deeper")
        ));
        assert!(can(&b, "b", "mqtt:publish", Some("clients/dev/b/x/y")));
        assert!(!can(&b, "b", "mqtt:publish", Some("clients/dev/a/x")));
        assert!(can(&b, "b", "mqtt:publish", Some("edge/dev/x")));
        // A leaf device: no module id, and the edge device is a different one.
        assert!(b.authorize_on(
            "edge1",
            "hub.azure-devices.net/leaf",
            "leaf",
            "leaf",
            None,
            "mqtt:publish",
            Some("edge/edge1/x")
        ));
        assert!(!b.authorize_on(
            "edge1",
            "hub.azure-devices.net/leaf",
            "leaf",
            "leaf",
            None,
            "mqtt:publish",
            Some("edge/leaf/x")
        ));
        assert!(!b.authorize_on(
            "edge1",
            "hub.azure-devices.net/leaf",
            "leaf",
            "leaf",
            None,
            "mqtt:publish",
            Some("devices/leaf//t")
        ));
    }

    #[test]
    fn broker_subscribe_filters() {
        let b = broker();
        assert!(can(&b, "b", "mqtt:subscribe", Some("alerts/temp")));
        assert!(can(&b, "b", "mqtt:subscribe", Some("alerts/+")));
        // `alerts/+` does not grant `alerts/#`.
        assert!(!can(&b, "b", "mqtt:subscribe", Some("alerts/#")));
        assert!(can(&b, "b", "mqtt:subscribe", Some("clients/dev/b/#")));
        assert!(can(&b, "b", "mqtt:subscribe", Some("clients/dev/b/+/z")));
        assert!(!can(&b, "b", "mqtt:subscribe", Some("clients/#")));
        assert!(!can(&b, "b", "mqtt:subscribe", None));
    }

    #[test]
    fn topic_filter_matching() {
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(topic_matches("a/+", "a/b"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "x/y"));
        assert!(!topic_matches("#", "$iothub/twin"));
        assert!(!topic_matches("+/twin", "$iothub/twin"));
        assert!(topic_matches("$iothub/#", "$iothub/twin"));
        assert!(filter_covers("a/#", "a/+/c"));
        assert!(filter_covers("a/#", "a"));
        assert!(filter_covers("+/b", "x/b"));
        assert!(!filter_covers("+/b", "#"));
        assert!(!filter_covers("a/b", "a/+"));
        assert!(!filter_covers("#", "$SYS/x"));
    }

    #[test]
    fn broker_validation_errors() {
        let b = |auths: &str| {
            full(&format!(
                r#"{{"schemaVersion":"1.2","mqttBroker":{{"authorizations":{auths}}}}}"#
            ))
        };
        let base = format!("{HUB}.mqttBroker.authorizations");
        let e = err(&b(
            r#"[{"identities":["{{iot:nope}}"],"allow":[{"operations":["mqtt:connect"]}]}]"#,
        ));
        assert_eq!(e.path, format!("{base}[0].identities[0]"));
        assert!(
            e.message.starts_with("unknown variable '{{iot:nope}}'"),
            "{}",
            e.message
        );
        let e = err(&b(
            r#"[{"identities":["x"],"allow":[{"operations":["mqtt:read"]}]}]"#,
        ));
        assert_eq!(e.path, format!("{base}[0].allow[0].operations[0]"));
        let e = err(&b(
            r#"[{"identities":["x"],"allow":[{"operations":["mqtt:publish"]}]}]"#,
        ));
        assert_eq!(e.path, format!("{base}[0].allow[0]"));
        assert_eq!(
            e.message,
            "resources may be omitted only for a connect-only rule"
        );
        let e = err(&b(
            r#"[{"identities":["x"],"deny":[{"operations":["mqtt:publish"],"resources":["a/#/b"]}]}]"#,
        ));
        assert_eq!(e.path, format!("{base}[0].deny[0].resources[0]"));
        let e = err(&b(r#"[{"allow":[{"operations":["mqtt:connect"]}]}]"#));
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            (&*format!("{base}[0]"), "missing identities")
        );
        let e = err(&b(r#"{}"#));
        assert_eq!(e.path, base);
    }

    #[test]
    fn broker_ignored_before_schema_1_2() {
        let m = parse_manifest(&full(
            r#"{"schemaVersion":"1.1","mqttBroker":{"authorizations":[]}}"#,
        ))
        .unwrap();
        assert_eq!(m.broker, None);
        let m = parse_manifest(&full(
            r#"{"schemaVersion":"1.2.0","mqttBroker":{"authorizations":[]}}"#,
        ))
        .unwrap();
        assert_eq!(m.broker, Some(BrokerConfig::default()));
    }
}
