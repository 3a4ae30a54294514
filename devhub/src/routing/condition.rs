//! Route conditions: the IoT Hub query-language subset edgeHub accepts after `WHERE`.
//!
//! Semantics (edgeHub `ConditionVisitor`, `query/builtins/*`):
//! - Values are undefined, null, bool, number (f64), string, or a JSON object/array from a body query.
//! - Precedence, tightest first: unary `-`/`NOT`, `* / %`, `+ - ||`, `< <= > >=`, `= != <>`, `AND`,
//!   `OR`, `??`; binary operators are left-associative. As in edgeHub's grammar, `NOT a = b` means
//!   `(NOT a) = b`.
//! - Type mismatches give undefined, never an error. edgeHub rejects some of them when compiling
//!   (e.g. `temp > 30` where `temp` is an application property, always a string); we evaluate them to
//!   undefined so the route simply never matches. In particular a string never equals a number:
//!   `temp = 30` is undefined for `temp = "30"`; write `as_number(temp) = 30`.
//! - Three-valued logic: `AND`/`OR` follow Kleene (false AND undefined = false, true OR undefined =
//!   true); `NOT undefined` is undefined. A route matches only if its condition is boolean true.

use std::cell::OnceCell;

use super::lexer::{Tok, Token};
use super::RoutedMessage;

/// Deepest nesting of parentheses/unary operators accepted (keeps hostile input from exhausting the stack).
const MAX_DEPTH: usize = 64;

/// Most binary operators in one condition: bounds the tree depth that evaluation recurses through.
const MAX_OPERATORS: usize = 1000;

/// A runtime value of the query language.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// A JSON object or array selected by a body query: defined, but comparable to nothing.
    Object(serde_json::Value),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Negate,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Mul,
    Div,
    Mod,
    Add,
    Sub,
    Concat,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    Coalesce,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Abs,
    Exp,
    Power,
    Square,
    Ceiling,
    Floor,
    Sign,
    Sqrt,
    AsNumber,
    IsBool,
    IsDefined,
    IsNull,
    IsNumber,
    IsString,
    Concat,
    Length,
    Lower,
    Upper,
    Substring,
    IndexOf,
    StartsWith,
    EndsWith,
    Contains,
}

impl Func {
    fn lookup(name: &str) -> Option<Func> {
        let f = match name.to_ascii_lowercase().as_str() {
            "abs" => Func::Abs,
            "exp" => Func::Exp,
            "power" => Func::Power,
            "square" => Func::Square,
            "ceiling" => Func::Ceiling,
            "floor" => Func::Floor,
            "sign" => Func::Sign,
            "sqrt" => Func::Sqrt,
            "as_number" => Func::AsNumber,
            "is_bool" => Func::IsBool,
            "is_defined" => Func::IsDefined,
            "is_null" => Func::IsNull,
            "is_number" => Func::IsNumber,
            "is_string" => Func::IsString,
            "concat" => Func::Concat,
            "length" => Func::Length,
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            "substring" => Func::Substring,
            "index_of" => Func::IndexOf,
            "starts_with" => Func::StartsWith,
            "ends_with" => Func::EndsWith,
            "contains" => Func::Contains,
            _ => return None,
        };
        Some(f)
    }

    /// Accepted argument counts (min, max).
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Power | Func::IndexOf | Func::StartsWith | Func::EndsWith | Func::Contains => {
                (2, 2)
            }
            Func::Substring => (2, 3),
            Func::Concat => (2, usize::MAX),
            _ => (1, 1),
        }
    }
}

/// One step of a body query path (`$body.a[0].b`).
#[derive(Clone, Debug, PartialEq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// A parsed condition expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// Bare `name`: application property.
    AppProperty(String),
    /// `$name`: application property literally named `$name`, else system property `name`.
    DollarProperty(String),
    /// `{$name}`: system property only.
    SystemProperty(String),
    /// `$body.path`; `app_first` is true for the unescaped form, where an application property
    /// literally named like the query wins (edgeHub does the same).
    Body {
        raw: String,
        path: Option<Vec<PathStep>>,
        app_first: bool,
    },
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    /// `twin_change_includes(...)`: parsed, but twin change notifications are not routed by devhub,
    /// so it always evaluates to undefined.
    TwinChangeIncludes(String),
}

/// A compiled `WHERE` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The condition text as written in the route.
    pub text: String,
    pub expr: Expr,
}

