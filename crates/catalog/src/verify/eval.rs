//! Evaluating a parsed condition against a measurement's `result`, with expr-lang's rules as
//! Argo Rollouts runs them: a condition that does not apply to the value (an index past the
//! end, `nil < 1`, `len(3)`) is an error, which makes the measurement an Error rather than a
//! silent `false`.

use std::collections::BTreeMap;

use super::expr::{BinOp, Expr, ExprError, Func};

/// What a measurement produced, and what conditions compute with. Numbers are `f64`, as
/// Prometheus samples are, so `NaN` and the infinities survive into `isNaN` / `isInf`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The type's name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }
}

impl From<&serde_json::Value> for Value {
    fn from(json: &serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => Value::Array(items.iter().map(Value::from).collect()),
            serde_json::Value::Object(map) => {
                Value::Map(map.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect())
            }
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k:?}:{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Evaluates `condition` with `result` bound; anything but a bool is an error.
pub fn condition(expr: &Expr, result: &Value) -> Result<bool, ExprError> {
    match eval(expr, result)? {
        Value::Bool(b) => Ok(b),
        other => Err(fail(format!("expected bool, but got {}", other.kind()))),
    }
}

/// Evaluates `expr` with `result` bound.
pub fn eval(expr: &Expr, result: &Value) -> Result<Value, ExprError> {
    Env { result, pointer: None }.eval(expr)
}

fn fail(message: String) -> ExprError {
    ExprError::Eval(message)
}

struct Env<'a> {
    result: &'a Value,
    /// The element a closure is applied to (`#`).
    pointer: Option<&'a Value>,
}

impl Env<'_> {
    fn eval(&self, expr: &Expr) -> Result<Value, ExprError> {
        match expr {
            Expr::Literal(v) => Ok(v.clone()),
            Expr::Result => Ok(self.result.clone()),
            Expr::Pointer => self.pointer.cloned().ok_or_else(|| fail("`#` outside a closure".into())),
            Expr::Array(items) => items.iter().map(|e| self.eval(e)).collect::<Result<_, _>>().map(Value::Array),
            Expr::Not(inner) => match self.eval(inner)? {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                other => Err(fail(format!("invalid operation: !{}", other.kind()))),
            },
            Expr::Negate(inner) => match self.eval(inner)? {
                Value::Number(n) => Ok(Value::Number(-n)),
                other => Err(fail(format!("invalid operation: -{}", other.kind()))),
            },
            Expr::Binary(BinOp::And, l, r) => Ok(Value::Bool(self.truth(l, "&&")? && self.truth(r, "&&")?)),
            Expr::Binary(BinOp::Or, l, r) => Ok(Value::Bool(self.truth(l, "||")? || self.truth(r, "||")?)),
            Expr::Binary(op, l, r) => binary(*op, self.eval(l)?, self.eval(r)?),
            Expr::Member(target, key) => member(self.eval(target)?, self.eval(key)?),
            Expr::Call(func, args) => self.call(*func, args),
            Expr::Closure(_) => Err(fail("a closure is only an argument of all, any, filter, ...".into())),
        }
    }

    fn truth(&self, expr: &Expr, op: &str) -> Result<bool, ExprError> {
        match self.eval(expr)? {
            Value::Bool(b) => Ok(b),
            other => Err(fail(format!("invalid operation: {} {op} ...: not a bool", other.kind()))),
        }
    }

    fn call(&self, func: Func, args: &[Expr]) -> Result<Value, ExprError> {
        if func.takes_closure() {
            return self.apply(func, args);
        }
        let number = |v: Value, name: &str| match v {
            Value::Number(n) => Ok(n),
            other => Err(fail(format!("{name}() wants a number, got {}", other.kind()))),
        };
        let arg = |i: usize| self.eval(&args[i]);
        Ok(match func {
            Func::Len => Value::Number(match arg(0)? {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                Value::Map(m) => m.len(),
                other => return Err(fail(format!("invalid argument for len (type {})", other.kind()))),
            } as f64),
            Func::IsNaN => Value::Bool(number(arg(0)?, "isNaN")?.is_nan()),
            Func::IsInf => Value::Bool(number(arg(0)?, "isInf")?.is_infinite()),
            Func::Abs => Value::Number(number(arg(0)?, "abs")?.abs()),
            Func::AsInt | Func::AsFloat => {
                let n = match arg(0)? {
                    Value::Number(n) => n,
                    Value::String(s) => s.trim().parse().map_err(|_| fail(format!("{s:?} is not a number")))?,
                    other => return Err(fail(format!("cannot convert {} to a number", other.kind()))),
                };
                Value::Number(if func == Func::AsInt { n.trunc() } else { n })
            }
            // As in Argo, both look at `result` whatever their first argument is.
            Func::IsNil => Value::Bool(*self.result == Value::Nil),
            Func::Default if *self.result == Value::Nil => arg(1)?,
            Func::Default => self.result.clone(),
            _ => unreachable_func(func)?,
        })
    }

