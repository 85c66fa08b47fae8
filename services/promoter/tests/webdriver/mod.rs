//! A small W3C WebDriver client over HTTP (reqwest + JSON): starts `chromedriver` on a free
//! port and headless Debian Chromium with a fresh profile, and offers what the dashboard test
//! needs — open a page, read text, type, click, wait for text, take a screenshot.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long [`Browser::wait_text`] waits before failing with what it saw.
const WAIT: Duration = Duration::from_secs(30);

/// Fails (does not skip) when the browser packages are missing.
pub fn require_chromium() {
    for binary in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: the dashboard test needs Debian's chromium and chromium-driver; run scripts/bootstrap"
        );
    }
}

/// A ChromeDriver process and one browser session on it.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        require_chromium();
        let port = slipway_testkit::free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        let root = format!("http://127.0.0.1:{port}");
        wait_driver(&http, &root).await;
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1360,900",
        ];
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let answer = call(&http, reqwest::Method::POST, &format!("{root}/session"), Some(capabilities)).await;
        let id = answer["sessionId"].as_str().expect("a session id").to_owned();
        Browser { http, session: format!("{root}/session/{id}"), _driver: driver, _profile: profile }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        call(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    /// Runs `script` (a function body) with `args` in the page; its return value.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// The visible text of the first element matching `css`, or "" when there is none.
    pub async fn text(&self, css: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';";
        self.script(script, json!([css])).await.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the text of `css` contains every one of `needles`; returns that text.
    pub async fn wait_text(&self, css: &str, needles: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.text(css).await;
            if needles.iter().all(|n| text.contains(n)) {
                return text;
            }
            assert!(tokio::time::Instant::now() < deadline, "{css} never showed {needles:?}; it shows:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found =
            self.cmd(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css }))).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("{css}: no element reference in {found}")).to_owned()
    }

    /// Clicks the element `css` finds, finding it again if the page re-rendered it meanwhile.
    pub async fn click(&self, css: &str) {
        for _ in 0..20 {
            let id = self.element(css).await;
            let url = format!("{}/element/{id}/click", self.session);
            match try_call(&self.http, reqwest::Method::POST, &url, Some(json!({}))).await {
                Ok(_) => return,
                Err(e) if e["error"] == "stale element reference" => continue,
                Err(e) => panic!("click {css}: {e}"),
            }
        }
        panic!("click {css}: the element kept going stale");
    }

    /// Empties the input `css` finds.
    pub async fn clear(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({}))).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": text }))).await;
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let answer = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64_decode(answer.as_str().expect("base64 text"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is not a PNG");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Ends the session (Chromium exits); chromedriver goes when dropped.
    pub async fn quit(self) {
        self.cmd(reqwest::Method::DELETE, "", None).await;
    }
}

async fn wait_driver(http: &reqwest::Client, root: &str) {
    for _ in 0..200 {
        if let Ok(answer) = http.get(format!("{root}/status")).send().await
            && let Ok(status) = answer.json::<Value>().await
            && status["value"]["ready"] == json!(true)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver never became ready on {root}");
}

/// One WebDriver command; its `value`, or a panic with the driver's error.
async fn call(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    try_call(http, method.clone(), url, body).await.unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// One WebDriver command; its `value`, or the driver's error object.
async fn try_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, Value> {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let ok = answer.status().is_success();
    let body: Value = answer.json().await.unwrap_or_else(|e| panic!("{method} {url}: not JSON: {e}"));
    let value = body.get("value").cloned().unwrap_or(Value::Null);
    if ok { Ok(value) } else { Err(value) }
}

/// Standard base64 (the screenshot), without a crate for one call.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
