//! Module twin documents and patches (PROTOCOL §7).

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};

/// Twin limits from the IoT Hub docs (PROTOCOL §7 "Limits").
pub const MAX_DEPTH: usize = 10;
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_STRING_BYTES: usize = 4096;

const VERSION: &str = "$version";
const METADATA: &str = "$metadata";

/// The `properties` of a twin as a GET returns them.
#[derive(Clone, Debug, PartialEq)]
pub struct Twin {
    pub desired: Value,
    pub reported: Value,
}

impl Default for Twin {
    fn default() -> Self {
        Twin {
            desired: Value::Object(Map::new()),
            reported: Value::Object(Map::new()),
        }
    }
}

impl Twin {
    pub fn desired_version(&self) -> Option<i64> {
        patch_version(&self.desired)
    }
    pub fn reported_version(&self) -> Option<i64> {
        patch_version(&self.reported)
    }
}

/// Parses a twin GET body `{"desired":{...},"reported":{...}}` (also accepted: the service shape
/// `{"properties":{"desired":..,"reported":..}}`). A missing section is an empty object.
/// Anything else is a `Protocol` error.
pub fn parse_twin(body: &[u8]) -> Result<Twin> {
    let proto = |m: &str| Error::new(ErrorKind::Protocol, format!("twin document: {m}"));
    let v: Value = serde_json::from_slice(body).map_err(|e| proto(&format!("not JSON ({e})")))?;
    let Value::Object(mut top) = v else {
        return Err(proto("not a JSON object"));
    };
    if !top.contains_key("desired") && !top.contains_key("reported") {
        if let Some(Value::Object(props)) = top.remove("properties") {
            top = props;
        }
    }
    let mut section = |name: &str| match top.remove(name) {
        None => Ok(Value::Object(Map::new())),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err(proto(&format!("\"{name}\" is not an object"))),
    };
    Ok(Twin {
        desired: section("desired")?,
        reported: section("reported")?,
    })
}

/// The `$version` of a patch or twin section, if it is an integer.
pub fn patch_version(patch: &Value) -> Option<i64> {
    patch.get(VERSION).and_then(Value::as_i64)
}

