//! Module twins: desired/reported documents with versions, the device-side view
//! (`$iothub/twin/GET`), the service view (REST), merges and persistence (`twins.json`).

use super::ApiError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use edgemodule::protocol::twin as ptwin;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// One module twin. `desired`/`reported` hold the members without `$version`/`$metadata`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct TwinDoc {
    pub desired: Value,
    pub desired_version: i64,
    pub reported: Value,
    pub reported_version: i64,
    #[serde(default = "empty_object")]
    pub tags: Value,
    /// Twin version (bumped on every change; drives the etag).
    pub version: i64,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// Remove the `$version` / `$metadata` members IoT Hub owns.
fn strip_meta(v: &mut Value) {
    if let Value::Object(m) = v {
        m.remove("$version");
        m.remove("$metadata");
    }
}

impl TwinDoc {
    pub fn new(initial_desired: Option<&Value>) -> TwinDoc {
        let mut desired = match initial_desired {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            _ => empty_object(),
        };
        strip_meta(&mut desired);
        TwinDoc {
            desired,
            desired_version: 1,
            reported: empty_object(),
            reported_version: 1,
            tags: empty_object(),
            version: 1,
        }
    }

    fn with_version(section: &Value, version: i64) -> Value {
        let mut v = section.clone();
        if let Value::Object(m) = &mut v {
            m.insert("$version".into(), json!(version));
        }
        v
    }

    /// What a module gets for `$iothub/twin/GET`.
    pub fn device_view(&self) -> Value {
        json!({
            "desired": Self::with_version(&self.desired, self.desired_version),
            "reported": Self::with_version(&self.reported, self.reported_version),
        })
    }

    /// IoT Hub style etag: base64 of the big-endian twin version ("AAAAAAAAAAE=").
    pub fn etag(&self) -> String {
        B64.encode((self.version as u64).to_be_bytes())
    }

    /// The service (REST) view.
    pub fn service_view(&self, device: &str, module: &str, connected: bool) -> Value {
        json!({
            "deviceId": device,
            "moduleId": module,
            "etag": self.etag(),
            "deviceEtag": self.etag(),
            "version": self.version,
            "status": "enabled",
            "connectionState": if connected { "Connected" } else { "Disconnected" },
            "authenticationType": "sas",
            "tags": self.tags,
            "properties": {
                "desired": Self::with_version(&self.desired, self.desired_version),
                "reported": Self::with_version(&self.reported, self.reported_version),
            }
        })
    }

    fn check_etag(&self, if_match: Option<&str>) -> Result<(), ApiError> {
        match if_match.map(|s| s.trim().trim_matches('"')) {
            None | Some("*") | Some("") => Ok(()),
            Some(e) if e == self.etag() => Ok(()),
            Some(_) => Err(ApiError::new(
                412,
                "Precondition failed: the twin etag does not match If-Match",
            )),
        }
    }

