//! Bearer tokens: `authorization: Bearer <token>` is hashed with SHA-256 and looked up among
//! the configured `[[admin_api.tokens]]` hashes. The interceptor turns the token into a
//! [`Caller`] (name and [`Role`]) in the request's extensions; each handler then asks
//! [`authorize`] for the role its method needs.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::config::{ApiToken, Role};

/// Who is calling: the token's name (the actor recorded in the audit log) and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The lowercase hex SHA-256 of `token`, as `[[admin_api.tokens]]` lists it.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The configured tokens by hash; the interceptor of the admin service.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    by_hash: Arc<HashMap<String, Caller>>,
}

impl TokenTable {
    pub fn new(tokens: &[ApiToken]) -> Self {
        let by_hash = tokens
            .iter()
            .map(|t| (t.sha256.to_ascii_lowercase(), Caller { name: t.name.clone(), role: t.role }))
            .collect();
        TokenTable { by_hash: Arc::new(by_hash) }
    }

    /// The caller a request's metadata authenticates, or `UNAUTHENTICATED`.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated("missing bearer token (authorization: Bearer <token>)"));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty() && !token.contains(char::is_whitespace))
            .ok_or_else(|| Status::unauthenticated("malformed authorization header; expected \"Bearer <token>\""))?;
        self.by_hash
            .get(&hash_token(token))
            .cloned()
            .ok_or_else(|| Status::unauthenticated("the token is not valid for this Slipway admin API"))
    }
}

impl Interceptor for TokenTable {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.authenticate(&request)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The authenticated caller, if its role reaches `needed` for `rpc`; `PERMISSION_DENIED`
/// otherwise.
pub fn authorize<T>(request: &Request<T>, rpc: &str, needed: Role) -> Result<Caller, Status> {
    // Only reachable without the interceptor in front, which would be a wiring bug.
    let caller =
        request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::unauthenticated("not authenticated"))?;
    if caller.role < needed {
        return Err(Status::permission_denied(format!(
            "{rpc} needs the {} role; the token {:?} has {}",
            role_name(needed),
            caller.name,
            role_name(caller.role)
        )));
    }
    Ok(caller)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Approver => "approver",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn table() -> TokenTable {
        TokenTable::new(&[
            ApiToken { name: "vera".into(), role: Role::Viewer, sha256: hash_token("view-secret") },
            ApiToken { name: "bob".into(), role: Role::Approver, sha256: hash_token("approve-secret").to_uppercase() },
        ])
    }

    fn request(auth: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(auth) = auth {
            request.metadata_mut().insert("authorization", auth.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn tokens_authenticate_by_hash() {
        let mut t = table();
        let ok = t.call(request(Some("Bearer approve-secret"))).expect("known token");
        assert_eq!(ok.extensions().get::<Caller>().map(|c| c.name.as_str()), Some("bob"));
        assert!(t.call(request(Some("bearer view-secret"))).is_ok(), "scheme is case-insensitive");
        for bad in [None, Some("approve-secret"), Some("Basic abc"), Some("Bearer "), Some("Bearer nope")] {
            let err = t.call(request(bad)).expect_err("rejected");
            assert_eq!(err.code(), Code::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn roles_are_ordered() {
        let mut t = table();
        let viewer = t.call(request(Some("Bearer view-secret"))).expect("viewer");
        assert!(authorize(&viewer, "ListApps", Role::Viewer).is_ok());
        let denied = authorize(&viewer, "Approve", Role::Approver).expect_err("denied");
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().contains("approver"), "{}", denied.message());
        let approver = t.call(request(Some("Bearer approve-secret"))).expect("approver");
        assert!(authorize(&approver, "Approve", Role::Approver).is_ok());
        assert_eq!(authorize(&approver, "Promote", Role::Operator).expect_err("denied").code(), Code::PermissionDenied);
        assert!(Role::Viewer < Role::Approver && Role::Approver < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(
            authorize(&request(None), "ListApps", Role::Viewer).expect_err("none").code(),
            Code::Unauthenticated
        );
    }
}
