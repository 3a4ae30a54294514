//! Tokenizer for edgeHub routes and conditions.
//!
//! Mirrors edgeHub's ANTLR lexer (`GrammarLexer.g4`): at each position the longest match wins and ties
//! go to the rule declared first. That is why `a+b` is one identifier (`+` is an identifier character)
//! while `a < b` and `a<b` both give three tokens; we reproduce it so a route accepted here is
//! accepted by edgeHub and vice versa.

/// Token kinds, in edgeHub's rule order (the order breaks ties between matches of equal length).
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    LBrace,
    RBrace,
    Select,
    From,
    Where,
    Into,
    /// A terminated string literal, already unescaped.
    Str(String),
    /// A string literal that runs to the end of the input.
    UnterminatedStr,
    Int,
    Hex,
    Real,
    True,
    False,
    Null,
    Undefined,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Not,
    Eq,
    Ne,
    Le,
    Ge,
    Gt,
    Lt,
    Concat,
    Coalesce,
    /// `$` followed by query-path characters (`$contentType`, `$body.a.b`).
    SysProp,
    Id,
    /// Query-path characters that do not form an identifier (e.g. `a[0]`): never valid in the grammar.
    QueryPath,
    Unknown,
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// The raw text of the token as written.
    pub text: String,
    /// 1-based character column of the first character.
    pub col: usize,
    /// Character offsets `[start, end)` in the input.
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// How the token is named in "found ..." error messages.
    pub fn describe(&self) -> String {
        match self.tok {
            Tok::Eof => "end of input".to_string(),
            _ => format!("'{}'", self.text),
        }
    }
}

fn is_query_path_char(c: char) -> bool {
    !matches!(
        c,
        '(' | ')'
            | '<'
            | '>'
            | '@'
            | ','
            | ';'
            | ':'
            | '\\'
            | '"'
            | '/'
            | '?'
            | '='
            | '{'
            | '}'
            | ' '
            | '\t'
            | '\n'
            | '\r'
    )
}

fn is_id_char(c: char) -> bool {
    is_query_path_char(c) && c != '[' && c != ']'
}

fn run_len(s: &[char], from: usize, pred: impl Fn(char) -> bool) -> usize {
    s[from..].iter().take_while(|c| pred(**c)).count()
}

fn word_len(s: &[char], word: &str, case_insensitive: bool) -> usize {
    let n = word.chars().count();
    if s.len() < n {
        return 0;
    }
    let ok = s[..n].iter().zip(word.chars()).all(|(a, b)| {
        if case_insensitive {
            a.eq_ignore_ascii_case(&b)
        } else {
            *a == b
        }
    });
    if ok {
        n
    } else {
        0
    }
}

/// Length of a string literal starting at `s[0]` (a quote), whether it is terminated, and its value.
fn string_len(s: &[char]) -> (usize, bool, String) {
    let quote = s[0];
    let mut i = 1;
    let mut value = String::new();
    while i < s.len() {
        let c = s[i];
        if c == quote {
            return (i + 1, true, value);
        }
        if c == '\\' {
            match s.get(i + 1) {
                Some(&e @ ('"' | '\'' | '\\')) => {
                    value.push(e);
                    i += 2;
                    continue;
                }
                Some('u')
                    if s.len() >= i + 6
                        && s[i + 2..i + 6].iter().all(|c| c.is_ascii_hexdigit()) =>
                {
                    let hex: String = s[i + 2..i + 6].iter().collect();
                    let code = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                    value.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                    i += 6;
                    continue;
                }
                // Any other backslash cannot be part of a string: the literal stops here.
                _ => return (i, false, value),
            }
        }
        value.push(c);
        i += 1;
    }
    (i, false, value)
}

fn digits(s: &[char], from: usize) -> usize {
    run_len(s, from, |c| c.is_ascii_digit())
}

fn int_len(s: &[char]) -> usize {
    let sign = usize::from(s.first() == Some(&'-'));
    let d = digits(s, sign);
    if d == 0 {
        0
    } else {
        sign + d
    }
}

fn hex_len(s: &[char]) -> usize {
    if s.len() >= 3 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
        let d = run_len(s, 2, |c| c.is_ascii_hexdigit());
        if d > 0 {
            return 2 + d;
        }
    }
    0
}

