//! The Prometheus provider: one instant query per measurement (`GET {address}/api/v1/query`),
//! its answer turned into `result` as Argo Rollouts does: a vector is an array of its sample
//! values (empty when there is no data), a matrix the array of all its values, a scalar a
//! number. `NaN` and the infinities stay numbers, for `isNaN` / `isInf`.

use std::time::Duration;

use slipway_catalog::verify::PrometheusCheck;
use slipway_catalog::verify::eval::Value;

use crate::assess::Conditions;
use crate::run::Taken;
use crate::{Error, Subject, render};

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Takes one measurement: the query, then the conditions on its result.
pub(crate) async fn measure(http: &reqwest::Client, check: &PrometheusCheck, subject: &Subject) -> Taken {
    let conditions = match Conditions::parse(check.success_condition.as_deref(), check.failure_condition.as_deref()) {
        Ok(c) => c,
        Err(e) => return Taken::error(String::new(), e),
    };
    let result = match query(http, &render(&check.address, subject), &render(&check.query, subject)).await {
        Ok(result) => result,
        Err(e) => return Taken::error(String::new(), e),
    };
    let value = result.to_string();
    match conditions.evaluate(&result) {
        Ok(phase) => Taken { phase, message: format!("{} = {value}", phase.as_str()), value },
        Err(e) => Taken::error(value, e),
    }
}

/// Runs an instant query; its result as a condition sees it.
pub async fn query(http: &reqwest::Client, address: &str, query: &str) -> Result<Value, Error> {
    let url = format!("{}/api/v1/query", address.trim_end_matches('/'));
    let failed = |what: &str| {
        let what = format!("{what} {url}");
        move |source| Error::Http { what, source }
    };
    let response =
        http.get(&url).query(&[("query", query)]).timeout(QUERY_TIMEOUT).send().await.map_err(failed("querying"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(failed("reading the answer of"))?;
    // Prometheus answers a bad query with 400 and a JSON error, which says more than the status.
    if body["status"] != "success" {
        let kind = body["errorType"].as_str().unwrap_or("error");
        let error = body["error"].as_str().unwrap_or("no error message");
        return Err(Error::Prometheus(format!("{kind} ({status}): {error}")));
    }
    result_of(&body["data"])
}

/// `data` of a query answer (`resultType` and `result`) as `result`.
pub fn result_of(data: &serde_json::Value) -> Result<Value, Error> {
    let sample = |pair: &serde_json::Value| -> Result<Value, Error> {
        let text = pair.get(1).and_then(serde_json::Value::as_str);
        let number = text.and_then(sample_value);
        number
            .map(Value::Number)
            .ok_or_else(|| Error::Prometheus(format!("a sample that is not [time, \"value\"]: {pair}")))
    };
    let result = &data["result"];
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    match data["resultType"].as_str() {
        Some("vector") => list(result).iter().map(|s| sample(&s["value"])).collect::<Result<_, _>>().map(Value::Array),
        Some("matrix") => list(result)
            .iter()
            .flat_map(|series| list(&series["values"]))
            .map(|pair| sample(&pair))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Some("scalar") => sample(result),
        Some("string") => Ok(Value::String(result.get(1).and_then(|s| s.as_str()).unwrap_or_default().to_owned())),
        other => Err(Error::Prometheus(format!("result type {other:?} is not supported"))),
    }
}

/// A sample value as Prometheus writes it: a decimal, `NaN`, `+Inf` or `-Inf`.
fn sample_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vectors_scalars_and_matrices_become_result() {
        let vector = json!({"resultType": "vector", "result": [
            {"metric": {"app": "hello"}, "value": [1.7e9, "0.99"]},
            {"metric": {}, "value": [1.7e9, "NaN"]},
        ]});
        let Value::Array(items) = result_of(&vector).unwrap() else { panic!() };
        assert_eq!(items[0], Value::Number(0.99));
        assert!(matches!(items[1], Value::Number(n) if n.is_nan()));
        let empty = json!({"resultType": "vector", "result": []});
        assert_eq!(result_of(&empty).unwrap(), Value::Array(vec![]), "no data is an empty array");
        let scalar = json!({"resultType": "scalar", "result": [1.7e9, "+Inf"]});
        assert_eq!(result_of(&scalar).unwrap(), Value::Number(f64::INFINITY));
        let matrix = json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "1"], [2, "2"]]}]});
        assert_eq!(result_of(&matrix).unwrap(), Value::Array(vec![Value::Number(1.0), Value::Number(2.0)]));
        assert!(result_of(&json!({"resultType": "vector", "result": [{"value": [1, 2]}]})).is_err());
        assert!(result_of(&json!({})).is_err());
    }
}