    /// `all`, `any`, `filter`, ...: the closure applied to each element of the array.
    fn apply(&self, func: Func, args: &[Expr]) -> Result<Value, ExprError> {
        let Value::Array(items) = self.eval(&args[0])? else {
            return Err(fail(format!("{func:?}() wants an array as its first argument").to_lowercase()));
        };
        let Expr::Closure(body) = &args[1] else {
            return Err(fail("the second argument must be a closure {...}".into()));
        };
        let mut mapped = Vec::with_capacity(items.len());
        let mut matched = Vec::new();
        for item in &items {
            let value = Env { result: self.result, pointer: Some(item) }.eval(body)?;
            if func == Func::Map {
                mapped.push(value);
                continue;
            }
            match value {
                Value::Bool(true) => matched.push(item.clone()),
                Value::Bool(false) => {}
                other => return Err(fail(format!("the closure must give a bool, got {}", other.kind()))),
            }
        }
        let (n, total) = (matched.len(), items.len());
        Ok(match func {
            Func::All => Value::Bool(n == total),
            Func::Any => Value::Bool(n > 0),
            Func::None => Value::Bool(n == 0),
            Func::One => Value::Bool(n == 1),
            Func::Filter => Value::Array(matched),
            Func::Map => Value::Array(mapped),
            Func::Count => Value::Number(n as f64),
            _ => unreachable_func(func)?,
        })
    }
}

fn unreachable_func(func: Func) -> Result<Value, ExprError> {
    Err(fail(format!("{func:?} called the wrong way")))
}