fn exp_len(s: &[char], from: usize) -> usize {
    if from < s.len() && (s[from] == 'e' || s[from] == 'E') {
        let mut i = from + 1;
        if i < s.len() && (s[i] == '+' || s[i] == '-') {
            i += 1;
        }
        let d = digits(s, i);
        if d > 0 {
            return i + d - from;
        }
    }
    0
}

fn real_len(s: &[char]) -> usize {
    let sign = usize::from(s.first() == Some(&'-'));
    let int = digits(s, sign);
    let mut i = sign + int;
    if i < s.len() && s[i] == '.' {
        let frac = digits(s, i + 1);
        if frac > 0 {
            i += 1 + frac;
            return i + exp_len(s, i);
        }
    }
    // '-'? [0-9]* EXP
    let e = exp_len(s, sign + int);
    if e > 0 {
        sign + int + e
    } else {
        0
    }
}

fn comment_len(s: &[char]) -> usize {
    if s.len() >= 4 && s[0] == '/' && s[1] == '*' {
        for i in 2..s.len() - 1 {
            if s[i] == '*' && s[i + 1] == '/' {
                return i + 2;
            }
        }
    }
    0
}

/// Splits `input` into tokens (whitespace and `/* */` comments skipped), always ending with `Eof`.
pub fn tokenize(input: &str) -> Vec<Token> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < chars.len() {
        let s = &chars[pos..];
        if s[0].is_whitespace() && matches!(s[0], ' ' | '\t' | '\r' | '\n') {
            pos += 1;
            continue;
        }
        let mut best: (usize, Tok) = (1, Tok::Unknown);
        let mut consider = |len: usize, tok: Tok| {
            // Strictly longer only: earlier candidates win ties.
            if len > best.0 || (len == best.0 && best.1 == Tok::Unknown && len > 0) {
                best = (len, tok);
            }
        };
        let single = |c: char| -> usize { usize::from(s[0] == c) };
        let double = |a: char, b: char| -> usize {
            if s.len() >= 2 && s[0] == a && s[1] == b {
                2
            } else {
                0
            }
        };
        consider(single('{'), Tok::LBrace);
        consider(single('}'), Tok::RBrace);
        consider(word_len(s, "select", true), Tok::Select);
        consider(word_len(s, "from", true), Tok::From);
        consider(word_len(s, "where", true), Tok::Where);
        consider(word_len(s, "into", true), Tok::Into);
        if s[0] == '"' || s[0] == '\'' {
            let (len, terminated, value) = string_len(s);
            if terminated {
                consider(len, Tok::Str(value));
            } else {
                consider(len, Tok::UnterminatedStr);
            }
        }
        consider(int_len(s), Tok::Int);
        consider(hex_len(s), Tok::Hex);
        consider(real_len(s), Tok::Real);
        consider(word_len(s, "true", false), Tok::True);
        consider(word_len(s, "false", false), Tok::False);
        consider(word_len(s, "null", false), Tok::Null);
        consider(word_len(s, "undefined", false), Tok::Undefined);
        consider(single('('), Tok::LParen);
        consider(single(')'), Tok::RParen);
        consider(single(','), Tok::Comma);
        consider(single('+'), Tok::Plus);
        consider(single('-'), Tok::Minus);
        consider(single('*'), Tok::Mul);
        consider(single('/'), Tok::Div);
        consider(single('%'), Tok::Mod);
        consider(word_len(s, "and", true), Tok::And);
        consider(word_len(s, "or", true), Tok::Or);
        consider(word_len(s, "not", true), Tok::Not);
        consider(single('='), Tok::Eq);
        consider(double('!', '='), Tok::Ne);
        consider(double('<', '>'), Tok::Ne);
        consider(double('<', '='), Tok::Le);
        consider(double('>', '='), Tok::Ge);
        consider(single('>'), Tok::Gt);
        consider(single('<'), Tok::Lt);
        consider(double('|', '|'), Tok::Concat);
        consider(double('?', '?'), Tok::Coalesce);
        if s[0] == '$' {
            let n = run_len(s, 1, is_query_path_char);
            if n > 0 {
                consider(1 + n, Tok::SysProp);
            }
        }
        consider(run_len(s, 0, is_id_char), Tok::Id);
        consider(run_len(s, 0, is_query_path_char), Tok::QueryPath);
        let comment = comment_len(s);
        if comment > best.0 {
            pos += comment;
            continue;
        }
        let (len, tok) = best;
        out.push(Token {
            tok,
            text: s[..len].iter().collect(),
            col: pos + 1,
            start: pos,
            end: pos + len,
        });
        pos += len;
    }
    out.push(Token {
        tok: Tok::Eof,
        text: String::new(),
        col: chars.len() + 1,
        start: chars.len(),
        end: chars.len(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Tok, String)> {
        tokenize(s).into_iter().map(|t| (t.tok, t.text)).collect()
    }

    fn t(tok: Tok, text: &str) -> (Tok, String) {
        (tok, text.to_string())
    }

    #[test]
    fn longest_match_and_rule_order() {
        assert_eq!(
            kinds("a+b a + b"),
            vec![
                t(Tok::Id, "a+b"),
                t(Tok::Id, "a"),
                t(Tok::Plus, "+"),
                t(Tok::Id, "b"),
                t(Tok::Eof, "")
            ]
        );
        assert_eq!(
            kinds("x<=5"),
            vec![
                t(Tok::Id, "x"),
                t(Tok::Le, "<="),
                t(Tok::Int, "5"),
                t(Tok::Eof, "")
            ]
        );
        assert_eq!(
            kinds("-5 - 1.5e3 0x1F 2E2 true TRUE"),
            vec![
                t(Tok::Int, "-5"),
                t(Tok::Minus, "-"),
                t(Tok::Real, "1.5e3"),
                t(Tok::Hex, "0x1F"),
                t(Tok::Real, "2E2"),
                t(Tok::True, "true"),
                t(Tok::Id, "TRUE"),
                t(Tok::Eof, "")
            ]
        );
        assert_eq!(
            kinds("SeLeCt aNd Or nOt andy"),
            vec![
                t(Tok::Select, "SeLeCt"),
                t(Tok::And, "aNd"),
                t(Tok::Or, "Or"),
                t(Tok::Not, "nOt"),
                t(Tok::Id, "andy"),
                t(Tok::Eof, "")
            ]
        );
    }

    #[test]
    fn operators() {
        let toks: Vec<Tok> = tokenize("( ) , + - * / % = != <> <= >= > < || ?? { }")
            .into_iter()
            .map(|t| t.tok)
            .collect();
        assert_eq!(
            toks,
            vec![
                Tok::LParen,
                Tok::RParen,
                Tok::Comma,
                Tok::Plus,
                Tok::Minus,
                Tok::Mul,
                Tok::Div,
                Tok::Mod,
                Tok::Eq,
                Tok::Ne,
                Tok::Ne,
                Tok::Le,
                Tok::Ge,
                Tok::Gt,
                Tok::Lt,
                Tok::Concat,
                Tok::Coalesce,
                Tok::LBrace,
                Tok::RBrace,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn strings_and_escapes() {
        let toks = tokenize(r#"'it\'s' "a\"b\\c\u0041" 'open"#);
        assert_eq!(toks[0].tok, Tok::Str("it's".into()));
        assert_eq!(toks[1].tok, Tok::Str("a\"b\\cA".into()));
        assert_eq!(toks[2].tok, Tok::UnterminatedStr);
        assert_eq!(toks[2].col, 25);
    }

    #[test]
    fn sys_props_columns_and_comments() {
        let toks = tokenize("$body.a[0].b>{$x} /* hi */ é");
        assert_eq!(toks[0].tok, Tok::SysProp);
        assert_eq!(toks[0].text, "$body.a[0].b");
        assert_eq!(toks[1].tok, Tok::Gt);
        assert_eq!(toks[1].col, 13);
        assert_eq!(toks[2].tok, Tok::LBrace);
        assert_eq!(toks[3].text, "$x");
        assert_eq!(toks[4].tok, Tok::RBrace);
        assert_eq!(toks[5].tok, Tok::Id);
        assert_eq!(toks[5].text, "é");
        assert_eq!(toks[5].col, 28);
        assert_eq!(toks[6].tok, Tok::Eof);
        assert_eq!(toks[6].col, 29);
        assert_eq!(tokenize("a[0]")[0].tok, Tok::QueryPath);
        assert_eq!(tokenize("@")[0].tok, Tok::Unknown);
    }
}
