//! Property tests over the pure protocol code: arbitrary input never panics, and what we encode
//! we decode back exactly. (The hub and the client both parse what the other side sends.)

use edgemodule::message::{self, Message};
use edgemodule::protocol::{connection_string::ConnectionString, property_bag, sas, topics, twin};
use proptest::prelude::*;

fn id() -> impl Strategy<Value = String> {
    // Device/module ids: what IoT Hub allows (letters, digits and -.%_*!(),:=@$'), less `?`,
    // `#` and `+`: MQTT topics cannot carry the wildcards and the username uses `/?` as its
    // separator, so such ids fail with every MQTT SDK.
    "[A-Za-z0-9\\-.%_*!(),:=@$']{1,24}"
}

fn props() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec((".{1,16}", prop::option::of(".{0,24}")), 0..8).prop_map(|v| {
        // Keys are unique in a bag, and `$.` keys are system properties with their own fields.
        let mut seen = std::collections::HashSet::new();
        v.into_iter()
            .filter(|(k, _)| !k.starts_with("$.") && seen.insert(k.clone()))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn property_bags_round_trip(bag in props()) {
        let encoded = property_bag::encode(&bag);
        prop_assert!(!encoded.contains('/'));
        prop_assert_eq!(property_bag::decode(&encoded).unwrap(), bag);
    }

    #[test]
    fn decoding_arbitrary_bags_never_panics(s in ".{0,64}") {
        let _ = property_bag::decode(&s);
    }

    #[test]
    fn messages_round_trip_through_an_input_topic(
        body in prop::collection::vec(any::<u8>(), 0..64),
        mid in prop::option::of(".{1,12}"),
        ct in prop::option::of(".{1,12}"),
        custom in props(),
        input in ".{1,12}",
    ) {
        let mut msg = Message::new(body.clone());
        msg.message_id = mid.clone();
        msg.content_type = ct.clone();
        msg.properties = custom.clone();
        let bag = property_bag::encode(&message::to_bag(&msg, None));
        let topic = topics::input_topic("dev", "mod", &input, &bag);
        let parsed = topics::parse_input_topic(&topic).unwrap();
        prop_assert_eq!(&parsed.input_name, &input);
        let back = message::from_bag(body, parsed.properties, Some(input));
        prop_assert_eq!(back.message_id, mid);
        prop_assert_eq!(back.content_type, ct);
        prop_assert_eq!(back.properties, custom);
    }

    #[test]
    fn outputs_decode_with_their_output_name(output in ".{1,12}", custom in props(), d in id(), m in id()) {
        let mut msg = Message::new(b"x".to_vec());
        msg.properties = custom;
        let bag = property_bag::encode(&message::to_bag(&msg, Some(&output)));
        let t = topics::parse_events_topic(&topics::events_topic(&d, &m, &bag)).unwrap();
        let name = message::output_name(&t.properties);
        prop_assert_eq!(name, Some(output.as_str()));
        prop_assert_eq!(t.device_id, d);
        prop_assert_eq!(t.module_id, Some(m));
    }

    #[test]
    fn topic_parsers_never_panic(s in "(devices/|\\$iothub/)?.{0,80}") {
        let _ = topics::parse_input_topic(&s);
        let _ = topics::parse_events_topic(&s);
        let _ = topics::parse_twin_response_topic(&s);
        let _ = topics::parse_desired_patch_topic(&s);
        let _ = topics::parse_twin_request_topic(&s);
        let _ = topics::parse_method_request_topic(&s);
        let _ = topics::parse_method_response_topic(&s);
        let _ = topics::parse_username(&s);
    }

    #[test]
    fn twin_and_method_topics_round_trip(rid in "[A-Za-z0-9-]{1,36}", status in 100u16..600, v in prop::option::of(0i64..1_000_000), name in "[A-Za-z0-9_]{1,30}") {
        let r = topics::parse_twin_response_topic(&topics::twin_response_topic(status, &rid, v)).unwrap();
        prop_assert_eq!((r.status, r.rid.as_str(), r.version), (status, rid.as_str(), v));
        let m = topics::parse_method_request_topic(&topics::method_request_topic(&name, &rid)).unwrap();
        prop_assert_eq!((m.name.as_str(), m.rid.as_str()), (name.as_str(), rid.as_str()));
        let s = topics::parse_method_response_topic(&topics::method_response_topic(status as i32, &rid)).unwrap();
        prop_assert_eq!((s.status, s.rid.as_str()), (status as i32, rid.as_str()));
    }

    #[test]
    fn usernames_round_trip(host in "[a-z0-9.-]{1,20}", d in id(), m in id(), ua in ".{0,30}") {
        let u = topics::parse_username(&topics::username(&host, &d, &m, "2020-09-30", &ua, None)).unwrap();
        prop_assert_eq!(u.device_id, d);
        prop_assert_eq!(u.module_id, Some(m));
        prop_assert_eq!(u.api_version, "2020-09-30");
    }

    #[test]
    fn sas_tokens_verify_and_reject_tampering(host in "[a-z0-9.-]{1,20}", d in id(), m in id(), key in prop::collection::vec(any::<u8>(), 16..48), flip in any::<usize>()) {
        let tok = sas::module_token(&host, &d, &m, &key, 4_000_000_000);
        let parsed = sas::parse_token(&tok).unwrap();
        prop_assert!(sas::verify(&parsed, &[&key], 1_700_000_000, 300).is_ok());
        let (_, dd, mm) = sas::audience(&parsed).unwrap();
        prop_assert_eq!((dd, mm), (d, Some(m)));
        let mut wrong = key.clone();
        let i = flip % wrong.len();
        wrong[i] ^= 1;
        prop_assert!(sas::verify(&parsed, &[&wrong], 1_700_000_000, 300).is_err());
    }

    #[test]
    fn token_and_connection_string_parsers_never_panic(s in ".{0,120}") {
        let _ = sas::parse_token(&s);
        let _ = s.parse::<ConnectionString>();
    }

    #[test]
    fn twin_parsing_never_panics(s in ".{0,80}") {
        let _ = twin::parse_twin(s.as_bytes());
    }
}