fn binary(op: BinOp, l: Value, r: Value) -> Result<Value, ExprError> {
    use Value::{Bool, Number as N};
    let bad = |l: &Value, r: &Value, sym: &str| fail(format!("invalid operation: {} {sym} {}", l.kind(), r.kind()));
    Ok(match (op, &l, &r) {
        (BinOp::Eq, _, _) => Bool(equal(&l, &r)),
        (BinOp::Ne, _, _) => Bool(!equal(&l, &r)),
        (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, _, _) => {
            let ordering = match (&l, &r) {
                (N(a), N(b)) => a.partial_cmp(b),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => return Err(bad(&l, &r, symbol(op))),
            };
            // A comparison with NaN is false, as in Go.
            Bool(ordering.is_some_and(|o| match op {
                BinOp::Lt => o.is_lt(),
                BinOp::Le => o.is_le(),
                BinOp::Gt => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        (BinOp::In | BinOp::NotIn, _, Value::Array(items)) => {
            Bool(items.iter().any(|i| equal(i, &l)) == (op == BinOp::In))
        }
        (BinOp::In | BinOp::NotIn, Value::String(key), Value::Map(map)) => {
            Bool(map.contains_key(key) == (op == BinOp::In))
        }
        (BinOp::Add, Value::String(a), Value::String(b)) => Value::String(format!("{a}{b}")),
        (BinOp::Add, N(a), N(b)) => N(a + b),
        (BinOp::Sub, N(a), N(b)) => N(a - b),
        (BinOp::Mul, N(a), N(b)) => N(a * b),
        (BinOp::Div, N(a), N(b)) => N(a / b),
        (BinOp::Mod, N(a), N(b)) if *b != 0.0 => N(a % b),
        (BinOp::Mod, N(_), N(_)) => return Err(fail("integer divide by zero".into())),
        (BinOp::Pow, N(a), N(b)) => N(a.powf(*b)),
        _ => return Err(bad(&l, &r, symbol(op))),
    })
}

fn symbol(op: BinOp) -> &'static str {
    match op {
        BinOp::Or => "||",
        BinOp::And => "&&",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::In => "in",
        BinOp::NotIn => "not in",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Mod => "%",
        BinOp::Pow => "**",
    }
}

/// expr-lang's `==`: values of different types are unequal (not an error); NaN equals nothing.
fn equal(l: &Value, r: &Value) -> bool {
    l == r
}

fn member(target: Value, key: Value) -> Result<Value, ExprError> {
    match (target, key) {
        (Value::Array(items), Value::Number(n)) => {
            if n.fract() != 0.0 {
                return Err(fail(format!("array index {n} is not an integer")));
            }
            let len = items.len() as f64;
            // A negative index counts from the end, as in expr-lang.
            let index = if n < 0.0 { len + n } else { n };
            if index < 0.0 || index >= len {
                let what = if items.is_empty() { " (no data)" } else { "" };
                return Err(fail(format!("index out of range: {n} (array length is {}){what}", items.len())));
            }
            Ok(items.into_iter().nth(index as usize).unwrap_or(Value::Nil))
        }
        // A missing key is nil, as in expr-lang; comparing that nil with a number then errs.
        (Value::Map(mut map), Value::String(key)) => Ok(map.remove(&key).unwrap_or(Value::Nil)),
        (Value::String(s), Value::Number(n)) if n.fract() == 0.0 && n >= 0.0 => s
            .chars()
            .nth(n as usize)
            .map(|c| Value::String(c.to_string()))
            .ok_or_else(|| fail(format!("index out of range: {n} (string length is {})", s.chars().count()))),
        (target, key) => Err(fail(format!("cannot fetch {key} from {}", target.kind()))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::expr::parse;
    use super::*;
    use serde_json::json;

    fn check(text: &str, result: serde_json::Value) -> Result<bool, ExprError> {
        condition(&parse(text).expect(text), &Value::from(&result))
    }

    #[test]
    fn vectors_scalars_and_objects() {
        assert_eq!(check("result[0] >= 0.95", json!([0.99])), Ok(true));
        assert_eq!(check("result[0] >= 0.95", json!([0.5])), Ok(false));
        assert_eq!(check("result >= 0.95 && result < 2", json!(1)), Ok(true));
        assert_eq!(check("all(result, {# >= 0.95})", json!([0.96, 0.99])), Ok(true));
        assert_eq!(check("any(result, {# < 0.5})", json!([0.96, 0.99])), Ok(false));
        assert_eq!(check("len(filter(result, {# > 1})) == 2", json!([1, 2, 3])), Ok(true));
        assert_eq!(check("result.data.ok == true", json!({"data": {"ok": true}})), Ok(true));
        assert_eq!(check("result['data'][\"n\"] + 1 == 4", json!({"data": {"n": 3}})), Ok(true));
        assert_eq!(check("'x' in result and not ('y' in result)", json!({"x": 1})), Ok(true));
        assert_eq!(check("2 in result", json!([1, 2])), Ok(true));
        assert_eq!(check("result == 'ok'", json!("ok")), Ok(true));
        assert_eq!(check("result[-1] == 3", json!([1, 2, 3])), Ok(true));
        assert_eq!(check("(1 + 2) * 3 / 9 == 1 or false", json!(null)), Ok(true));
        assert_eq!(check("result == nil", json!(null)), Ok(true));
        assert_eq!(check("isNil(1) && default(result, 5) == 5", json!(null)), Ok(true));
    }

    #[test]
    fn not_applicable_is_an_error_not_false() {
        let err = check("result[0] >= 0.95", json!([])).unwrap_err();
        assert!(err.to_string().contains("no data"), "{err}");
        assert!(check("result >= 1", json!(null)).is_err(), "nil < number");
        assert!(check("result.missing > 1", json!({})).is_err(), "a missing key is nil");
        assert!(check("len(result) > 0", json!(3)).is_err());
        assert!(check("result", json!(3)).is_err(), "a condition must be a bool");
        assert!(check("result && true", json!(1)).is_err());
        assert!(check("result.x", json!([1])).is_err());
        assert_eq!(check("result == 1", json!("1")), Ok(false), "different types are unequal");
    }

    #[test]
    fn nan_and_inf_come_through() {
        let nan = Value::Array(vec![Value::Number(f64::NAN)]);
        let cond = |text: &str, v: &Value| condition(&parse(text).unwrap(), v);
        assert_eq!(cond("isNaN(result[0])", &nan), Ok(true));
        assert_eq!(cond("result[0] >= 0.95", &nan), Ok(false), "NaN compares false");
        assert_eq!(cond("isInf(result)", &Value::Number(f64::INFINITY)), Ok(true));
        assert_eq!(cond("result / 0 > 1", &Value::Number(1.0)), Ok(true), "float division");
    }
}
