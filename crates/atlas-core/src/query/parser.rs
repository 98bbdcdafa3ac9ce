//! A hand-written lexer and recursive-descent parser for the query language
//! (grammar in `docs/query.md`). Errors carry the 1-based column of the
//! offending token; nesting and `in` lists are bounded while parsing, so no
//! input can exhaust the stack or drive an unbounded allocation.

use super::ast::{is_keyword, CmpOp, Expr, Literal, Quantifier, Stat, Subject, Test};
use super::error::Error;
use super::time::{parse_instant, Calendar};
use super::{MAX_DEPTH, MAX_IN_LIST, MAX_QUERY_BYTES, MAX_TERMS};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An identifier or a keyword (bare), or a double-quoted name (`quoted`).
    Name {
        text: String,
        quoted: bool,
    },
    Str(String),
    Number(String),
    /// A token that starts like a date (`2020-01`, `2020-01-01T00:00Z`).
    Date(String),
    LParen,
    RParen,
    Comma,
    Dot,
    At,
    Op(CmpOp),
    End,
}

struct Token {
    tok: Tok,
    /// 1-based column, in characters.
    column: usize,
}

fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |column: usize, message: String| Error::Parse { column, message };
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '.' if !chars.get(i + 1).is_some_and(char::is_ascii_digit) => Tok::Dot,
            '@' => Tok::At,
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 1;
                }
                Tok::Op(CmpOp::Eq)
            }
            '!' => {
                if chars.get(i + 1) != Some(&'=') {
                    return Err(err(column, "expected `!=`".into()));
                }
                i += 1;
                Tok::Op(CmpOp::Ne)
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    i += 1;
                    Tok::Op(CmpOp::Le)
                }
                Some('>') => {
                    i += 1;
                    Tok::Op(CmpOp::Ne)
                }
                _ => Tok::Op(CmpOp::Lt),
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 1;
                    Tok::Op(CmpOp::Ge)
                } else {
                    Tok::Op(CmpOp::Gt)
                }
            }
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(column, "unterminated quote".into())),
                        Some(&q) if q == quote => {
                            if chars.get(i + 1) == Some(&quote) {
                                s.push(quote);
                                i += 2;
                            } else {
                                break;
                            }
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                if quote == '\'' {
                    Tok::Str(s)
                } else {
                    if s.is_empty() {
                        return Err(err(column, "empty quoted name".into()));
                    }
                    Tok::Name {
                        text: s,
                        quoted: true,
                    }
                }
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = i;
                // A date: four digits then `-` and a digit.
                let is_date = chars.len() >= i + 6
                    && chars[i..i + 4].iter().all(char::is_ascii_digit)
                    && chars[i + 4] == '-'
                    && chars[i + 5].is_ascii_digit();
                if is_date {
                    while i < chars.len()
                        && (chars[i].is_ascii_digit() || "-:TZ.+".contains(chars[i]))
                    {
                        i += 1;
                    }
                    out.push(Token {
                        tok: Tok::Date(chars[start..i].iter().collect()),
                        column,
                    });
                    continue;
                }
                i += 1;
                while i < chars.len() {
                    let ch = chars[i];
                    let exp_sign = (ch == '-' || ch == '+')
                        && matches!(chars[i - 1], 'e' | 'E')
                        && chars[start..i].iter().any(char::is_ascii_digit);
                    if ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || exp_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Token {
                    tok: Tok::Number(chars[start..i].iter().collect()),
                    column,
                });
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Name {
                        text: chars[start..i].iter().collect(),
                        quoted: false,
                    },
                    column,
                });
                continue;
            }
            other => return Err(err(column, format!("unexpected character {other:?}"))),
        };
        out.push(Token { tok, column });
        i += 1;
    }
    out.push(Token {
        tok: Tok::End,
        column: chars.len() + 1,
    });
    Ok(out)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Name {
            text,
            quoted: false,
        } => format!("`{text}`"),
        Tok::Name { text, quoted: true } => format!("name \"{text}\""),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Date(d) => format!("date {d}"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Dot => "`.`".into(),
        Tok::At => "`@`".into(),
        Tok::Op(op) => format!("`{}`", op.symbol()),
        Tok::End => "the end of the query".into(),
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    terms: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn column(&self) -> usize {
        self.toks[self.pos].column
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].tok.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn fail<T>(&self, expected: &str) -> Result<T, Error> {
        Err(Error::Parse {
            column: self.column(),
            message: format!("expected {expected}, found {}", describe(self.peek())),
        })
    }

    /// True (and consumed) when the next token is the bare keyword `kw`.
    fn keyword(&mut self, kw: &str) -> bool {
        if self.is_keyword(kw) {
            self.next();
            true
        } else {
            false
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Name { text, quoted: false } if text.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), Error> {
        if self.peek() == t {
            self.next();
            Ok(())
        } else {
            self.fail(what)
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::TooDeep {
                column: self.column(),
                limit: MAX_DEPTH,
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, Error> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, Error> {
        let mut parts = vec![self.unary()?];
        while self.keyword("and") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, Error> {
        if self.keyword("not") {
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.atom()
    }

    fn name(&mut self, what: &str) -> Result<String, Error> {
        match self.peek().clone() {
            Tok::Name { text, quoted } if quoted || !is_keyword(&text) => {
                self.next();
                Ok(text)
            }
            _ => self.fail(what),
        }
    }

    fn count_term(&mut self) -> Result<(), Error> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(Error::TooLarge {
                column: self.column(),
                what: "the number of terms",
                limit: MAX_TERMS,
            });
        }
        Ok(())
    }

    fn atom(&mut self) -> Result<Expr, Error> {
        if *self.peek() == Tok::LParen {
            self.next();
            self.enter()?;
            let e = self.or()?;
            self.depth -= 1;
            self.expect(&Tok::RParen, "`)`")?;
            return Ok(e);
        }
        self.count_term()?;
        if self.is_keyword("has") && self.toks[self.pos + 1].tok == Tok::LParen {
            self.next();
            self.next();
            let a = self.name("an array name")?;
            self.expect(&Tok::RParen, "`)`")?;
            return Ok(Expr::Has(a));
        }
        for (kw, q) in [("any", Quantifier::Any), ("all", Quantifier::All)] {
            if self.is_keyword(kw) && self.toks[self.pos + 1].tok == Tok::LParen {
                self.next();
                self.next();
                let a = self.name("an array name")?;
                let column = self.column();
                let test = self.test()?;
                if matches!(test, Test::IsNull { .. } | Test::Contains { .. }) {
                    return Err(Error::Parse {
                        column,
                        message: format!(
                            "{kw}(…) takes a comparison, `between` or `in`; \
                             for nulls use {a}.nulls"
                        ),
                    });
                }
                self.expect(&Tok::RParen, "`)`")?;
                return Ok(Expr::Pred(Subject::Cells(q, a), test));
            }
        }
        let subject = if *self.peek() == Tok::At {
            self.next();
            Subject::Attr(self.name("an attribute name")?)
        } else {
            let n = self.name("a name, `(`, `not`, `has`, `any` or `all`")?;
            match self.peek() {
                Tok::Dot => {
                    self.next();
                    let column = self.column();
                    let s = self.name("a statistic (min, max, nulls, cells, valid)")?;
                    let stat = Stat::from_name(&s).ok_or(Error::Parse {
                        column,
                        message: format!(
                            "unknown statistic {s:?}; expected min, max, nulls, cells or valid"
                        ),
                    })?;
                    Subject::Stat(n, stat)
                }
                Tok::At => {
                    self.next();
                    Subject::ArrayAttr(n, self.name("an attribute name")?)
                }
                _ => Subject::Name(n),
            }
        };
        let test = self.test()?;
        Ok(Expr::Pred(subject, test))
    }

    fn test(&mut self) -> Result<Test, Error> {
        if let Tok::Op(op) = *self.peek() {
            self.next();
            return Ok(Test::Cmp(op, self.literal()?));
        }
        if self.keyword("is") {
            let negated = self.keyword("not");
            if !self.keyword("null") {
                return self.fail("`null`");
            }
            return Ok(Test::IsNull { negated });
        }
        let negated = self.keyword("not");
        if self.keyword("between") {
            let lo = self.literal()?;
            if !self.keyword("and") {
                return self.fail("`and`");
            }
            let hi = self.literal()?;
            return Ok(Test::Between { lo, hi, negated });
        }
        if self.keyword("contains") {
            return Ok(Test::Contains {
                value: self.literal()?,
                negated,
            });
        }
        if self.keyword("in") {
            if *self.peek() == Tok::LParen {
                let column = self.column();
                self.next();
                let mut list = vec![self.literal()?];
                while *self.peek() == Tok::Comma {
                    self.next();
                    if list.len() == MAX_IN_LIST {
                        return Err(Error::TooLarge {
                            column,
                            what: "the `in` list",
                            limit: MAX_IN_LIST,
                        });
                    }
                    list.push(self.literal()?);
                }
                self.expect(&Tok::RParen, "`,` or `)`")?;
                return Ok(Test::In { list, negated });
            }
            let column = self.column();
            let text = match self.peek() {
                Tok::Number(t) | Tok::Date(t) => t.clone(),
                _ => return self.fail("`(` or a calendar interval (2020, 2020-03, 2020-03-05)"),
            };
            let calendar = Calendar::parse(&text).ok_or(Error::Parse {
                column,
                message: format!(
                    "{text} is not a calendar interval; write a year (2020), \
                     a month (2020-03) or a day (2020-03-05)"
                ),
            })?;
            self.next();
            return Ok(Test::Within { calendar, negated });
        }
        if negated {
            self.fail("`between`, `in` or `contains` after `not`")
        } else {
            self.fail("a comparison (= != < <= > >=), `between`, `in`, `is null` or `contains`")
        }
    }

    fn literal(&mut self) -> Result<Literal, Error> {
        let column = self.column();
        let bad = |message: String| Error::Parse { column, message };
        let lit = match self.peek().clone() {
            Tok::Str(s) => Literal::Str(s),
            Tok::Number(n) => parse_number(&n).ok_or_else(|| bad(format!("bad number {n:?}")))?,
            Tok::Date(d) => Literal::Time(
                parse_instant(&d, false)
                    .ok_or_else(|| bad(format!("bad timestamp {d:?} (ISO-8601, UTC)")))?,
            ),
            Tok::Name {
                text,
                quoted: false,
            } => match text.to_ascii_lowercase().as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "nan" => Literal::Float(f64::NAN),
                "inf" => Literal::Float(f64::INFINITY),
                _ => return self.fail("a literal (number, 'string', true/false, timestamp)"),
            },
            _ => return self.fail("a literal (number, 'string', true/false, timestamp)"),
        };
        self.next();
        Ok(lit)
    }
}

fn parse_number(s: &str) -> Option<Literal> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "-inf" | "-infinity" => return Some(Literal::Float(f64::NEG_INFINITY)),
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(Literal::Float(f64::INFINITY)),
        "nan" | "+nan" | "-nan" => return Some(Literal::Float(f64::NAN)),
        _ => {}
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if body.is_empty() || !body.chars().next()?.is_ascii_digit() && !body.starts_with('.') {
        return None;
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        let v: i128 = s.parse().ok()?;
        // Every stored integer fits i64 or u64; a literal outside both is a typo.
        if v < i128::from(i64::MIN) || v > i128::from(u64::MAX) {
            return None;
        }
        return Some(Literal::Int(v));
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Literal::Float)
}

/// Parses a query (see [`super::Query::parse`]).
pub(crate) fn parse(src: &str) -> Result<Expr, Error> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(Error::TooLarge {
            column: 1,
            what: "the query text",
            limit: MAX_QUERY_BYTES,
        });
    }
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        terms: 0,
    };
    let e = p.or()?;
    if *p.peek() != Tok::End {
        return p.fail("`and`, `or` or the end of the query");
    }
    Ok(e)
}