/// JSON merge patch (RFC 7396) as twins apply it: `null` deletes, objects merge recursively,
/// anything else replaces; `$version` and `$metadata` in the patch are ignored at every level
/// (user keys cannot start with `$`, and the version is the caller's business).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        unreachable!("target was just made an object")
    };
    for (k, v) in patch {
        if k == VERSION || k == METADATA {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(_) => {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Checks a reported-properties patch against the twin rules before sending it: a JSON object;
/// keys non-empty, at most 1 KB, without `.`, `$`, space or control characters; strings at most
/// 4 KB; nesting depth at most 10 (the patch object itself is depth 1). `null` (delete) is fine.
pub fn validate_reported_patch(patch: &Value) -> Result<()> {
    if !patch.is_object() {
        return Err(Error::invalid(
            "a reported properties patch must be a JSON object",
        ));
    }
    check(patch, 1, &mut String::new())
}

fn check(v: &Value, depth: usize, path: &mut String) -> Result<()> {
    let here = |path: &str| {
        if path.is_empty() {
            "the patch".to_owned()
        } else {
            format!("{path:?}")
        }
    };
    match v {
        Value::Object(m) => {
            if depth > MAX_DEPTH {
                return Err(Error::invalid(format!(
                    "reported properties nest deeper than {MAX_DEPTH} levels at {}",
                    here(path)
                )));
            }
            for (k, child) in m {
                check_key(k, path)?;
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                check(child, depth + 1, path)?;
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            if depth > MAX_DEPTH {
                return Err(Error::invalid(format!(
                    "reported properties nest deeper than {MAX_DEPTH} levels at {}",
                    here(path)
                )));
            }
            for child in a {
                check(child, depth + 1, path)?;
            }
        }
        Value::String(s) if s.len() > MAX_STRING_BYTES => {
            return Err(Error::invalid(format!(
                "reported property {} is a string longer than {MAX_STRING_BYTES} bytes",
                here(path)
            )));
        }
        _ => {}
    }
    Ok(())
}

fn check_key(k: &str, parent: &str) -> Result<()> {
    let at = || {
        if parent.is_empty() {
            String::new()
        } else {
            format!(" under {parent:?}")
        }
    };
    if k.is_empty() {
        return Err(Error::invalid(format!(
            "reported property key is empty{}",
            at()
        )));
    }
    if k.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(format!(
            "reported property key{} is longer than {MAX_KEY_BYTES} bytes",
            at()
        )));
    }
    if let Some(c) = k
        .chars()
        .find(|c| matches!(c, '.' | '$' | ' ') || c.is_control())
    {
        return Err(Error::invalid(format!(
            "reported property key {k:?}{} contains {c:?} ('.', '$', ' ' and control characters are not allowed)",
            at()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_twin_sections_and_versions() {
        let t =
            parse_twin(br#"{"desired":{"a":1,"$version":4},"reported":{"$version":2}}"#).unwrap();
        assert_eq!(t.desired, json!({"a":1,"$version":4}));
        assert_eq!(t.desired_version(), Some(4));
        assert_eq!(t.reported_version(), Some(2));
        let t = parse_twin(br#"{"desired":{"x":true}}"#).unwrap();
        assert_eq!(t.reported, json!({}));
        assert_eq!(t.reported_version(), None);
        let t = parse_twin(br#"{"properties":{"desired":{"$version":9},"reported":{}}}"#).unwrap();
        assert_eq!(t.desired_version(), Some(9));
        assert_eq!(Twin::default(), parse_twin(b"{}").unwrap());
    }

    #[test]
    fn parse_twin_garbage_is_protocol_error() {
        for bad in [
            &b""[..],
            b" ",
            b"not json",
            b"[]",
            b"1",
            br#"{"desired":3}"#,
            br#"{"reported":[]}"#,
        ] {
            let e = parse_twin(bad).unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::Protocol,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn patch_version_reads_integer_only() {
        assert_eq!(patch_version(&json!({"$version": 7})), Some(7));
        assert_eq!(patch_version(&json!({"$version": "7"})), None);
        assert_eq!(patch_version(&json!({})), None);
        assert_eq!(patch_version(&json!(null)), None);
    }

    #[test]
    fn merge_patch_nulls_nested_and_version_ignored() {
        let mut t = json!({"a":1,"b":{"c":2,"d":3},"e":[1,2],"$version":3,"keep":"x"});
        merge_patch(
            &mut t,
            &json!({"a":null,"b":{"c":null,"f":{"g":null,"h":1}},"e":[3],"n":{"x":null},"$version":9,"$metadata":{"a":1}}),
        );
        assert_eq!(
            t,
            json!({"b":{"d":3,"f":{"h":1}},"e":[3],"n":{},"$version":3,"keep":"x"})
        );
    }

    #[test]
    fn merge_patch_replaces_non_objects() {
        let mut t = json!({"a":{"b":1}});
        merge_patch(&mut t, &json!({"a":5}));
        assert_eq!(t, json!({"a":5}));
        merge_patch(&mut t, &json!({"a":{"z":1}}));
        assert_eq!(t, json!({"a":{"z":1}}));
        let mut s = json!("scalar");
        merge_patch(&mut s, &json!({"k":1}));
        assert_eq!(s, json!({"k":1}));
        merge_patch(&mut s, &json!([1]));
        assert_eq!(s, json!([1]));
        let mut unchanged = json!({"a":1});
        merge_patch(&mut unchanged, &json!({"missing":null}));
        assert_eq!(unchanged, json!({"a":1}));
    }

    fn nested(levels: usize) -> Value {
        // `levels` objects in total, the outermost being the patch itself
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "k": v });
        }
        v
    }

    #[test]
    fn validate_accepts_normal_patches() {
        validate_reported_patch(&json!({})).unwrap();
        validate_reported_patch(&json!({"a":1,"b":{"c":null,"d":[1,{"e":"x"}]},"ü":true})).unwrap();
        validate_reported_patch(&nested(MAX_DEPTH)).unwrap();
        validate_reported_patch(&json!({"s": "x".repeat(MAX_STRING_BYTES)})).unwrap();
        validate_reported_patch(&json!({ "k".repeat(MAX_KEY_BYTES): 1 })).unwrap();
    }

    #[test]
    fn validate_rejects_bad_keys() {
        for (patch, needle) in [
            (json!({"a.b":1}), "'.'"),
            (json!({"$version":1}), "'$'"),
            (json!({"a b":1}), "' '"),
            (json!({"a\u{1}":1}), "'\\u{1}'"),
            (json!({"tab\t":1}), "'\\t'"),
            (json!({"":1}), "empty"),
            (json!({"ok":{"x.y":1}}), "under \"ok\""),
            (
                json!({ "k".repeat(MAX_KEY_BYTES + 1): 1 }),
                "longer than 1024",
            ),
        ] {
            let e = validate_reported_patch(&patch).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{patch}");
            assert!(e.message.contains(needle), "{patch}: {e}");
        }
    }

    #[test]
    fn validate_rejects_depth_and_non_objects_and_long_strings() {
        let e = validate_reported_patch(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert!(e.message.contains("deeper than 10"), "{e}");
        // arrays count as a level too
        let mut deep_array = json!(1);
        for _ in 0..MAX_DEPTH {
            deep_array = json!([deep_array]);
        }
        assert!(validate_reported_patch(&json!({ "a": deep_array })).is_err());
        for bad in [json!(null), json!([]), json!(1), json!("x")] {
            assert_eq!(
                validate_reported_patch(&bad).unwrap_err().kind,
                ErrorKind::InvalidArgument
            );
        }
        let e = validate_reported_patch(&json!({"a":{"s": "x".repeat(MAX_STRING_BYTES + 1)}}))
            .unwrap_err();
        assert!(e.message.contains("\"a.s\""), "{e}");
    }
}