    /// Service PATCH: merge `properties.desired` and `tags`. Returns the desired patch to push
    /// to the module (with `$version`), if desired changed.
    pub fn update(
        &mut self,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Result<Option<Value>, ApiError> {
        self.check_etag(if_match)?;
        let obj = patch
            .as_object()
            .ok_or_else(|| ApiError::new(400, "The twin patch must be a JSON object"))?;
        let desired = obj.get("properties").and_then(|p| p.get("desired"));
        if let Some(d) = desired {
            if !d.is_object() {
                return Err(ApiError::new(
                    400,
                    "properties.desired must be a JSON object",
                ));
            }
        }
        let tags = obj.get("tags");
        if let Some(t) = tags {
            if !t.is_object() && !t.is_null() {
                return Err(ApiError::new(400, "tags must be a JSON object"));
            }
        }
        if let Some(t) = tags.filter(|t| t.is_object()) {
            ptwin::merge_patch(&mut self.tags, t);
        }
        let mut push = None;
        if let Some(d) = desired {
            let mut d = d.clone();
            strip_meta(&mut d);
            ptwin::merge_patch(&mut self.desired, &d);
            self.desired_version += 1;
            push = Some(Self::with_version(&d, self.desired_version));
        }
        if tags.is_some() || desired.is_some() {
            self.version += 1;
        }
        Ok(push)
    }

    /// Service PUT: replace desired (and tags when given). The pushed patch carries the new
    /// desired document plus `null` for every member that disappeared.
    pub fn replace(
        &mut self,
        twin: &Value,
        if_match: Option<&str>,
    ) -> Result<Option<Value>, ApiError> {
        self.check_etag(if_match)?;
        let obj = twin
            .as_object()
            .ok_or_else(|| ApiError::new(400, "The twin must be a JSON object"))?;
        if let Some(t) = obj.get("tags") {
            if !t.is_object() {
                return Err(ApiError::new(400, "tags must be a JSON object"));
            }
            self.tags = t.clone();
        }
        let mut push = None;
        if let Some(d) = obj.get("properties").and_then(|p| p.get("desired")) {
            let Value::Object(new) = d else {
                return Err(ApiError::new(
                    400,
                    "properties.desired must be a JSON object",
                ));
            };
            let mut new = new.clone();
            new.remove("$version");
            new.remove("$metadata");
            let mut patch = new.clone();
            if let Value::Object(old) = &self.desired {
                for k in old.keys() {
                    if !new.contains_key(k) {
                        patch.insert(k.clone(), Value::Null);
                    }
                }
            }
            self.desired = Value::Object(new);
            self.desired_version += 1;
            push = Some(Self::with_version(
                &Value::Object(patch),
                self.desired_version,
            ));
        }
        self.version += 1;
        Ok(push)
    }

    /// Module reported PATCH (body bytes). Returns the new reported version, or the status and
    /// a reason for the error answer.
    pub fn patch_reported(&mut self, body: &[u8]) -> Result<i64, (u16, String)> {
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| (400u16, format!("reported patch is not JSON: {e}")))?;
        if !patch.is_object() {
            return Err((400, "reported patch is not a JSON object".into()));
        }
        ptwin::validate_reported_patch(&patch).map_err(|e| (400u16, e.message))?;
        let mut patch = patch;
        strip_meta(&mut patch);
        ptwin::merge_patch(&mut self.reported, &patch);
        self.reported_version += 1;
        self.version += 1;
        Ok(self.reported_version)
    }
}

/// All twins by module id.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Twins {
    pub twins: BTreeMap<String, TwinDoc>,
}

impl Twins {
    pub fn load(path: &std::path::Path) -> std::io::Result<Twins> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a valid twins file: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Twins::default()),
            Err(e) => Err(e),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_service_views() {
        let mut t = TwinDoc::new(Some(&json!({"a": 1, "$version": 9})));
        assert_eq!(
            t.device_view(),
            json!({"desired": {"a": 1, "$version": 1}, "reported": {"$version": 1}})
        );
        assert_eq!(t.patch_reported(br#"{"x": {"y": 2}}"#), Ok(2));
        assert_eq!(t.patch_reported(br#"{"x": {"y": null, "z": 3}}"#), Ok(3));
        assert_eq!(t.reported, json!({"x": {"z": 3}}));
        assert_eq!(t.patch_reported(b"[1]").unwrap_err().0, 400);
        assert_eq!(t.patch_reported(b"{nope").unwrap_err().0, 400);
        let s = t.service_view("dev", "m", true);
        assert_eq!(s["properties"]["reported"]["$version"], json!(3));
        assert_eq!(s["etag"], json!(t.etag()));
        assert_eq!(s["connectionState"], json!("Connected"));
    }

    #[test]
    fn service_update_and_replace_produce_desired_patches() {
        let mut t = TwinDoc::new(Some(&json!({"a": 1, "b": 2})));
        let etag = t.etag();
        assert_eq!(etag, "AAAAAAAAAAE=");
        let push = t
            .update(
                &json!({"properties": {"desired": {"a": null, "c": 3}}}),
                Some(&format!("\"{etag}\"")),
            )
            .unwrap();
        assert_eq!(push, Some(json!({"a": null, "c": 3, "$version": 2})));
        assert_eq!(t.desired, json!({"b": 2, "c": 3}));
        // Stale etag -> 412.
        let err = t
            .update(&json!({"properties": {"desired": {"d": 1}}}), Some(&etag))
            .unwrap_err();
        assert_eq!(err.status, 412);
        let push = t
            .replace(&json!({"properties": {"desired": {"z": true}}}), Some("*"))
            .unwrap();
        assert_eq!(
            push,
            Some(json!({"z": true, "b": null, "c": null, "$version": 3}))
        );
        assert_eq!(t.desired, json!({"z": true}));
        assert_eq!(t.update(&json!([1]), None).unwrap_err().status, 400);
    }
}
