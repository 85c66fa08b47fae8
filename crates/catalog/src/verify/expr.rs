//! The condition language of a check (`successCondition`, `failureCondition`): the subset of
//! expr-lang that Argo Rollouts' analysis conditions use, parsed here once (so a catalog with a
//! condition that does not parse is a validation problem) and evaluated against a
//! measurement's `result` by [`eval`](super::eval).
//!
//! Parsing resolves every name: `result` is the only variable and the functions are a known
//! set, so a typo is caught when the catalog is validated, not at the first measurement.

use super::eval::Value;

/// A condition that does not parse, or a measurement it cannot be evaluated against.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The text is not a condition; `at` is the character offset.
    #[error("{message} (at character {at})")]
    Syntax { message: String, at: usize },
    /// The condition does not apply to this value (a missing index, `nil < 1`, ...): the
    /// measurement is an Error, not a failure.
    #[error("{0}")]
    Eval(String),
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// `result`.
    Result,
    /// `#`, the element a closure looks at.
    Pointer,
    Array(Vec<Expr>),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `a.b`, `a["b"]`, `a[0]`.
    Member(Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    /// `{ # > 1 }`, only as the argument of a function that applies it to elements.
    Closure(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

/// The functions a condition may call (Argo's environment plus expr-lang's builtins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Len,
    IsNaN,
    IsInf,
    Abs,
    AsInt,
    AsFloat,
    IsNil,
    Default,
    All,
    Any,
    None,
    One,
    Filter,
    Map,
    Count,
}

impl Func {
    fn lookup(name: &str) -> Option<(Func, usize)> {
        Some(match name {
            "len" => (Func::Len, 1),
            "isNaN" => (Func::IsNaN, 1),
            "isInf" => (Func::IsInf, 1),
            "abs" => (Func::Abs, 1),
            "asInt" => (Func::AsInt, 1),
            "asFloat" => (Func::AsFloat, 1),
            "isNil" => (Func::IsNil, 1),
            "default" => (Func::Default, 2),
            "all" => (Func::All, 2),
            "any" => (Func::Any, 2),
            "none" => (Func::None, 2),
            "one" => (Func::One, 2),
            "filter" => (Func::Filter, 2),
            "map" => (Func::Map, 2),
            "count" => (Func::Count, 2),
            _ => return None,
        })
    }

    /// Whether the second argument is a closure applied to each element of the first.
    pub fn takes_closure(self) -> bool {
        matches!(self, Func::All | Func::Any | Func::None | Func::One | Func::Filter | Func::Map | Func::Count)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Str(String),
    Ident(String),
    Punct(&'static str),
}

const PUNCTS: [&str; 25] = [
    "==", "!=", "<=", ">=", "&&", "||", "**", "<", ">", "+", "-", "*", "/", "%", "!", "(", ")", "[", "]", "{", "}",
    ",", ".", "#", "^",
];

fn lex(text: &str) -> Result<Vec<(Token, usize)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let syntax = |message: String, at: usize| ExprError::Syntax { message, at };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                // `1e-3`: the sign belongs to the exponent.
                if matches!(chars[i], 'e' | 'E') && matches!(chars.get(i + 1), Some('-' | '+')) {
                    i += 1;
                }
                i += 1;
            }
            let word: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let number = word.parse::<f64>().map_err(|_| syntax(format!("{word:?} is not a number"), start))?;
            out.push((Token::Number(number), start));
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                i += 1;
            }
            out.push((Token::Ident(chars[start..i].iter().collect()), start));
        } else if c == '"' || c == '\'' || c == '`' {
            let (value, end) = lex_string(&chars, i).ok_or_else(|| syntax("unterminated string".into(), start))?;
            out.push((Token::Str(value), start));
            i = end;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let punct = PUNCTS
                .iter()
                .find(|p| rest.starts_with(**p))
                .ok_or_else(|| syntax(format!("unexpected character {c:?}"), start))?;
            out.push((Token::Punct(punct), start));
            i += punct.len();
        }
    }
    Ok(out)
}

