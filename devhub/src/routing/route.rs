//! Route statements: `[SELECT *] FROM <source> [WHERE <condition>] INTO <sink>` (edgeHub `Route.g4`,
//! `RouteFactory`, `EndpointFactory`).

use super::condition::{Condition, Parser, SyntaxError};
use super::lexer::{tokenize, Tok, Token};
use super::{Route, RouteError, Sink, DEFAULT_PRIORITY};

fn expected(what: &str, found: &Token) -> SyntaxError {
    SyntaxError {
        column: found.col,
        message: format!("expected {what}, found {}", found.describe()),
    }
}

/// Tokens that may name a path segment. edgeHub only takes identifiers and `*`; we also take
/// numbers and the literal/logic words (an output named `1` or `not` is plausible), but never the
/// statement keywords, which end the source.
fn is_path_item(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Id
            | Tok::Mul
            | Tok::Int
            | Tok::Hex
            | Tok::Real
            | Tok::True
            | Tok::False
            | Tok::Null
            | Tok::Undefined
            | Tok::And
            | Tok::Or
            | Tok::Not
    )
}

/// Normalizes a route source to the prefix a message source path must start with: trailing `*`
/// and `/` trimmed, then exactly one `/` appended (so `/outputs/o` does not match `/outputs/o2/`).
pub fn normalize_source(source: &str) -> String {
    let trimmed = source.trim_end_matches('*').trim_end_matches('/');
    format!("{trimmed}/")
}

pub fn parse(name: &str, text: &str) -> Result<Route, RouteError> {
    parse_inner(text)
        .map_err(|e| RouteError {
            route: name.to_string(),
            column: e.column,
            message: e.message,
        })
        .map(|(source, condition, sink)| Route {
            name: name.to_string(),
            text: text.to_string(),
            source: normalize_source(&source),
            condition,
            sink,
            priority: DEFAULT_PRIORITY,
            ttl_secs: 0,
        })
}

type Parts = (String, Option<Condition>, Sink);

fn parse_inner(text: &str) -> Result<Parts, SyntaxError> {
    let toks = tokenize(text);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    if toks[i].tok == Tok::Select {
        i += 1;
        if toks[i].tok != Tok::Mul {
            return Err(expected("'*' after SELECT", &toks[i]));
        }
        i += 1;
    }
    if toks[i].tok != Tok::From {
        return Err(expected("FROM", &toks[i]));
    }
    i += 1;

    // Source: '/' item ('/' item)*
    let mut source = String::new();
    loop {
        if toks[i].tok != Tok::Div {
            if source.is_empty() {
                return Err(expected("a source path starting with '/'", &toks[i]));
            }
            break;
        }
        let item = &toks[i + 1];
        if matches!(item.tok, Tok::Where | Tok::Into) {
            // A trailing '/' (edgeHub's grammar wants a segment; we accept it, it is trimmed anyway).
            source.push('/');
            i += 1;
            break;
        }
        if !is_path_item(&item.tok) {
            return Err(expected("a path segment after '/'", item));
        }
        source.push('/');
        source.push_str(&item.text);
        i += 2;
    }

    let mut condition = None;
    if toks[i].tok == Tok::Where {
        i += 1;
        let mut p = Parser::new(&toks, i);
        let expr = p.parse_expr()?;
        let end = p.pos();
        let cond_text: String = chars[toks[i].start..toks[end - 1].end].iter().collect();
        condition = Some(Condition {
            text: cond_text,
            expr,
        });
        i = end;
    }
    if toks[i].tok != Tok::Into {
        return Err(expected("INTO", &toks[i]));
    }
    i += 1;

    let sink_tok = &toks[i];
    let sink = match sink_tok.tok {
        Tok::SysProp => {
            if sink_tok.text.eq_ignore_ascii_case("$upstream") {
                i += 1;
                Sink::Upstream
            } else {
                return Err(SyntaxError {
                    column: sink_tok.col,
                    message: format!(
                        "unknown system endpoint '{}' (only $upstream is supported)",
                        sink_tok.text
                    ),
                });
            }
        }
        Tok::Id => {
            if !sink_tok.text.eq_ignore_ascii_case("BrokeredEndpoint") {
                return Err(SyntaxError {
                    column: sink_tok.col,
                    message: format!(
                        "unknown endpoint function '{}' (only BrokeredEndpoint is supported)",
                        sink_tok.text
                    ),
                });
            }
            if toks[i + 1].tok != Tok::LParen {
                return Err(expected("'('", &toks[i + 1]));
            }
            let addr_tok = &toks[i + 2];
            let Tok::Str(address) = &addr_tok.tok else {
                return Err(expected("a quoted endpoint address", addr_tok));
            };
            if toks[i + 3].tok != Tok::RParen {
                return Err(expected("')'", &toks[i + 3]));
            }
            i += 4;
            brokered_endpoint(address).map_err(|message| SyntaxError {
                column: addr_tok.col,
                message,
            })?
        }
        _ => {
            return Err(expected(
                "$upstream or BrokeredEndpoint(\"/modules/<module>/inputs/<input>\")",
                sink_tok,
            ))
        }
    };
    if toks[i].tok != Tok::Eof {
        return Err(expected("end of route", &toks[i]));
    }
    Ok((source, condition, sink))
}

/// `/modules/{m}/inputs/{i}`: exactly four segments after trimming slashes.
fn brokered_endpoint(address: &str) -> Result<Sink, String> {
    let parts: Vec<&str> = address.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [modules, m, inputs, input]
            if modules.eq_ignore_ascii_case("modules")
                && inputs.eq_ignore_ascii_case("inputs")
                && !m.is_empty()
                && !input.is_empty() =>
        {
            Ok(Sink::Module {
                module: m.to_string(),
                input: input.to_string(),
            })
        }
        _ => Err(format!(
            "invalid BrokeredEndpoint address '{address}': expected \"/modules/<module>/inputs/<input>\""
        )),
    }
}
