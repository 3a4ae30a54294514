//! MQTT property bags (PROTOCOL §5–6): `k=v&k2&k3=` pairs in the last topic segment.
//!
//! Encoding is the strictest common form of the SDKs (Python `quote(safe="")`): only the RFC 3986
//! unreserved characters stay literal, so `$` travels as `%24`, `/` as `%2F`, space as `%20`.
//! Decoding is strict about escapes (a broken escape means a corrupted topic, and silently
//! keeping it would hand the application a different property than was sent).

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::{Error, Result};

/// Ordered `(key, value)` pairs; `None` is a null value (key without `=`).
pub type PropertyBag = Vec<(String, Option<String>)>;

/// Everything except `A-Z a-z 0-9 - . _ ~` is escaped (upper-case hex).
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s`, keeping only unreserved characters.
pub fn pct_encode(s: &str) -> String {
    percent_encode(s.as_bytes(), UNRESERVED).to_string()
}

/// Encodes pairs as `k=v` joined by `&`; `None` gives a bare `k`, `Some("")` gives `k=`.
pub fn encode(props: &[(String, Option<String>)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in props.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&pct_encode(k));
        if let Some(v) = v {
            out.push('=');
            out.push_str(&pct_encode(v));
        }
    }
    out
}

/// Strictly percent-decodes `s`: every `%` must start a two-digit hex escape and the result must
/// be UTF-8. `+` is kept as `+` (the SDKs never encode space as `+`). `what` names the input in
/// the error message.
pub fn pct_decode_strict(s: &str, what: &str) -> Result<String> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_val(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_val(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => {
                    return Err(Error::invalid(format!(
                        "{what}: malformed percent escape at byte {i}"
                    )))
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::invalid(format!("{what}: percent escapes do not decode to UTF-8")))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Shortens a raw segment for error messages (bags can be long; they never hold secrets).
fn shown(seg: &str) -> String {
    const MAX: usize = 64;
    if seg.chars().count() <= MAX {
        format!("{seg:?}")
    } else {
        let head: String = seg.chars().take(MAX).collect();
        format!("{head:?}...")
    }
}

/// Decodes a property bag. `""` (or `"/"`) is empty; one trailing `/` is tolerated (Node adds it);
/// empty pairs (`a=1&&b=2`) are skipped; the value is everything after the first `=`.
/// Errors (`InvalidArgument`) name the offending pair: bad `%` escape, non-UTF-8, empty key, or a
/// raw `/` (the bag is a single topic segment).
pub fn decode(bag: &str) -> Result<PropertyBag> {
    let bag = bag.strip_suffix('/').unwrap_or(bag);
    let mut out = PropertyBag::new();
    for seg in bag.split('&') {
        if seg.is_empty() {
            continue;
        }
        if seg.contains('/') {
            return Err(Error::invalid(format!(
                "property bag pair {} contains an unencoded '/'",
                shown(seg)
            )));
        }
        let (k, v) = match seg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (seg, None),
        };
        if k.is_empty() {
            return Err(Error::invalid(format!(
                "property bag pair {} has an empty key",
                shown(seg)
            )));
        }
        let what = format!("property bag pair {}", shown(seg));
        let key = pct_decode_strict(k, &what)?;
        let value = v.map(|v| pct_decode_strict(v, &what)).transpose()?;
        out.push((key, value));
    }
    Ok(out)
}

/// The value of the first pair named `key` (`Some(None)` for a null value).
pub fn get<'a>(bag: &'a [(String, Option<String>)], key: &str) -> Option<Option<&'a str>> {
    bag.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_deref())
}

/// Test helper: loads `shared/vectors/<name>` (the checkout sits next to `shared/`).
#[cfg(test)]
pub(crate) fn test_vectors(name: &str) -> serde_json::Value {
    let path = format!("{}/../../shared/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cross-check vector file {path} is missing ({e}); the repo must be checked out next to shared/")
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("vector file {path} is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn p(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_owned(), v.map(str::to_owned))
    }

    #[test]
    fn encode_basic_null_and_empty() {
        let bag = vec![p("a", Some("1")), p("flag", None), p("empty", Some(""))];
        assert_eq!(encode(&bag), "a=1&flag&empty=");
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn encode_escapes_everything_but_unreserved_upper_hex() {
        let bag = vec![
            p("$.on", Some("out put/1")),
            p("k&=/%", Some("v ü&=?#+")),
            p("AZaz09-._~", Some("AZaz09-._~")),
        ];
        assert_eq!(
            encode(&bag),
            "%24.on=out%20put%2F1&k%26%3D%2F%25=v%20%C3%BC%26%3D%3F%23%2B&AZaz09-._~=AZaz09-._~"
        );
        assert_eq!(pct_encode("ünï☃"), "%C3%BCn%C3%AF%E2%98%83");
        assert_eq!(pct_encode("!'()*"), "%21%27%28%29%2A");
    }

    #[test]
    fn decode_round_trips_odd_characters() {
        let bag = vec![
            p("k&=/%", Some("v ü&=?#+")),
            p("space key", Some("a b")),
            p("ünï", Some("☃")),
            p("null", None),
            p("empty", Some("")),
            p("$.mid", Some("a/b c&d=e%f")),
        ];
        let enc = encode(&bag);
        assert_eq!(decode(&enc).unwrap(), bag);
        assert_eq!(decode(&format!("{enc}/")).unwrap(), bag);
    }

    #[test]
    fn decode_empty_forms() {
        assert_eq!(decode("").unwrap(), PropertyBag::new());
        assert_eq!(decode("/").unwrap(), PropertyBag::new());
        assert_eq!(decode("&&").unwrap(), PropertyBag::new());
    }

    #[test]
    fn decode_skips_empty_pairs_and_keeps_plus() {
        assert_eq!(
            decode("a=1&&b=2&").unwrap(),
            vec![p("a", Some("1")), p("b", Some("2"))]
        );
        assert_eq!(decode("a+b=c+d").unwrap(), vec![p("a+b", Some("c+d"))]);
    }

    #[test]
    fn decode_value_keeps_later_equals_and_lowercase_hex() {
        assert_eq!(decode("a=b=c").unwrap(), vec![p("a", Some("b=c"))]);
        assert_eq!(
            decode("%24.ct=application%2fjson").unwrap(),
            vec![p("$.ct", Some("application/json"))]
        );
    }

    #[test]
    fn decode_accepts_raw_unicode_and_dollar() {
        assert_eq!(
            decode("$.mid=ü☃&x=?#").unwrap(),
            vec![p("$.mid", Some("ü☃")), p("x", Some("?#"))]
        );
    }

    #[test]
    fn decode_rejects_malformed_escapes_naming_the_pair() {
        for bad in ["a=%", "a=%2", "a=%zz", "a%g1=1", "ok=1&k=%4"] {
            let e = decode(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message.contains("malformed percent escape"), "{e}");
            let pair = bad.rsplit('&').next().unwrap();
            assert!(e.message.contains(&format!("{pair:?}")), "{e}");
        }
    }

    #[test]
    fn decode_rejects_non_utf8() {
        let e = decode("k=%FF%FE").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains("UTF-8") && e.message.contains("\"k=%FF%FE\""));
    }

    #[test]
    fn decode_rejects_empty_key_and_inner_slash() {
        let e = decode("=v").unwrap_err();
        assert!(e.message.contains("empty key"), "{e}");
        let e = decode("a=1/b=2").unwrap_err();
        assert!(e.message.contains("unencoded '/'"), "{e}");
        assert!(decode("a=1//").is_err());
    }

    #[test]
    fn long_pairs_are_shortened_in_errors() {
        let long = format!("k={}%", "x".repeat(500));
        let e = decode(&long).unwrap_err();
        assert!(e.message.len() < 200, "{}", e.message);
    }

    #[test]
    fn get_finds_first_and_null() {
        let bag = vec![p("a", Some("1")), p("n", None), p("a", Some("2"))];
        assert_eq!(get(&bag, "a"), Some(Some("1")));
        assert_eq!(get(&bag, "n"), Some(None));
        assert_eq!(get(&bag, "x"), None);
    }
}