/// A quoted string from `chars[open]`; its value and the index after the closing quote.
fn lex_string(chars: &[char], open: usize) -> Option<(String, usize)> {
    let quote = chars[open];
    let mut value = String::new();
    let mut i = open + 1;
    loop {
        let c = *chars.get(i)?;
        i += 1;
        match c {
            _ if c == quote => return Some((value, i)),
            '\\' if quote != '`' => {
                let escaped = *chars.get(i)?;
                i += 1;
                value.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            }
            _ => value.push(c),
        }
    }
}

/// Parses a condition.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, pos: 0, end: text.chars().count(), closures: 0 };
    let expr = parser.expression(0)?;
    match parser.tokens.get(parser.pos) {
        None => Ok(expr),
        Some(_) => Err(parser.error("unexpected token after the end of the expression")),
    }
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    end: usize,
    /// How deep in closures we are: `#` is only meaningful inside one.
    closures: usize,
}

/// Binary operators by precedence, as expr-lang ranks them.
fn binary(token: &Token) -> Option<(BinOp, u8)> {
    Some(match token {
        Token::Punct("||") => (BinOp::Or, 10),
        Token::Ident(w) if w == "or" => (BinOp::Or, 10),
        Token::Punct("&&") => (BinOp::And, 15),
        Token::Ident(w) if w == "and" => (BinOp::And, 15),
        Token::Punct("==") => (BinOp::Eq, 20),
        Token::Punct("!=") => (BinOp::Ne, 20),
        Token::Punct("<") => (BinOp::Lt, 20),
        Token::Punct("<=") => (BinOp::Le, 20),
        Token::Punct(">") => (BinOp::Gt, 20),
        Token::Punct(">=") => (BinOp::Ge, 20),
        Token::Ident(w) if w == "in" => (BinOp::In, 20),
        Token::Punct("+") => (BinOp::Add, 30),
        Token::Punct("-") => (BinOp::Sub, 30),
        Token::Punct("*") => (BinOp::Mul, 60),
        Token::Punct("/") => (BinOp::Div, 60),
        Token::Punct("%") => (BinOp::Mod, 60),
        Token::Punct("**" | "^") => (BinOp::Pow, 100),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn error(&self, message: &str) -> ExprError {
        let at = self.tokens.get(self.pos).map_or(self.end, |(_, at)| *at);
        ExprError::Syntax { message: message.to_owned(), at }
    }

    fn eat(&mut self, punct: &str) -> bool {
        if self.peek() == Some(&Token::Punct(leak(punct))) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &str) -> Result<(), ExprError> {
        if self.eat(punct) { Ok(()) } else { Err(self.error(&format!("expected `{punct}`"))) }
    }

    /// Precedence climbing: operators binding at least as tightly as `min`.
    fn expression(&mut self, min: u8) -> Result<Expr, ExprError> {
        let mut left = self.unary()?;
        while let Some(token) = self.peek() {
            let not_in = matches!(token, Token::Ident(w) if w == "not")
                && matches!(self.tokens.get(self.pos + 1), Some((Token::Ident(w), _)) if w == "in");
            let (op, precedence) = if not_in { (BinOp::NotIn, 20) } else { binary(token).unwrap_or((BinOp::Or, 0)) };
            if precedence == 0 || precedence < min {
                break;
            }
            self.pos += if not_in { 2 } else { 1 };
            // `**` is right-associative, the rest left-associative.
            let next = if op == BinOp::Pow { precedence } else { precedence + 1 };
            let right = self.expression(next)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        match self.peek() {
            Some(Token::Punct("!")) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.expression(50)?)))
            }
            Some(Token::Ident(w)) if w == "not" => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.expression(50)?)))
            }
            Some(Token::Punct("-")) => {
                self.pos += 1;
                Ok(Expr::Negate(Box::new(self.expression(90)?)))
            }
            Some(Token::Punct("+")) => {
                self.pos += 1;
                self.expression(90)
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ExprError> {
        let mut expr = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Token::Ident(field)) = self.peek().cloned() else {
                    return Err(self.error("expected a field name after `.`"));
                };
                self.pos += 1;
                expr = Expr::Member(Box::new(expr), Box::new(Expr::Literal(Value::String(field))));
            } else if self.eat("[") {
                let index = self.expression(0)?;
                self.expect("]")?;
                expr = Expr::Member(Box::new(expr), Box::new(index));
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error("unexpected end of the expression"));
        };
        self.pos += 1;
        match token {
            Token::Number(n) => Ok(Expr::Literal(Value::Number(n))),
            Token::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Token::Punct("(") => {
                let inner = self.expression(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::Punct("[") => Ok(Expr::Array(self.list("]")?)),
            Token::Punct("#") if self.closures > 0 => Ok(Expr::Pointer),
            Token::Punct("#") => Err(self.back("`#` is only meaningful inside a closure `{...}`")),
            Token::Ident(name) => self.name(&name),
            Token::Punct(_) => Err(self.back("expected a value")),
        }
    }

    /// An error at the token just consumed.
    fn back(&mut self, message: &str) -> ExprError {
        self.pos -= 1;
        self.error(message)
    }

    fn name(&mut self, name: &str) -> Result<Expr, ExprError> {
        match name {
            "true" => return Ok(Expr::Literal(Value::Bool(true))),
            "false" => return Ok(Expr::Literal(Value::Bool(false))),
            "nil" => return Ok(Expr::Literal(Value::Nil)),
            "result" => return Ok(Expr::Result),
            _ => {}
        }
        let Some((func, arity)) = Func::lookup(name) else {
            return Err(self.back(&format!("unknown name {name:?} (the measurement is `result`)")));
        };
        if !self.eat("(") {
            return Err(self.error(&format!("{name} is a function: call it, {name}(...)")));
        }
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                let closure = func.takes_closure() && args.len() == 1;
                args.push(if closure { self.closure()? } else { self.expression(0)? });
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        if args.len() != arity {
            return Err(self.error(&format!("{name} takes {arity} argument(s), not {}", args.len())));
        }
        Ok(Expr::Call(func, args))
    }

    fn closure(&mut self) -> Result<Expr, ExprError> {
        self.expect("{")?;
        self.closures += 1;
        let body = self.expression(0);
        self.closures -= 1;
        let body = body?;
        self.expect("}")?;
        Ok(Expr::Closure(Box::new(body)))
    }

    fn list(&mut self, close: &str) -> Result<Vec<Expr>, ExprError> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expression(0)?);
            if self.eat(close) {
                return Ok(items);
            }
            self.expect(",")?;
        }
    }
}

