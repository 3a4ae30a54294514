//! SAS tokens (PROTOCOL §3): signing as the SDKs do it and verifying as edgeHub does it.
//!
//! Nothing here ever puts a key, a signature or a token into an error message.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::hmac;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::property_bag::{pct_decode_strict, pct_encode};

const PREFIX: &str = "SharedAccessSignature ";

fn auth(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Authentication, message)
}

/// `{host}/devices/{d}/modules/{m}` (not encoded). Uses the IoT Hub host, not the gateway.
pub fn module_resource_uri(hub_host: &str, device: &str, module: &str) -> String {
    format!("{hub_host}/devices/{device}/modules/{module}")
}

/// The `sr` value: like Python `quote(uri, safe="")` (only `A-Za-z0-9_.-~` literal, upper hex).
pub fn encode_resource_uri(uri: &str) -> String {
    pct_encode(uri)
}

/// `"{sr}\n{se}"`, with `sr` exactly as it appears in the token.
pub fn string_to_sign(encoded_sr: &str, expiry: u64) -> String {
    format!("{encoded_sr}\n{expiry}")
}

/// `base64(HMAC-SHA256(key, data))`.
pub fn sign(key: &[u8], data: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    STANDARD.encode(hmac::sign(&key, data).as_ref())
}

/// Decodes a base64 shared access key. The error never echoes the key.
pub fn decode_key(key_b64: &str) -> Result<Vec<u8>> {
    let key = STANDARD
        .decode(key_b64.trim())
        .map_err(|_| Error::config("the shared access key is not valid base64"))?;
    if key.is_empty() {
        return Err(Error::config("the shared access key is empty"));
    }
    Ok(key)
}

/// `SharedAccessSignature sr={sr}&sig={urlenc(sig)}&se={se}` (no `skn` for device/module keys).
pub fn token(encoded_sr: &str, signature_b64: &str, expiry: u64) -> String {
    format!(
        "{PREFIX}sr={encoded_sr}&sig={}&se={expiry}",
        pct_encode(signature_b64)
    )
}

/// Convenience: a complete module token signed locally with `key`.
pub fn module_token(hub_host: &str, device: &str, module: &str, key: &[u8], expiry: u64) -> String {
    let sr = encode_resource_uri(&module_resource_uri(hub_host, device, module));
    let sig = sign(key, string_to_sign(&sr, expiry).as_bytes());
    token(&sr, &sig, expiry)
}

/// A parsed token. `sr_raw` is kept exactly as sent (it is what was signed); `sig` is the
/// URL-decoded base64 signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    pub sr_raw: String,
    pub sig: String,
    pub se: u64,
    pub skn: Option<String>,
}

impl std::fmt::Debug for SasToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasToken")
            .field("sr_raw", &self.sr_raw)
            .field("sig", &"***")
            .field("se", &self.se)
            .field("skn", &self.skn)
            .finish()
    }
}

/// Parses `SharedAccessSignature k=v&k=v...` in any field order. `sr`, `sig` and `se` are
/// required; `se` must be canonical decimal (so that re-rendering it gives the signed bytes);
/// unknown fields are ignored, repeated ones rejected. Errors are `Authentication`.
pub fn parse_token(s: &str) -> Result<SasToken> {
    let fields = s
        .strip_prefix(PREFIX)
        .ok_or_else(|| auth("the SAS token does not start with \"SharedAccessSignature \""))?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for pair in fields.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| auth("a SAS token field has no '='"))?;
        let slot = match k {
            "sr" => &mut sr,
            "sig" => &mut sig,
            "se" => &mut se,
            "skn" => &mut skn,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(auth(format!("the SAS token repeats field {k:?}")));
        }
    }
    let missing = |f: &str| auth(format!("the SAS token has no {f:?} field"));
    let sr = sr.ok_or_else(|| missing("sr"))?;
    let sig = sig.ok_or_else(|| missing("sig"))?;
    let se = se.ok_or_else(|| missing("se"))?;
    let decode = |v: &str, f: &str| {
        pct_decode_strict(v, f).map_err(|_| {
            auth(format!(
                "the SAS token field {f:?} is not URL-encoded correctly"
            ))
        })
    };
    let se = decode(se, "se")?;
    let canonical = !se.is_empty()
        && se.bytes().all(|b| b.is_ascii_digit())
        && (se == "0" || !se.starts_with('0'));
    let se = se
        .parse::<u64>()
        .ok()
        .filter(|_| canonical)
        .ok_or_else(|| auth("the SAS token expiry \"se\" is not a decimal Unix time"))?;
    if sr.is_empty() {
        return Err(auth("the SAS token has an empty \"sr\""));
    }
    Ok(SasToken {
        sr_raw: sr.to_owned(),
        sig: decode(sig, "sig")?,
        se,
        skn: skn.map(|v| decode(v, "skn")).transpose()?,
    })
}

