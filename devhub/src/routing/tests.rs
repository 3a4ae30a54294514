use super::*;

fn route(text: &str) -> Route {
    parse_route("r", text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> RouteError {
    match parse_route("r1", text) {
        Ok(r) => panic!("expected an error for {text:?}, got {r:?}"),
        Err(e) => e,
    }
}

fn msg() -> RoutedMessage {
    RoutedMessage::new(&b"{}"[..])
}

/// Evaluates `cond` as the WHERE clause of an always-matching route.
fn eval_on(cond: &str, m: &RoutedMessage) -> Value {
    let r = route(&format!("FROM /* WHERE {cond} INTO $upstream"));
    r.condition.expect("condition").evaluate(m)
}

fn eval(cond: &str) -> Value {
    eval_on(cond, &msg())
}

fn num(n: f64) -> Value {
    Value::Number(n)
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

const T: Value = Value::Bool(true);
const F: Value = Value::Bool(false);
const U: Value = Value::Undefined;

fn json_msg(body: &str) -> RoutedMessage {
    RoutedMessage::new(body.as_bytes())
        .with_system("contentType", "application/json")
        .with_system("contentEncoding", "utf-8")
}

// ---------- source paths and source matching ----------

#[test]
fn source_paths() {
    assert_eq!(
        source_path(Some("a"), Some("o1")),
        "/messages/modules/a/outputs/o1/"
    );
    assert_eq!(source_path(Some("a"), None), "/messages/modules/a/");
    assert_eq!(source_path(None, None), "/messages/");
}

#[test]
fn source_table_from_protocol() {
    let a_o1 = source_path(Some("a"), Some("o1"));
    let a_o2 = source_path(Some("a"), Some("o2"));
    let a_none = source_path(Some("a"), None);
    let b_o1 = source_path(Some("b"), Some("o1"));
    let device = source_path(None, None);
    let twin = "/twinChangeNotifications/";
    let paths = [&a_o1[..], &a_o2, &a_none, &b_o1, &device, twin];
    let cases: [(&str, [bool; 6]); 8] = [
        ("/*", [true, true, true, true, true, true]),
        ("/messages/*", [true, true, true, true, true, false]),
        ("/messages", [true, true, true, true, true, false]),
        (
            "/messages/modules/*",
            [true, true, true, true, false, false],
        ),
        (
            "/messages/modules/a/*",
            [true, true, true, false, false, false],
        ),
        (
            "/messages/modules/a/outputs/*",
            [true, true, false, false, false, false],
        ),
        (
            "/messages/modules/a/outputs/o1",
            [true, false, false, false, false, false],
        ),
        (
            "/twinChangeNotifications",
            [false, false, false, false, false, true],
        ),
    ];
    for (source, expected) in cases {
        let r = route(&format!("FROM {source} INTO $upstream"));
        for (path, want) in paths.iter().zip(expected) {
            assert_eq!(r.matches(path, &msg()), want, "{source} vs {path}");
        }
    }
}

#[test]
fn output_o_does_not_match_o2_and_matching_is_case_insensitive() {
    let r = route("FROM /messages/modules/a/outputs/o INTO $upstream");
    assert_eq!(r.source, "/messages/modules/a/outputs/o/");
    assert!(!r.matches("/messages/modules/a/outputs/o2/", &msg()));
    assert!(r.matches("/messages/modules/a/outputs/o/", &msg()));
    assert!(r.matches("/Messages/Modules/A/Outputs/O/", &msg()));
    // A path given without its trailing '/' still matches.
    assert!(r.matches("/messages/modules/a/outputs/o", &msg()));
    // A module prefix does not leak to another module.
    let m = route("FROM /messages/modules/a INTO $upstream");
    assert!(!m.matches("/messages/modules/ab/", &msg()));
}

#[test]
fn normalized_sources() {
    assert_eq!(route("FROM /* INTO $upstream").source, "/");
    assert_eq!(
        route("FROM /messages/* INTO $upstream").source,
        "/messages/"
    );
    assert_eq!(
        route("FROM /messages/modules/a/ INTO $upstream").source,
        "/messages/modules/a/"
    );
    // Only a trailing '*' is trimmed: in the middle it is a literal segment.
    let r = route("FROM /messages/modules/*/outputs/o INTO $upstream");
    assert_eq!(r.source, "/messages/modules/*/outputs/o/");
    assert!(!r.matches("/messages/modules/a/outputs/o/", &msg()));
}

// ---------- statement grammar and sinks ----------

#[test]
fn full_route_fields() {
    let r = parse_route(
        "r1",
        "SELECT * FROM /messages/modules/a/outputs/o1 WHERE $connectionModuleId = 'a' INTO BrokeredEndpoint(\"/modules/b/inputs/i1\")",
    )
    .unwrap();
    assert_eq!(r.name, "r1");
    assert_eq!(r.source, "/messages/modules/a/outputs/o1/");
    assert_eq!(
        r.sink,
        Sink::Module {
            module: "b".into(),
            input: "i1".into()
        }
    );
    assert_eq!(
        r.condition.as_ref().unwrap().text,
        "$connectionModuleId = 'a'"
    );
    assert_eq!(r.priority, 2_000_000_000);
    assert_eq!(r.ttl_secs, 0);
    assert!(r.text.starts_with("SELECT * FROM"));
}

#[test]
fn keywords_and_sinks_are_case_insensitive() {
    let r = route("select * from /messages/* where true into $UPSTREAM");
    assert_eq!(r.sink, Sink::Upstream);
    let r = route("FrOm /messages/* InTo brokeredendpoint('modules/m/inputs/in1/')");
    assert_eq!(
        r.sink,
        Sink::Module {
            module: "m".into(),
            input: "in1".into()
        }
    );
    assert_eq!(r.sink.endpoint_id("edge1"), "edge1/m/in1");
    assert_eq!(Sink::Upstream.endpoint_id("edge1"), "$upstream");
    assert_eq!(
        r.sink.to_string(),
        "BrokeredEndpoint(\"/modules/m/inputs/in1\")"
    );
}

#[test]
fn sink_serde_roundtrip() {
    let s = Sink::Module {
        module: "m".into(),
        input: "i".into(),
    };
    let j = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Sink>(&j).unwrap(), s);
}

#[test]
fn errors_carry_route_and_column() {
    let e = err("FROM /messages/* INT $upstream");
    assert_eq!(e.route, "r1");
    assert_eq!(e.column, 18);
    assert_eq!(e.message, "expected INTO, found 'INT'");
    assert_eq!(
        e.to_string(),
        "route 'r1', column 18: expected INTO, found 'INT'"
    );

    let e = err("FORM /messages/* INTO $upstream");
    assert_eq!(
        (e.column, e.message.as_str()),
        (1, "expected FROM, found 'FORM'")
    );

    let e = err("SELECT FROM /messages INTO $upstream");
    assert_eq!(e.column, 8);

    let e = err("FROM messages INTO $upstream");
    assert_eq!(e.column, 6);

    let e = err("FROM /messages/* WHERE a = INTO $upstream");
    assert_eq!(
        (e.column, e.message.as_str()),
        (28, "expected an expression, found 'INTO'")
    );

    let e = err("FROM /messages/* WHERE (a = 'x' INTO $upstream");
    assert_eq!(
        (e.column, e.message.as_str()),
        (33, "expected ')', found 'INTO'")
    );

    let e = err("FROM /messages/* WHERE a = 'x INTO $upstream");
    assert_eq!((e.column, e.message.as_str()), (28, "unterminated string"));

    let e = err("FROM /messages/* WHERE foo(a) INTO $upstream");
    assert_eq!(
        (e.column, e.message.as_str()),
        (24, "unknown function 'foo'")
    );

    let e = err("FROM /messages/* WHERE upper(a, b) = 'X' INTO $upstream");
    assert_eq!(e.column, 24);
    assert_eq!(e.message, "function 'upper' takes 1 argument(s), got 2");

    let e = err("FROM /messages/* WHERE a @ b INTO $upstream");
    assert_eq!(e.column, 26);

    let e = err("FROM /messages/* WHERE a = 1 INTO $upstream extra");
    assert_eq!(
        (e.column, e.message.as_str()),
        (45, "expected end of route, found 'extra'")
    );

    let e = err("FROM /messages/*");
    assert_eq!(
        (e.column, e.message.as_str()),
        (17, "expected INTO, found end of input")
    );

    let e = err("");
    assert_eq!(
        (e.column, e.message.as_str()),
        (1, "expected FROM, found end of input")
    );

    let e = err("FROM /messages/* INTO $downstream");
    assert_eq!(e.column, 23);
    assert!(e.message.contains("$downstream"), "{}", e.message);

    let e = err("FROM /messages/* INTO Endpoint(\"/modules/b/inputs/i\")");
    assert_eq!(e.column, 23);

    let e = err("FROM /messages/* INTO BrokeredEndpoint(\"/modules/b/inputs\")");
    assert_eq!(e.column, 40);
    assert!(e.message.starts_with("invalid BrokeredEndpoint address"));

    let e = err("FROM /messages/* INTO BrokeredEndpoint(\"/modules/b/inputs/i/x\")");
    assert_eq!(e.column, 40);

    let e = err("FROM /messages/* INTO BrokeredEndpoint(/modules/b/inputs/i)");
    assert_eq!(e.column, 40);
}

#[test]
fn error_converts_to_configuration_error() {
    let e: edgemodule::Error = err("FROM").into();
    assert_eq!(e.kind, edgemodule::ErrorKind::Configuration);
    assert_eq!(
        e.message,
        "route 'r1', column 5: expected a source path starting with '/', found end of input"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let cond = format!("{}true{}", "(".repeat(5000), ")".repeat(5000));
    let e = err(&format!("FROM /* WHERE {cond} INTO $upstream"));
    assert_eq!(e.message, "expression nested too deeply");
    let cond = "1".to_string() + &" + 1".repeat(100_000) + " = 1";
    let e = err(&format!("FROM /* WHERE {cond} INTO $upstream"));
    assert_eq!(
        e.message,
        "condition too complex (more than 1000 operators)"
    );
    let ok = "1".to_string() + &" + 1".repeat(999) + " = 1000";
    assert_eq!(eval(&ok), T);
    let cond = "NOT ".repeat(5000) + "true";
    let e = err(&format!("FROM /* WHERE {cond} INTO $upstream"));
    assert_eq!(e.message, "expression nested too deeply");
}

// ---------- literals and operators ----------

#[test]
fn literals() {
    assert_eq!(eval("true"), T);
    assert_eq!(eval("false"), F);
    assert_eq!(eval("null"), Value::Null);
    assert_eq!(eval("undefined"), U);
    assert_eq!(eval("'a\\'b'"), s("a'b"));
    assert_eq!(eval("\"x\""), s("x"));
    assert_eq!(eval("42"), num(42.0));
    assert_eq!(eval("-7"), num(-7.0));
    assert_eq!(eval("0x1f"), num(31.0));
    assert_eq!(eval("2.5"), num(2.5));
    assert_eq!(eval("1.5e2"), num(150.0));
    assert_eq!(eval("2E1"), num(20.0));
}

#[test]
fn arithmetic_operators() {
    assert_eq!(eval("2 * 3"), num(6.0));
    assert_eq!(eval("7 / 2"), num(3.5));
    assert_eq!(eval("7 % 4"), num(3.0));
    assert_eq!(eval("2 + 3"), num(5.0));
    assert_eq!(eval("2 - 3"), num(-1.0));
    assert_eq!(eval("- 3"), num(-3.0));
    assert_eq!(eval("1 + 2 * 3"), num(7.0));
    assert_eq!(eval("(1 + 2) * 3"), num(9.0));
    assert_eq!(eval("10 - 2 - 3"), num(5.0));
    assert_eq!(eval("'a' + 1"), U);
    assert_eq!(eval("'a' || 'b' || 'c'"), s("abc"));
    assert_eq!(eval("'a' || 1"), U);
    assert_eq!(eval("- 'a'"), U);
}

#[test]
fn comparison_operators() {
    assert_eq!(eval("1 < 2"), T);
    assert_eq!(eval("2 < 2"), F);
    assert_eq!(eval("2 <= 2"), T);
    assert_eq!(eval("3 > 2"), T);
    assert_eq!(eval("2 >= 3"), F);
    assert_eq!(eval("'abc' < 'abd'"), T);
    assert_eq!(eval("1 = 1"), T);
    assert_eq!(eval("1 != 1"), F);
    assert_eq!(eval("1 <> 2"), T);
    assert_eq!(eval("'a' = 'a'"), T);
    assert_eq!(eval("'a' = 'A'"), F);
    assert_eq!(eval("true = true"), T);
    assert_eq!(eval("null = null"), T);
    assert_eq!(eval("null != null"), F);
    // Type mismatches and undefined give undefined.
    assert_eq!(eval("'1' = 1"), U);
    assert_eq!(eval("'1' != 1"), U);
    assert_eq!(eval("'1' < 2"), U);
    assert_eq!(eval("undefined = undefined"), U);
    assert_eq!(eval("missing = 'x'"), U);
    assert_eq!(eval("true < false"), U);
}

#[test]
fn logical_operators_three_valued() {
    assert_eq!(eval("true AND true"), T);
    assert_eq!(eval("true and false"), F);
    assert_eq!(eval("false AND undefined"), F);
    assert_eq!(eval("undefined AND false"), F);
    assert_eq!(eval("true AND undefined"), U);
    assert_eq!(eval("true OR undefined"), T);
    assert_eq!(eval("undefined or true"), T);
    assert_eq!(eval("false OR undefined"), U);
    assert_eq!(eval("false OR false"), F);
    assert_eq!(eval("NOT true"), F);
    assert_eq!(eval("not false"), T);
    assert_eq!(eval("NOT undefined"), U);
    assert_eq!(eval("NOT 1"), U);
    assert_eq!(eval("NOT null"), Value::Null);
    // AND binds tighter than OR.
    assert_eq!(eval("true OR false AND false"), T);
    // NOT binds tighter than '=' (edgeHub grammar): (NOT true) = false.
    assert_eq!(eval("NOT true = false"), T);
    assert_eq!(eval("1 < 2 AND 'a' = 'a'"), T);
}

#[test]
fn coalesce() {
    assert_eq!(eval("missing ?? 'd'"), s("d"));
    assert_eq!(eval("'v' ?? 'd'"), s("v"));
    assert_eq!(eval("null ?? 'd'"), Value::Null);
    assert_eq!(eval("undefined ?? undefined"), U);
    assert_eq!(eval("missing ?? 1 = 1"), T); // `??` binds loosest: missing ?? (1 = 1)
}

// ---------- functions ----------

#[test]
fn math_functions() {
    assert_eq!(eval("abs(-2)"), num(2.0));
    assert_eq!(eval("ABS(-2)"), num(2.0));
    assert_eq!(eval("exp(0)"), num(1.0));
    assert_eq!(eval("power(2, 10)"), num(1024.0));
    assert_eq!(eval("square(3)"), num(9.0));
    assert_eq!(eval("ceiling(1.2)"), num(2.0));
    assert_eq!(eval("floor(1.8)"), num(1.0));
    assert_eq!(eval("sign(-5)"), num(-1.0));
    assert_eq!(eval("sign(0)"), num(0.0));
    assert_eq!(eval("sign(3)"), num(1.0));
    assert_eq!(eval("sqrt(16)"), num(4.0));
    assert_eq!(eval("abs('x')"), U);
    assert_eq!(eval("power(2, 'x')"), U);
}

#[test]
fn type_functions() {
    assert_eq!(eval("as_number('12.5')"), num(12.5));
    assert_eq!(eval("as_number(' 7 ')"), num(7.0));
    assert_eq!(eval("as_number(3)"), num(3.0));
    assert_eq!(eval("as_number('abc')"), U);
    assert_eq!(eval("as_number(true)"), U);
    assert_eq!(eval("is_bool(false)"), T);
    assert_eq!(eval("is_bool('false')"), F);
    assert_eq!(eval("is_defined(missing)"), F);
    assert_eq!(eval("is_defined(null)"), T);
    assert_eq!(eval("is_null(null)"), T);
    assert_eq!(eval("is_null(undefined)"), F);
    assert_eq!(eval("is_number(1)"), T);
    assert_eq!(eval("is_number('1')"), F);
    assert_eq!(eval("is_string('1')"), T);
    assert_eq!(eval("is_string(1)"), F);
}

#[test]
fn string_functions() {
    assert_eq!(eval("concat('a', 'b', 'c')"), s("abc"));
    assert_eq!(eval("concat('a', 1)"), U);
    assert_eq!(eval("length('héllo')"), num(5.0));
    assert_eq!(eval("length(1)"), U);
    assert_eq!(eval("lower('AbC')"), s("abc"));
    assert_eq!(eval("upper('AbC')"), s("ABC"));
    assert_eq!(eval("substring('hello', 1)"), s("ello"));
    assert_eq!(eval("substring('hello', 5)"), s(""));
    assert_eq!(eval("substring('hello', 6)"), U);
    assert_eq!(eval("substring('hello', 1, 3)"), s("ell"));
    assert_eq!(eval("substring('hello', 1, 5)"), U);
    assert_eq!(eval("substring('hello', -1)"), U);
    assert_eq!(eval("index_of('héllo', 'l')"), num(2.0));
    assert_eq!(eval("index_of('hello', 'z')"), num(-1.0));
    assert_eq!(eval("starts_with('hello', 'he')"), T);
    assert_eq!(eval("starts_with('hello', 'He')"), F);
    assert_eq!(eval("ends_with('hello', 'lo')"), T);
    assert_eq!(eval("ends_with('hello', 'l')"), F);
    assert_eq!(eval("contains('hello', 'ell')"), T);
    assert_eq!(eval("contains('hello', 'xyz')"), F);
    assert_eq!(eval("contains(1, 'x')"), U);
    assert_eq!(eval("Starts_With('abc', 'a')"), T);
}

#[test]
fn twin_change_includes_parses_and_is_undefined() {
    let r = route("FROM /twinChangeNotifications WHERE twin_change_includes(properties.reported.x) INTO $upstream");
    assert_eq!(r.condition.as_ref().unwrap().evaluate(&msg()), U);
    assert!(!r.matches("/twinChangeNotifications/", &msg()));
}

// ---------- name resolution ----------

#[test]
fn name_resolution() {
    let m = RoutedMessage::new(Vec::new())
        .with_app("temp", Some("35"))
        .with_app("nullprop", None)
        .with_app("$messageId", Some("app-mid"))
        .with_system("messageId", "sys-mid")
        .with_system("connectionModuleId", "filter")
        .with_system("contentType", "text/plain");
    // bare name = application property
    assert_eq!(eval_on("temp", &m), s("35"));
    assert_eq!(eval_on("nullprop", &m), Value::Null);
    assert_eq!(eval_on("messageId", &m), U);
    // $name: the app property literally named "$name" wins, else the system property
    assert_eq!(eval_on("$messageId", &m), s("app-mid"));
    assert_eq!(eval_on("$connectionModuleId", &m), s("filter"));
    assert_eq!(eval_on("$temp", &m), U);
    // {$name}: system property only
    assert_eq!(eval_on("{$messageId}", &m), s("sys-mid"));
    assert_eq!(eval_on("{$connectionModuleId}", &m), s("filter"));
    // system lookups fall back to a case-insensitive match
    assert_eq!(eval_on("$ContentType", &m), s("text/plain"));
    // property values are strings: comparing with a number needs as_number()
    assert_eq!(eval_on("temp > 30", &m), U);
    assert_eq!(eval_on("temp = 35", &m), U);
    assert_eq!(eval_on("as_number(temp) > 30", &m), T);
    assert_eq!(eval_on("temp = '35'", &m), T);
    // the leaf-device idiom
    let leaf = RoutedMessage::new(Vec::new()).with_system("connectionDeviceId", "leaf");
    let r = route("FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream");
    assert!(r.matches("/messages/", &leaf));
    assert!(!r.matches("/messages/modules/filter/", &m));
}

#[test]
fn body_queries_need_json_content_type() {
    let body =
        r#"{"temp": 35.5, "meta": {"site": "north", "tags": ["a", "b"]}, "ok": true, "n": null}"#;
    let m = json_msg(body);
    assert_eq!(eval_on("$body.temp", &m), num(35.5));
    assert_eq!(eval_on("$body.temp > 30", &m), T);
    assert_eq!(eval_on("$body.meta.site = 'north'", &m), T);
    assert_eq!(eval_on("$body.meta.tags[1]", &m), s("b"));
    assert_eq!(eval_on("$body.ok", &m), T);
    assert_eq!(eval_on("$body.n", &m), Value::Null);
    assert_eq!(eval_on("$body.missing", &m), U);
    assert_eq!(eval_on("is_defined($body.meta)", &m), T);
    assert_eq!(eval_on("$body.meta = 'x'", &m), U);
    assert_eq!(eval_on("{$body.temp}", &m), num(35.5));
    assert_eq!(eval_on("$BODY.temp", &m), num(35.5));

    // Content type and encoding are case-insensitive; utf-16/utf-32 are accepted too.
    let m2 = RoutedMessage::new(body.as_bytes())
        .with_system("contentType", "Application/JSON")
        .with_system("contentEncoding", "UTF-32");
    assert_eq!(eval_on("$body.temp", &m2), num(35.5));

    // Not exactly application/json, missing encoding, or not JSON: undefined.
    let with_charset = RoutedMessage::new(body.as_bytes())
        .with_system("contentType", "application/json;charset=utf-8")
        .with_system("contentEncoding", "utf-8");
    assert_eq!(eval_on("$body.temp", &with_charset), U);
    let no_encoding =
        RoutedMessage::new(body.as_bytes()).with_system("contentType", "application/json");
    assert_eq!(eval_on("$body.temp", &no_encoding), U);
    let ascii = RoutedMessage::new(body.as_bytes())
        .with_system("contentType", "application/json")
        .with_system("contentEncoding", "ascii");
    assert_eq!(eval_on("$body.temp", &ascii), U);
    let plain = RoutedMessage::new(body.as_bytes());
    assert_eq!(eval_on("$body.temp", &plain), U);
    assert_eq!(eval_on("$body.temp", &json_msg("not json")), U);

    // An app property literally named "$body.temp" wins over the body, but not for {$body.temp}.
    let shadow = json_msg(body).with_app("$body.temp", Some("app"));
    assert_eq!(eval_on("$body.temp", &shadow), s("app"));
    assert_eq!(eval_on("{$body.temp}", &shadow), num(35.5));

    let r = route("FROM /messages/modules/a/* WHERE $body.temp > 30 INTO $upstream");
    assert!(r.matches("/messages/modules/a/outputs/o1/", &m));
    let cold = json_msg(r#"{"temp": 10}"#);
    assert!(!r.matches("/messages/modules/a/outputs/o1/", &cold));
}

// ---------- router ----------

#[test]
fn router_one_route_per_sink_best_priority() {
    let mut r_low = route("FROM /messages/* INTO $upstream");
    r_low.name = "low".into();
    let mut r_high = route("FROM /messages/modules/a/* INTO $upstream");
    r_high.name = "high".into();
    r_high.priority = 0;
    let mut r_mod = route(
        "FROM /messages/modules/a/outputs/o1 INTO BrokeredEndpoint(\"/modules/b/inputs/i1\")",
    );
    r_mod.name = "tob".into();
    let mut r_never =
        route("FROM /messages/* WHERE false INTO BrokeredEndpoint(\"/modules/c/inputs/i\")");
    r_never.name = "never".into();
    let router = Router::new(vec![r_low, r_high, r_mod, r_never]);
    assert_eq!(router.routes().len(), 4);

    let names = |p: &str| -> Vec<String> {
        router
            .route(p, &msg())
            .into_iter()
            .map(|r| r.name.clone())
            .collect()
    };
    assert_eq!(
        names(&source_path(Some("a"), Some("o1"))),
        vec!["high", "tob"]
    );
    assert_eq!(names(&source_path(Some("a"), Some("o2"))), vec!["high"]);
    assert_eq!(names(&source_path(None, None)), vec!["low"]);
    assert_eq!(names("/twinChangeNotifications/"), Vec::<String>::new());
}

#[test]
fn router_ties_keep_the_first_route() {
    let mut a = route("FROM /messages/* INTO $upstream");
    a.name = "a".into();
    let mut b = route("FROM /* INTO $UPSTREAM");
    b.name = "b".into();
    let router = Router::new(vec![a, b]);
    let got: Vec<&str> = router
        .route("/messages/", &msg())
        .into_iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(got, vec!["a"]);
}