impl Condition {
    /// Evaluates the condition against a message.
    pub fn evaluate(&self, msg: &RoutedMessage) -> Value {
        let ctx = Ctx {
            msg,
            body: OnceCell::new(),
        };
        eval(&self.expr, &ctx)
    }

    /// True only when the condition evaluates to boolean true.
    pub fn is_true(&self, msg: &RoutedMessage) -> bool {
        self.evaluate(msg) == Value::Bool(true)
    }
}

/// A syntax error inside a route: 1-based column and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub column: usize,
    pub message: String,
}

fn expected(what: &str, found: &Token) -> SyntaxError {
    SyntaxError {
        column: found.col,
        message: format!("expected {what}, found {}", found.describe()),
    }
}

/// Recursive-descent parser over the shared token stream; stops before the first token that cannot
/// continue the expression (for routes that is `INTO`).
pub struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    depth: usize,
    operators: usize,
}

impl<'a> Parser<'a> {
    pub fn new(toks: &'a [Token], pos: usize) -> Self {
        Parser {
            toks,
            pos,
            depth: 0,
            operators: 0,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn peek(&self) -> &'a Token {
        // The stream always ends with Eof, and we never advance past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> &'a Token {
        let t = self.peek();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    /// Parses one full expression.
    pub fn parse_expr(&mut self) -> Result<Expr, SyntaxError> {
        self.binary(0)
    }

    fn binary_op(tok: &Tok) -> Option<(BinaryOp, u8)> {
        let op = match tok {
            Tok::Coalesce => (BinaryOp::Coalesce, 0),
            Tok::Or => (BinaryOp::Or, 1),
            Tok::And => (BinaryOp::And, 2),
            Tok::Eq => (BinaryOp::Eq, 3),
            Tok::Ne => (BinaryOp::Ne, 3),
            Tok::Lt => (BinaryOp::Lt, 4),
            Tok::Le => (BinaryOp::Le, 4),
            Tok::Gt => (BinaryOp::Gt, 4),
            Tok::Ge => (BinaryOp::Ge, 4),
            Tok::Plus => (BinaryOp::Add, 5),
            Tok::Minus => (BinaryOp::Sub, 5),
            Tok::Concat => (BinaryOp::Concat, 5),
            Tok::Mul => (BinaryOp::Mul, 6),
            Tok::Div => (BinaryOp::Div, 6),
            Tok::Mod => (BinaryOp::Mod, 6),
            _ => return None,
        };
        Some(op)
    }

    fn binary(&mut self, min_prec: u8) -> Result<Expr, SyntaxError> {
        let mut left = self.unary()?;
        while let Some((op, prec)) = Self::binary_op(&self.peek().tok) {
            if prec < min_prec {
                break;
            }
            let op_tok = self.bump();
            self.operators += 1;
            if self.operators > MAX_OPERATORS {
                return Err(SyntaxError {
                    column: op_tok.col,
                    message: format!("condition too complex (more than {MAX_OPERATORS} operators)"),
                });
            }
            let right = self.binary(prec + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                column: self.peek().col,
                message: "expression nested too deeply".into(),
            });
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        self.enter()?;
        let r = match self.peek().tok {
            Tok::Minus => {
                self.bump();
                self.unary()
                    .map(|e| Expr::Unary(UnaryOp::Negate, Box::new(e)))
            }
            Tok::Not => {
                self.bump();
                self.unary().map(|e| Expr::Unary(UnaryOp::Not, Box::new(e)))
            }
            _ => self.primary(),
        };
        self.depth -= 1;
        r
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
        let t = self.bump();
        let lit = |v| Ok(Expr::Literal(v));
        match &t.tok {
            Tok::LParen => {
                let e = self.parse_expr()?;
                let close = self.peek();
                if close.tok != Tok::RParen {
                    return Err(expected("')'", close));
                }
                self.bump();
                Ok(e)
            }
            Tok::True => lit(Value::Bool(true)),
            Tok::False => lit(Value::Bool(false)),
            Tok::Null => lit(Value::Null),
            Tok::Undefined => lit(Value::Undefined),
            Tok::Str(s) => lit(Value::String(s.clone())),
            Tok::Int | Tok::Real => lit(t
                .text
                .parse::<f64>()
                .map_or(Value::Undefined, Value::Number)),
            Tok::Hex => lit(i64::from_str_radix(&t.text[2..], 16)
                .map_or(Value::Undefined, |n| Value::Number(n as f64))),
            Tok::UnterminatedStr => Err(SyntaxError {
                column: t.col,
                message: "unterminated string".into(),
            }),
            Tok::SysProp => Ok(dollar(&t.text, true)),
            Tok::LBrace => {
                let prop = self.bump();
                if prop.tok != Tok::SysProp {
                    return Err(expected("a $property after '{'", prop));
                }
                let close = self.bump();
                if close.tok != Tok::RBrace {
                    return Err(expected("'}'", close));
                }
                Ok(dollar(&prop.text, false))
            }
            Tok::Id => {
                if self.peek().tok == Tok::LParen {
                    self.call(t)
                } else {
                    Ok(Expr::AppProperty(t.text.clone()))
                }
            }
            Tok::Unknown => Err(SyntaxError {
                column: t.col,
                message: format!("unrecognized symbol '{}'", t.text),
            }),
            _ => Err(expected("an expression", t)),
        }
    }

    fn call(&mut self, name: &Token) -> Result<Expr, SyntaxError> {
        let open = self.bump();
        if name.text.eq_ignore_ascii_case("twin_change_includes") {
            // edgeHub passes the raw argument text to its twin-change JSON path; keep it verbatim.
            let mut nesting = 0usize;
            let mut raw = String::new();
            loop {
                let t = self.bump();
                match t.tok {
                    Tok::Eof => return Err(expected("')'", t)),
                    Tok::LParen => nesting += 1,
                    Tok::RParen if nesting == 0 => break,
                    Tok::RParen => nesting -= 1,
                    _ => {}
                }
                raw.push_str(&t.text);
            }
            let _ = open;
            return Ok(Expr::TwinChangeIncludes(raw));
        }
        let func = Func::lookup(&name.text).ok_or_else(|| SyntaxError {
            column: name.col,
            message: format!("unknown function '{}'", name.text),
        })?;
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.bump();
        } else {
            loop {
                args.push(self.parse_expr()?);
                let sep = self.bump();
                match sep.tok {
                    Tok::Comma => continue,
                    Tok::RParen => break,
                    _ => return Err(expected("',' or ')'", sep)),
                }
            }
        }
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(SyntaxError {
                column: name.col,
                message: format!(
                    "function '{}' takes {want} argument(s), got {}",
                    name.text,
                    args.len()
                ),
            });
        }
        Ok(Expr::Call(func, args))
    }
}

