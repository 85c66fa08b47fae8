use super::*;
use Phase::{Error as E, Failed as F, Inconclusive as I, Successful as S};

fn limits(count: Option<u32>) -> Limits {
    Limits {
        count,
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 4,
        consecutive_success_limit: None,
    }
}

/// Feeds measurements one by one; the verdict and after how many measurements it came.
fn run(limits: &Limits, phases: &[Phase]) -> Option<(Verdict, String, u32)> {
    let mut counters = Counters::default();
    for phase in phases {
        counters.record(*phase);
        if let Some((verdict, why)) = assess(limits, &counters, false) {
            return Some((verdict, why, counters.measurements));
        }
    }
    None
}

#[test]
fn no_conditions_is_successful() {
    let conditions = Conditions::parse(None, None).unwrap();
    assert_eq!(conditions.evaluate(&Value::Array(vec![])).unwrap(), S);
}

#[test]
fn conditions_decide_as_argo_evaluate_result() {
    let value = Value::Array(vec![Value::Number(0.97)]);
    let eval = |s: Option<&str>, f: Option<&str>| Conditions::parse(s, f).unwrap().evaluate(&value).unwrap();
    assert_eq!(eval(Some("result[0] >= 0.95"), None), S);
    assert_eq!(eval(Some("result[0] >= 0.99"), None), F, "success condition alone: false fails");
    assert_eq!(eval(None, Some("result[0] < 0.5")), S, "failure condition alone: false succeeds");
    assert_eq!(eval(None, Some("result[0] < 0.99")), F);
    assert_eq!(eval(Some("result[0] >= 0.99"), Some("result[0] < 0.5")), I, "neither: inconclusive");
    assert_eq!(eval(Some("result[0] >= 0.5"), Some("result[0] < 0.99")), F, "failure wins");
    let empty = Conditions::parse(Some("result[0] >= 0.95"), None).unwrap().evaluate(&Value::Array(vec![]));
    let message = empty.unwrap_err().to_string();
    assert!(message.contains("successCondition") && message.contains("no data"), "{message}");
    assert!(Conditions::parse(Some("result >="), None).is_err());
}

#[test]
fn good_passes_after_count() {
    let (verdict, why, after) = run(&limits(Some(3)), &[S, S, S, S]).unwrap();
    assert_eq!((verdict, after), (Verdict::Successful, 3));
    assert_eq!(why, "count (3) reached");
}

#[test]
fn bad_fails_after_failure_limit_plus_one() {
    let limits = Limits { failure_limit: 2, ..limits(Some(10)) };
    let (verdict, why, after) = run(&limits, &[F, S, F, F, S]).unwrap();
    assert_eq!((verdict, after), (Verdict::Failed, 4));
    assert_eq!(why, "failed (3) > failureLimit (2)");
    let tolerant = Limits { failure_limit: -1, consecutive_success_limit: Some(2), ..limits };
    assert_eq!(run(&tolerant, &[F, F, F, F, S, S]).unwrap().0, Verdict::Successful, "negative: not applicable");
}

#[test]
fn errors_do_not_count_toward_count() {
    let (verdict, _, after) = run(&limits(Some(2)), &[E, S, E, E, S]).unwrap();
    assert_eq!((verdict, after), (Verdict::Successful, 5));
    let mut counters = Counters::default();
    for phase in [E, E, S] {
        counters.record(phase);
    }
    assert_eq!((counters.count, counters.error, counters.consecutive_error), (1, 2, 0));
}

#[test]
fn error_after_consecutive_error_limit_plus_one() {
    let (verdict, why, after) = run(&limits(Some(10)), &[E, E, E, S, E, E, E, E, E]).unwrap();
    assert_eq!((verdict, after), (Verdict::Error, 9), "the success reset the run");
    assert_eq!(why, "consecutiveErrors (5) > consecutiveErrorLimit (4)");
}

#[test]
fn inconclusive_limit() {
    let limits = Limits { inconclusive_limit: 1, ..limits(Some(10)) };
    let (verdict, why, after) = run(&limits, &[I, S, I]).unwrap();
    assert_eq!((verdict, after), (Verdict::Inconclusive, 3));
    assert_eq!(why, "inconclusive (2) > inconclusiveLimit (1)");
}

#[test]
fn consecutive_success_limit() {
    let limits = Limits { failure_limit: 3, consecutive_success_limit: Some(2), ..limits(Some(5)) };
    let (verdict, why, after) = run(&limits, &[S, F, S, S]).unwrap();
    assert_eq!((verdict, after), (Verdict::Successful, 4));
    assert_eq!(why, "consecutiveSuccessLimit (2) reached");
    // Count reached with neither limit: inconclusive while failures apply, failed otherwise.
    assert_eq!(run(&limits, &[S, F, S, F, S]).unwrap().0, Verdict::Inconclusive);
    let no_failures = Limits { failure_limit: -1, ..limits };
    assert_eq!(run(&no_failures, &[S, F, S, F, S]).unwrap().0, Verdict::Failed);
}

#[test]
fn without_count_it_runs_until_stopped_and_stopping_succeeds() {
    let limits = limits(None);
    assert!(run(&limits, &[S; 50]).is_none());
    assert_eq!(assess(&limits, &Counters::default(), true).unwrap().0, Verdict::Successful);
    let mut failing = Counters::default();
    failing.record(F);
    assert_eq!(assess(&limits, &failing, true).unwrap().0, Verdict::Failed, "a limit exceeded stays exceeded");
}

#[test]
fn web_and_job_checks_end_after_one_measurement() {
    let web: Check = serde_json::from_value(serde_json::json!({"web": {"name": "w", "url": "http://x"}})).unwrap();
    let limits = Limits::of(&web);
    assert_eq!(run(&limits, &[S]).unwrap().0, Verdict::Successful);
    assert_eq!(run(&limits, &[F]).unwrap().0, Verdict::Failed);
    assert_eq!(run(&limits, &[E]).unwrap().0, Verdict::Error);
}
