//! GitHub webhook signatures: `X-Hub-Signature-256: sha256=<64 hex>`, an HMAC-SHA256 of the raw
//! body under the hook's secret.
//!
//! Several secrets may be active at once so a secret can be rotated without dropping deliveries:
//! a body signed with any one of them is accepted. The comparison is constant-time (`hmac`'s
//! `verify_slice`). Error messages are safe to send back to the caller: they never contain a
//! secret or the expected digest.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header prefix GitHub puts before the hex digest.
const PREFIX: &str = "sha256=";
/// Length of an HMAC-SHA256 in hex digits.
const HEX_LEN: usize = 64;

/// Why a delivery's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header at all.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// Only the legacy SHA-1 `X-Hub-Signature` header was sent; SHA-1 is not accepted.
    #[error("only a SHA-1 X-Hub-Signature was sent; X-Hub-Signature-256 is required")]
    Sha1Only,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("malformed X-Hub-Signature-256 header: {0}")]
    Malformed(&'static str),
    /// Well-formed, but no active secret produced this signature.
    #[error("signature does not match")]
    Mismatch,
    /// No usable (non-empty) secret is configured, so nothing can be verified.
    #[error("no webhook secret is configured")]
    NoSecretConfigured,
}

/// Verifies `sig256` (the value of `X-Hub-Signature-256`) over `body` against each of
/// `secrets`; `sig1_present` tells whether the legacy `X-Hub-Signature` header was sent, so a
/// SHA-1-only delivery gets a precise error. Empty secrets are skipped: an empty key would let
/// anyone sign.
pub fn verify(
    secrets: &[impl AsRef<[u8]>],
    body: &[u8],
    sig256: Option<&str>,
    sig1_present: bool,
) -> Result<(), SignatureError> {
    let mut usable = secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()).peekable();
    if usable.peek().is_none() {
        return Err(SignatureError::NoSecretConfigured);
    }
    let header = match sig256 {
        Some(h) => h,
        None if sig1_present => return Err(SignatureError::Sha1Only),
        None => return Err(SignatureError::Missing),
    };
    let digest = parse_header(header)?;
    for secret in usable {
        let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::NoSecretConfigured)?;
        mac.update(body);
        if mac.verify_slice(&digest).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` value for `body` under `secret` (lowercase hex, as GitHub sends).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!("{PREFIX}{}", hex::encode(mac.finalize().into_bytes()))
}

/// `sha256=<64 hex>` → the 32 digest bytes. Upper- and lowercase hex are both accepted.
fn parse_header(header: &str) -> Result<[u8; 32], SignatureError> {
    let header = header.trim();
    let Some(hex_digits) = header.strip_prefix(PREFIX) else {
        return Err(SignatureError::Malformed("expected the prefix 'sha256='"));
    };
    if hex_digits.len() != HEX_LEN {
        return Err(SignatureError::Malformed("expected 64 hex digits"));
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut digest).map_err(|_| SignatureError::Malformed("not hex"))?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"zen":"Anything added dilutes everything else."}"#;

    #[test]
    fn github_documented_example() {
        // The example from GitHub's "Validating webhook deliveries" docs.
        let sig = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(sig, "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
        assert_eq!(verify(&["It's a Secret to Everybody"], b"Hello, World!", Some(&sig), false), Ok(()));
    }

    #[test]
    fn rotation_accepts_any_active_secret() {
        let old = sign(b"old", BODY);
        let new = sign(b"new", BODY);
        let secrets = ["new", "old"];
        assert_eq!(verify(&secrets, BODY, Some(&old), false), Ok(()));
        assert_eq!(verify(&secrets, BODY, Some(&new), false), Ok(()));
        let retired = sign(b"retired", BODY);
        assert_eq!(verify(&secrets, BODY, Some(&retired), false), Err(SignatureError::Mismatch));
    }

    #[test]
    fn flipped_body_or_signature_byte_is_a_mismatch() {
        let sig = sign(b"s3cret", BODY);
        for i in 0..BODY.len() {
            let mut body = BODY.to_vec();
            body[i] ^= 0x01;
            assert_eq!(verify(&["s3cret"], &body, Some(&sig), false), Err(SignatureError::Mismatch));
        }
        let mut bad = sig.into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert_eq!(verify(&["s3cret"], BODY, Some(&bad), false), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_headers() {
        let sig = sign(b"k", BODY);
        let digits = &sig[PREFIX.len()..];
        for bad in [
            format!("sha1={digits}"),
            digits.to_owned(),
            format!("sha256={}", &digits[..63]),
            format!("sha256={digits}0"),
            format!("sha256={}zz", &digits[..62]),
            String::new(),
            "sha256=".to_owned(),
            format!("sha256={}é", &digits[..62]),
        ] {
            assert!(
                matches!(verify(&["k"], BODY, Some(&bad), false), Err(SignatureError::Malformed(_))),
                "{bad:?} not malformed"
            );
        }
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let sig = sign(b"k", BODY);
        let upper = format!("sha256={}", sig[PREFIX.len()..].to_ascii_uppercase());
        assert_eq!(verify(&["k"], BODY, Some(&upper), false), Ok(()));
    }

    #[test]
    fn missing_and_sha1_only() {
        assert_eq!(verify(&["k"], BODY, None, false), Err(SignatureError::Missing));
        assert_eq!(verify(&["k"], BODY, None, true), Err(SignatureError::Sha1Only));
    }

    #[test]
    fn empty_secrets_never_verify() {
        let none: [&str; 0] = [];
        let sig = sign(b"", BODY);
        assert_eq!(verify(&none, BODY, Some(&sig), false), Err(SignatureError::NoSecretConfigured));
        assert_eq!(verify(&[""], BODY, Some(&sig), false), Err(SignatureError::NoSecretConfigured));
        // An empty secret beside a real one is skipped, not used.
        assert_eq!(verify(&["", "k"], BODY, Some(&sig), false), Err(SignatureError::Mismatch));
    }

    #[test]
    fn messages_do_not_leak_the_expected_digest() {
        let expected = sign(b"k", BODY);
        let err = verify(&["k"], BODY, Some(&sign(b"other", BODY)), false).expect_err("mismatch");
        assert!(!err.to_string().contains(&expected[PREFIX.len()..]));
    }
}