/// Builds the expression for `$name` (`app_first`) or `{$name}`.
fn dollar(text: &str, app_first: bool) -> Expr {
    const BODY: &str = "$body.";
    let is_body = text.len() >= BODY.len()
        && text.is_char_boundary(BODY.len())
        && text[..BODY.len()].eq_ignore_ascii_case(BODY);
    if is_body {
        return Expr::Body {
            raw: text.to_string(),
            path: parse_body_path(&text[BODY.len()..]),
            app_first,
        };
    }
    if text.contains('[') || text.contains(']') {
        // Property names cannot contain brackets: edgeHub treats this as undefined.
        return Expr::Literal(Value::Undefined);
    }
    if app_first {
        Expr::DollarProperty(text[1..].to_string())
    } else {
        Expr::SystemProperty(text[1..].to_string())
    }
}

/// Parses `a.b[0].c`; `None` when malformed (the query then evaluates to undefined).
fn parse_body_path(p: &str) -> Option<Vec<PathStep>> {
    let mut steps = Vec::new();
    for seg in p.split('.') {
        let (key, mut rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if key.is_empty() {
            return None;
        }
        steps.push(PathStep::Key(key.to_string()));
        while !rest.is_empty() {
            let close = rest.find(']')?;
            if !rest.starts_with('[') {
                return None;
            }
            let idx: usize = rest[1..close].parse().ok()?;
            steps.push(PathStep::Index(idx));
            rest = &rest[close + 1..];
        }
    }
    Some(steps)
}

struct Ctx<'m> {
    msg: &'m RoutedMessage,
    body: OnceCell<Option<serde_json::Value>>,
}