/// The `&'static str` of a punctuation token, so tokens compare without allocating.
fn leak(punct: &str) -> &'static str {
    PUNCTS.iter().find(|p| **p == punct).copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argo_style_conditions_parse() {
        for text in [
            "result[0] >= 0.95",
            "len(result) > 0 && result[0] < 100",
            "all(result, {# >= 0.95})",
            "result.data.ok == true and not (result['x'] in [1, 2])",
            "isNaN(result) || isInf(result)",
            "result == \"ok\"",
            "-result[0] * 2 ** 3 <= 1e-3",
            "'a' not in result",
            "default(result, 0) > 1",
        ] {
            assert!(parse(text).is_ok(), "{text}: {:?}", parse(text));
        }
    }

    #[test]
    fn mistakes_are_syntax_errors_with_a_position() {
        for (text, at) in [
            ("result[0] >=", 12),
            ("reslt > 1", 0),
            ("len(result, 1)", 14),
            ("# > 1", 0),
            ("result > 1 1", 11),
            ("'open", 0),
            ("result @ 1", 7),
        ] {
            match parse(text) {
                Err(ExprError::Syntax { at: got, .. }) => assert_eq!(got, at, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn precedence_follows_expr_lang() {
        let parsed = parse("!a").unwrap_err();
        assert!(matches!(parsed, ExprError::Syntax { .. }));
        let Expr::Binary(BinOp::Or, _, right) = parse("true || false && false").unwrap() else { panic!() };
        assert!(matches!(*right, Expr::Binary(BinOp::And, _, _)));
        let Expr::Binary(BinOp::Eq, left, _) = parse("!true == false").unwrap() else { panic!() };
        assert!(matches!(*left, Expr::Not(_)));
    }
}
