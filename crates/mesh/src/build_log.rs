//! Where a running build's log lives, shared by the builder that writes it and the readers
//! (`slipctl logs`, dashboards): chunks of lines in the JetStream KV bucket [`BUCKET`] under
//! `<token>.<seq:08>`, and the outcome under `<token>.end` as JSON ([`End`]).
//!
//! The token is the build id with every byte outside `[A-Za-z0-9_-]` written as `=XX`
//! ([`key_token`]): build ids may hold `.` and `:`, and a `.` would split the key into more
//! tokens (`a.b.00000000` would be a chunk of build `a` to an `a.>` watch).

use serde::{Deserialize, Serialize};

/// The KV bucket of log chunks.
pub const BUCKET: &str = "slipway-build-log-lines";

/// The last record of a build's log: how the build ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// `succeeded`, `failed` or `superseded`.
    pub outcome: String,
    /// The failure reason (`build-error`, `timeout`, ...), empty on success.
    #[serde(default)]
    pub reason: String,
    /// Lines left out of the log because it outgrew the builder's cap.
    #[serde(default)]
    pub dropped_lines: u64,
}

/// The build id as one KV key token; injective.
pub fn key_token(build_id: &str) -> String {
    let mut out = String::with_capacity(build_id.len());
    for b in build_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The key of chunk `seq` of `build_id`.
pub fn chunk_key(build_id: &str, seq: u64) -> String {
    format!("{}.{seq:08}", key_token(build_id))
}

/// The key of `build_id`'s end record.
pub fn end_key(build_id: &str) -> String {
    format!("{}.end", key_token(build_id))
}

/// The KV key filter of everything `build_id` wrote.
pub fn filter(build_id: &str) -> String {
    format!("{}.>", key_token(build_id))
}

/// True for the key of an end record.
pub fn is_end_key(key: &str) -> bool {
    key.ends_with(".end")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_become_single_key_tokens() {
        assert_eq!(key_token("gh-1-build_writer"), "gh-1-build_writer");
        assert_eq!(key_token("a.b:c"), "a=2Eb=3Ac");
        assert_eq!(chunk_key("a.b", 3), "a=2Eb.00000003");
        assert_eq!(end_key("x"), "x.end");
        assert_eq!(filter("a.b"), "a=2Eb.>");
        assert!(is_end_key(&end_key("a.b")));
        assert_ne!(key_token("a.b"), key_token("a_b"));
        assert_ne!(key_token("a=2Eb"), key_token("a.b"));
        assert!(!key_token("1.2.3:4").contains('.'));
    }
}