impl Ctx<'_> {
    fn app(&self, name: &str) -> Option<Value> {
        self.msg
            .app
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone().map_or(Value::Null, Value::String))
    }

    /// System property lookup: exact name first, then ASCII case-insensitive (edgeHub's own
    /// case-sensitivity is unverified; accepting `$ContentType` is the friendlier choice).
    fn system(&self, name: &str) -> Value {
        let sys = &self.msg.system;
        sys.get(name)
            .or_else(|| {
                sys.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
            .map_or(Value::Undefined, |v| Value::String(v.clone()))
    }

    /// The body as JSON, only for `application/json` with a UTF encoding (as edgeHub requires).
    fn body(&self) -> Option<&serde_json::Value> {
        self.body
            .get_or_init(|| {
                let ct = self.system("contentType");
                let ce = self.system("contentEncoding");
                let json =
                    matches!(&ct, Value::String(s) if s.eq_ignore_ascii_case("application/json"));
                let utf = matches!(&ce, Value::String(s)
                    if ["utf-8", "utf-16", "utf-32"].iter().any(|e| s.eq_ignore_ascii_case(e)));
                if !(json && utf) {
                    return None;
                }
                // Bodies are treated as UTF-8 JSON whatever the declared UTF flavour.
                serde_json::from_slice(&self.msg.body).ok()
            })
            .as_ref()
    }

    fn body_query(&self, path: &Option<Vec<PathStep>>) -> Value {
        let (Some(path), Some(mut v)) = (path, self.body()) else {
            return Value::Undefined;
        };
        for step in path {
            let next = match step {
                PathStep::Key(k) => v.get(k.as_str()),
                PathStep::Index(i) => v.get(*i),
            };
            match next {
                Some(n) => v = n,
                None => return Value::Undefined,
            }
        }
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => n.as_f64().map_or(Value::Undefined, Value::Number),
            serde_json::Value::String(s) => Value::String(s.clone()),
            other => Value::Object(other.clone()),
        }
    }
}

fn eval(e: &Expr, ctx: &Ctx) -> Value {
    match e {
        Expr::Literal(v) => v.clone(),
        Expr::AppProperty(n) => ctx.app(n).unwrap_or(Value::Undefined),
        Expr::DollarProperty(n) => ctx.app(&format!("${n}")).unwrap_or_else(|| ctx.system(n)),
        Expr::SystemProperty(n) => ctx.system(n),
        Expr::Body {
            raw,
            path,
            app_first,
        } => {
            if *app_first {
                if let Some(v) = ctx.app(raw) {
                    return v;
                }
            }
            ctx.body_query(path)
        }
        Expr::Unary(op, x) => {
            let v = eval(x, ctx);
            match (op, v) {
                (UnaryOp::Negate, Value::Number(n)) => Value::Number(-n),
                (UnaryOp::Not, Value::Bool(b)) => Value::Bool(!b),
                (UnaryOp::Not, Value::Null) => Value::Null,
                _ => Value::Undefined,
            }
        }
        Expr::Binary(op, l, r) => binary(*op, l, r, ctx),
        Expr::Call(f, args) => {
            let vals: Vec<Value> = args.iter().map(|a| eval(a, ctx)).collect();
            call(*f, &vals)
        }
        Expr::TwinChangeIncludes(_) => Value::Undefined,
    }
}