/// Verifies as edgeHub does: not expired (`se + max_skew < now` fails), and
/// `base64(HMAC(key, sr_raw + "\n" + se))` equals `sig` for one of `keys` (constant-time).
/// Does not check the audience: see [`audience`].
pub fn verify(t: &SasToken, keys: &[&[u8]], now_unix: u64, max_skew_secs: u64) -> Result<()> {
    if t.se.saturating_add(max_skew_secs) < now_unix {
        return Err(auth("the SAS token has expired"));
    }
    // A sig that is not base64 cannot match; treat it like a mismatch.
    let sig = STANDARD
        .decode(t.sig.as_bytes())
        .map_err(|_| auth("the SAS token signature does not match"))?;
    let data = string_to_sign(&t.sr_raw, t.se);
    let ok = keys.iter().any(|k| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, k);
        hmac::verify(&key, data.as_bytes(), &sig).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(auth("the SAS token signature does not match"))
    }
}

/// The decoded audience `{host}/devices/{d}[/modules/{m}]` as `(host, device, module)`.
pub fn audience(t: &SasToken) -> Result<(String, String, Option<String>)> {
    let sr = pct_decode_strict(&t.sr_raw, "sr")
        .map_err(|_| auth("the SAS token resource \"sr\" is not URL-encoded correctly"))?;
    let segs: Vec<&str> = sr.split('/').collect();
    let (host, device, module) = match segs.as_slice() {
        [h, "devices", d] => (*h, *d, None),
        [h, "devices", d, "modules", m] => (*h, *d, Some(*m)),
        _ => {
            return Err(auth(format!(
                "the SAS token resource {sr:?} is not {{host}}/devices/{{d}}[/modules/{{m}}]"
            )))
        }
    };
    if host.is_empty() || device.is_empty() || module.is_some_and(str::is_empty) {
        return Err(auth(format!(
            "the SAS token resource {sr:?} has an empty segment"
        )));
    }
    Ok((
        host.to_owned(),
        device.to_owned(),
        module.map(str::to_owned),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::property_bag::test_vectors;

    struct Vector {
        uri: String,
        key: Vec<u8>,
        key_b64: String,
        expiry: u64,
        token: String,
    }

    fn vectors() -> Vec<Vector> {
        let v = test_vectors("sas_tokens.json");
        let list = v["vectors"].as_array().expect("vectors array");
        assert!(!list.is_empty());
        list.iter()
            .map(|v| {
                let key_b64 = v["key_b64"].as_str().unwrap().to_owned();
                Vector {
                    uri: v["resource_uri"].as_str().unwrap().to_owned(),
                    key: decode_key(&key_b64).unwrap(),
                    key_b64,
                    expiry: v["expiry"].as_u64().unwrap(),
                    token: v["token"].as_str().unwrap().to_owned(),
                }
            })
            .collect()
    }

    fn sign_uri(uri: &str, key: &[u8], expiry: u64) -> String {
        let sr = encode_resource_uri(uri);
        token(
            &sr,
            &sign(key, string_to_sign(&sr, expiry).as_bytes()),
            expiry,
        )
    }

    #[test]
    fn signer_produces_every_vector_token() {
        for v in vectors() {
            assert_eq!(sign_uri(&v.uri, &v.key, v.expiry), v.token, "{}", v.uri);
        }
    }

    #[test]
    fn module_token_matches_vectors() {
        for v in vectors() {
            let segs: Vec<&str> = v.uri.split('/').collect();
            assert_eq!(segs.len(), 5);
            assert_eq!(
                module_resource_uri(segs[0], segs[2], segs[4]),
                v.uri,
                "resource uri"
            );
            assert_eq!(
                module_token(segs[0], segs[2], segs[4], &v.key, v.expiry),
                v.token
            );
        }
    }

    #[test]
    fn verify_accepts_every_vector() {
        for v in vectors() {
            let t = parse_token(&v.token).unwrap();
            assert_eq!(t.se, v.expiry);
            assert_eq!(t.skn, None);
            assert_eq!(t.sr_raw, encode_resource_uri(&v.uri));
            verify(&t, &[&v.key], v.expiry - 1, 300).unwrap();
            verify(&t, &[&v.key], v.expiry, 0).unwrap();
            // within the clock skew
            verify(&t, &[&v.key], v.expiry + 300, 300).unwrap();
            // secondary key matches
            verify(&t, &[b"wrong", &v.key], v.expiry - 1, 300).unwrap();
        }
    }

    #[test]
    fn verify_rejects_wrong_key_tampered_sr_expired() {
        for v in vectors() {
            let t = parse_token(&v.token).unwrap();
            let mut other = v.key.clone();
            other[0] ^= 1;
            let e = verify(&t, &[&other], v.expiry - 1, 300).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Authentication);
            assert!(verify(&t, &[], v.expiry - 1, 300).is_err());

            let mut tampered = t.clone();
            tampered.sr_raw = tampered
                .sr_raw
                .replace("edge", "EDGE")
                .replace("devices", "devicez");
            assert_ne!(tampered.sr_raw, t.sr_raw);
            assert_eq!(
                verify(&tampered, &[&v.key], v.expiry - 1, 300)
                    .unwrap_err()
                    .kind,
                ErrorKind::Authentication
            );
            // re-encoding sr with lower-case hex changes the signed bytes
            let mut lower = t.clone();
            lower.sr_raw = lower.sr_raw.replace("%2F", "%2f");
            assert!(verify(&lower, &[&v.key], v.expiry - 1, 300).is_err());

            let mut later = t.clone();
            later.se += 1;
            assert!(verify(&later, &[&v.key], v.expiry - 1, 300).is_err());

            let e = verify(&t, &[&v.key], v.expiry + 301, 300).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Authentication);
            assert!(e.message.contains("expired"));
            assert!(verify(&t, &[&v.key], v.expiry + 1, 0).is_err());
            // errors never echo secrets
            assert!(!e.message.contains(&t.sig) && !e.message.contains(&v.key_b64));
        }
    }

    #[test]
    fn verify_rejects_non_base64_sig() {
        let v = &vectors()[0];
        let mut t = parse_token(&v.token).unwrap();
        t.sig = "!!!".into();
        assert_eq!(
            verify(&t, &[&v.key], v.expiry - 1, 300).unwrap_err().kind,
            ErrorKind::Authentication
        );
    }

    #[test]
    fn audience_of_vectors() {
        let expected = [
            ("myhub.azure-devices.net", "edge1", "filter"),
            ("devhub.local", "my-edge device", "$edgeHub"),
            ("h.example.com", "d%1", "m+2"),
        ];
        for v in vectors() {
            let t = parse_token(&v.token).unwrap();
            let (h, d, m) = audience(&t).unwrap();
            let want = expected
                .iter()
                .find(|e| e.0 == h)
                .unwrap_or_else(|| panic!("unexpected host {h}"));
            assert_eq!(
                (h.as_str(), d.as_str(), m.as_deref()),
                (want.0, want.1, Some(want.2))
            );
            assert_eq!(module_resource_uri(&h, &d, m.as_deref().unwrap()), v.uri);
        }
    }

    #[test]
    fn audience_forms() {
        let tok = |sr: &str| SasToken {
            sr_raw: sr.into(),
            sig: String::new(),
            se: 0,
            skn: None,
        };
        assert_eq!(
            audience(&tok("h%2fdevices%2fd")).unwrap(),
            ("h".into(), "d".into(), None)
        );
        assert_eq!(
            audience(&tok("h/devices/d/modules/m")).unwrap(),
            ("h".into(), "d".into(), Some("m".into()))
        );
        for bad in [
            "h",
            "h%2Fdevices",
            "h%2Fdevices%2F",
            "%2Fdevices%2Fd",
            "h%2Fdevice%2Fd",
            "h%2Fdevices%2Fd%2Fmodules",
            "h%2Fdevices%2Fd%2Fmodules%2F",
            "h%2Fdevices%2Fd%2Fmods%2Fm",
            "h%2Fdevices%2Fd%2Fmodules%2Fm%2Fx",
            "h%2Fdevices%2Fd%ZZ",
        ] {
            assert_eq!(
                audience(&tok(bad)).unwrap_err().kind,
                ErrorKind::Authentication,
                "{bad}"
            );
        }
    }

    #[test]
    fn parse_token_any_order_and_skn() {
        // Node order: sr, sig, skn, se; the policy-name form of service tokens.
        let t = parse_token("SharedAccessSignature sr=h&sig=a%2Bb%3D&skn=iothubowner&se=10&x=1")
            .unwrap();
        assert_eq!(
            t,
            SasToken {
                sr_raw: "h".into(),
                sig: "a+b=".into(),
                se: 10,
                skn: Some("iothubowner".into())
            }
        );
        let t = parse_token("SharedAccessSignature se=5&sig=s&sr=a%2Fb").unwrap();
        assert_eq!((t.sr_raw.as_str(), t.se), ("a%2Fb", 5));
    }

    #[test]
    fn parse_token_rejects_malformed_without_echo() {
        let secret = "c2VjcmV0c2VjcmV0";
        for bad in [
            format!("sr=h&sig={secret}&se=1"),
            format!("SharedAccessSignature sig={secret}&se=1"),
            "SharedAccessSignature sr=h&se=1".into(),
            format!("SharedAccessSignature sr=h&sig={secret}"),
            format!("SharedAccessSignature sr=h&sig={secret}&se=abc"),
            format!("SharedAccessSignature sr=h&sig={secret}&se=-1"),
            format!("SharedAccessSignature sr=h&sig={secret}&se=01"),
            format!("SharedAccessSignature sr=h&sig={secret}&se=99999999999999999999999"),
            format!("SharedAccessSignature sr=&sig={secret}&se=1"),
            format!("SharedAccessSignature sr=h&sig={secret}&se=1&se=2"),
            format!("SharedAccessSignature sr=h&sig={secret}%&se=1"),
            format!("SharedAccessSignature sr=h&{secret}&se=1"),
        ] {
            let e = parse_token(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Authentication, "{bad}");
            assert!(!e.to_string().contains(secret), "{e}");
        }
    }

    #[test]
    fn debug_redacts_sig() {
        let t = parse_token("SharedAccessSignature sr=h&sig=TOPSECRET&se=1").unwrap();
        let d = format!("{t:?}");
        assert!(!d.contains("TOPSECRET") && d.contains("***"), "{d}");
    }

    #[test]
    fn decode_key_errors_do_not_echo() {
        let e = decode_key("not base64 !!secret").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Configuration);
        assert!(!e.message.contains("secret"));
        assert!(decode_key("").is_err());
        assert_eq!(decode_key("AAE=").unwrap(), vec![0, 1]);
    }

    #[test]
    fn primitives() {
        assert_eq!(
            encode_resource_uri("h/devices/my d/modules/$m~x_y.z-"),
            "h%2Fdevices%2Fmy%20d%2Fmodules%2F%24m~x_y.z-"
        );
        assert_eq!(string_to_sign("sr", 7), "sr\n7");
        // RFC 4231 test case 2
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            STANDARD.encode([
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
                0x64, 0xec, 0x38, 0x43
            ])
        );
        assert_eq!(
            token("a%2Fb", "x+/=", 9),
            "SharedAccessSignature sr=a%2Fb&sig=x%2B%2F%3D&se=9"
        );
    }
}
