//! Where slipctl finds the server and its token: flags and `SLIPWAY_*` environment first, then
//! the config file (`--config`, `SLIPCTL_CONFIG`, or `~/.config/slipway/slipctl.toml`), then the
//! default address.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::client::Failure;

/// The admin API of a promoter running on this machine.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9443";

/// `slipctl.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Admin API URL, `http://` or `https://`.
    pub server: Option<String>,
    /// The bearer token itself...
    pub token: Option<String>,
    /// ...or a file holding it.
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the server's certificate, for `https://`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) when the server requires mTLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Everything needed to call the API.
#[derive(Debug)]
pub struct Settings {
    pub server: String,
    pub token: String,
    pub ca_file: Option<PathBuf>,
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Where the config file is (or would be), for error messages.
    pub config_path: PathBuf,
}

/// The default config file path: `$XDG_CONFIG_HOME/slipway/slipctl.toml` or
/// `~/.config/slipway/slipctl.toml`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("slipway").join("slipctl.toml")
}

/// Reads the config file; a missing file is fine unless it was named explicitly.
fn read(path: &Path, explicit: bool) -> Result<File, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(File::default()),
        Err(e) => return Err(Failure::Usage(format!("cannot read {}: {e}", path.display()))),
    };
    toml::from_str(&text).map_err(|e| Failure::Usage(format!("{}: {}", path.display(), e.message())))
}

/// Resolves the settings from the flags (`server`, `token`, already merged with the
/// environment by clap) and the config file.
pub fn resolve(server: Option<String>, token: Option<String>, config: Option<PathBuf>) -> Result<Settings, Failure> {
    let explicit = config.is_some();
    let config_path = config.unwrap_or_else(default_path);
    let file = read(&config_path, explicit)?;
    let server = server.or(file.server).unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let token = match (token, &file.token, &file.token_file) {
        (Some(token), ..) => token,
        (None, Some(token), _) => token.clone(),
        (None, None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| Failure::Usage(format!("token_file {}: {e}", path.display())))?
            .trim()
            .to_owned(),
        (None, None, None) => {
            return Err(Failure::Auth(format!(
                "no token: pass --token, set SLIPWAY_TOKEN, or put token = \"...\" in {}",
                config_path.display()
            )));
        }
    };
    let identity = match (file.cert_file, file.key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(Failure::Usage(format!("{}: cert_file and key_file go together", config_path.display()))),
    };
    Ok(Settings { server, token: token.trim().to_owned(), ca_file: file.ca_file, identity, config_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("slipctl.toml");
        std::fs::write(&path, "server = \"http://file:1\"\ntoken = \"from-file\"\n").expect("write");
        let s = resolve(None, None, Some(path.clone())).expect("file");
        assert_eq!((s.server.as_str(), s.token.as_str()), ("http://file:1", "from-file"));
        let s = resolve(Some("http://flag:2".into()), Some("flag".into()), Some(path.clone())).expect("flags");
        assert_eq!((s.server.as_str(), s.token.as_str()), ("http://flag:2", "flag"));
        std::fs::write(&path, "tokn = \"typo\"\n").expect("write");
        assert!(matches!(resolve(None, None, Some(path.clone())), Err(Failure::Usage(m)) if m.contains("tokn")));
        std::fs::write(&path, "").expect("write");
        assert!(matches!(resolve(None, None, Some(path)), Err(Failure::Auth(m)) if m.contains("no token")));
        assert!(matches!(resolve(None, None, Some(dir.path().join("missing.toml"))), Err(Failure::Usage(_))));
    }
}