/// Kleene truth value: Some(bool) for booleans, None for anything else (unknown).
fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn binary(op: BinaryOp, l: &Expr, r: &Expr, ctx: &Ctx) -> Value {
    use std::cmp::Ordering;
    use BinaryOp::*;
    let a = eval(l, ctx);
    let b = eval(r, ctx);
    let num = |f: fn(f64, f64) -> f64| match (&a, &b) {
        (Value::Number(x), Value::Number(y)) => Value::Number(f(*x, *y)),
        _ => Value::Undefined,
    };
    let ordering = || -> Option<Ordering> {
        match (&a, &b) {
            (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            _ => None,
        }
    };
    let equal = || -> Option<bool> {
        match (&a, &b) {
            (Value::Number(x), Value::Number(y)) => Some(x == y),
            (Value::String(x), Value::String(y)) => Some(x == y),
            (Value::Bool(x), Value::Bool(y)) => Some(x == y),
            (Value::Null, Value::Null) => Some(true),
            _ => None,
        }
    };
    let cmp =
        |pred: fn(Ordering) -> bool| ordering().map_or(Value::Undefined, |o| Value::Bool(pred(o)));
    match op {
        Mul => num(|x, y| x * y),
        Div => num(|x, y| x / y),
        Mod => num(|x, y| x % y),
        Add => num(|x, y| x + y),
        Sub => num(|x, y| x - y),
        Concat => match (&a, &b) {
            (Value::String(x), Value::String(y)) => Value::String(format!("{x}{y}")),
            _ => Value::Undefined,
        },
        Lt => cmp(|o| o == Ordering::Less),
        Le => cmp(|o| o != Ordering::Greater),
        Gt => cmp(|o| o == Ordering::Greater),
        Ge => cmp(|o| o != Ordering::Less),
        Eq => equal().map_or(Value::Undefined, Value::Bool),
        Ne => equal().map_or(Value::Undefined, |e| Value::Bool(!e)),
        And => match (truth(&a), truth(&b)) {
            (Some(false), _) | (_, Some(false)) => Value::Bool(false),
            (Some(true), Some(true)) => Value::Bool(true),
            _ => Value::Undefined,
        },
        Or => match (truth(&a), truth(&b)) {
            (Some(true), _) | (_, Some(true)) => Value::Bool(true),
            (Some(false), Some(false)) => Value::Bool(false),
            _ => Value::Undefined,
        },
        Coalesce => {
            if a == Value::Undefined {
                b
            } else {
                a
            }
        }
    }
}

fn call(f: Func, args: &[Value]) -> Value {
    use Value::{Bool, Number, String as Str, Undefined};
    let math = |g: fn(f64) -> f64| match args {
        [Number(x)] => Number(g(*x)),
        _ => Undefined,
    };
    let strs = |g: fn(&str, &str) -> Value| match args {
        [Str(a), Str(b)] => g(a, b),
        _ => Undefined,
    };
    match f {
        Func::Abs => math(f64::abs),
        Func::Exp => math(f64::exp),
        Func::Square => math(|x| x * x),
        Func::Ceiling => math(f64::ceil),
        Func::Floor => math(f64::floor),
        Func::Sign => math(|x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }),
        Func::Sqrt => math(f64::sqrt),
        Func::Power => match args {
            [Number(x), Number(y)] => Number(x.powf(*y)),
            _ => Undefined,
        },
        Func::AsNumber => match args {
            [Number(x)] => Number(*x),
            [Str(s)] => s.trim().parse::<f64>().map_or(Undefined, Number),
            _ => Undefined,
        },
        Func::IsBool => Bool(matches!(args, [Bool(_)])),
        Func::IsDefined => Bool(!matches!(args, [Undefined])),
        Func::IsNull => Bool(matches!(args, [Value::Null])),
        Func::IsNumber => Bool(matches!(args, [Number(_)])),
        Func::IsString => Bool(matches!(args, [Str(_)])),
        Func::Concat => {
            let mut out = String::new();
            for a in args {
                match a {
                    Str(s) => out.push_str(s),
                    _ => return Undefined,
                }
            }
            Str(out)
        }
        Func::Length => match args {
            [Str(s)] => Number(s.chars().count() as f64),
            _ => Undefined,
        },
        Func::Lower => match args {
            [Str(s)] => Str(s.to_lowercase()),
            _ => Undefined,
        },
        Func::Upper => match args {
            [Str(s)] => Str(s.to_uppercase()),
            _ => Undefined,
        },
        Func::Substring => substring(args),
        Func::IndexOf => strs(|a, b| match a.find(b) {
            Some(byte) => Number(a[..byte].chars().count() as f64),
            None => Number(-1.0),
        }),
        Func::StartsWith => strs(|a, b| Bool(a.starts_with(b))),
        Func::EndsWith => strs(|a, b| Bool(a.ends_with(b))),
        Func::Contains => strs(|a, b| Bool(a.contains(b))),
    }
}

/// `substring(s, start[, length])` in characters; out-of-range arguments give undefined (as edgeHub).
fn substring(args: &[Value]) -> Value {
    let (s, start, len) = match args {
        [Value::String(s), Value::Number(st)] => (s, *st, None),
        [Value::String(s), Value::Number(st), Value::Number(l)] => (s, *st, Some(*l)),
        _ => return Value::Undefined,
    };
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len() as f64;
    if !start.is_finite() || start < 0.0 {
        return Value::Undefined;
    }
    match len {
        None if start <= n => Value::String(chars[start as usize..].iter().collect()),
        Some(l) if start < n && l.is_finite() && l >= 0.0 && l <= n - start => {
            let from = start as usize;
            Value::String(chars[from..from + l as usize].iter().collect())
        }
        _ => Value::Undefined,
    }
}
