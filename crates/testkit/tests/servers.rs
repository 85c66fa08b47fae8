//! Each server really runs, answers, survives a kill and a restart on the same port with its
//! data, and is gone after drop.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use slipway_testkit::{GitDaemon, NatsServer, Postgres, Registry, ServiceProcess, free_port, shared_database};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().next();
        !matches!(state, Some("Z" | "X"))
    })
}

fn run(cmd: &mut Command) -> Result<String, Box<dyn std::error::Error>> {
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{cmd:?} failed ({}): {stdout}{stderr}", out.status).into());
    }
    Ok(stdout)
}

/// A minimal NATS client over plain TCP: enough to read `INFO` and make one request.
struct NatsConn {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl NatsConn {
    async fn connect(port: u16) -> Result<(Self, String), Box<dyn std::error::Error>> {
        let (read, writer) = TcpStream::connect(("127.0.0.1", port)).await?.into_split();
        let mut conn = NatsConn { reader: BufReader::new(read), writer };
        let info = conn.line().await?;
        conn.writer.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB reply.1 1\r\n").await?;
        Ok((conn, info))
    }

    async fn line(&mut self) -> Result<String, Box<dyn std::error::Error>> {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line));
        if read.await?? == 0 {
            return Err("connection closed".into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// Publishes `payload` to `subject` and returns the payload of the reply.
    async fn request(&mut self, subject: &str, payload: &str) -> Result<String, Box<dyn std::error::Error>> {
        let msg = format!("PUB {subject} reply.1 {}\r\n{payload}\r\n", payload.len());
        self.writer.write_all(msg.as_bytes()).await?;
        loop {
            let line = self.line().await?;
            if line == "PING" {
                self.writer.write_all(b"PONG\r\n").await?;
            } else if let Some(rest) = line.strip_prefix("MSG ") {
                let len: usize = rest.rsplit(' ').next().ok_or("no size")?.parse()?;
                let mut body = vec![0; len + 2];
                self.reader.read_exact(&mut body).await?;
                body.truncate(len);
                return Ok(String::from_utf8(body)?);
            } else if line.starts_with("-ERR") {
                return Err(line.into());
            }
        }
    }
}

#[tokio::test]
async fn nats_survives_kill_and_restart_with_its_streams() -> TestResult {
    let mut nats = NatsServer::start().await?;
    let port = nats.port();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
    assert!(nats.is_running());

    let (mut conn, info) = NatsConn::connect(port).await?;
    assert!(info.starts_with("INFO {"), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");
    let created = conn
        .request("$JS.API.STREAM.CREATE.EVENTS", r#"{"name":"EVENTS","subjects":["events.>"],"storage":"file"}"#)
        .await?;
    assert!(created.contains("\"config\""), "{created}");
    drop(conn);

    let pid = nats.pid().ok_or("no pid")?;
    nats.kill().await?;
    assert!(!nats.is_running());
    assert!(!alive(pid));
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());

    nats.restart().await?;
    assert_eq!(nats.port(), port);
    let (mut conn, info) = NatsConn::connect(port).await?;
    assert!(info.starts_with("INFO {"), "{info}");
    let stream = conn.request("$JS.API.STREAM.INFO.EVENTS", "").await?;
    assert!(stream.contains("\"name\":\"EVENTS\""), "{stream}");
    assert!(!stream.contains("\"error\""), "{stream}");

    nats.stop().await?;
    assert!(!nats.is_running());
    nats.restart().await?;
    assert!(nats.is_running());
    Ok(())
}

#[tokio::test]
async fn drop_kills_the_server_and_removes_its_directory() -> TestResult {
    let nats = NatsServer::start().await?;
    let pid = nats.pid().ok_or("no pid")?;
    let store = nats.store_dir();
    assert!(store.exists());
    drop(nats);
    assert!(!alive(pid));
    assert!(!store.exists());
    Ok(())
}

fn psql(url: &str, sql: &str) -> Result<String, Box<dyn std::error::Error>> {
    let psql = slipway_testkit::postgres_bindir()?.join("psql");
    run(Command::new(psql).args(["-X", "-A", "-t", url, "-c", sql]))
}

#[tokio::test]
async fn postgres_databases_survive_kill_and_restart() -> TestResult {
    let mut pg = Postgres::start().await?;
    let port = pg.port();
    let (a, b) = (pg.create_database().await?, pg.create_database().await?);
    assert_ne!(a, b);
    for url in [&a, &b] {
        assert!(url.starts_with(&format!("postgres://postgres@127.0.0.1:{port}/")));
        assert_eq!(psql(url, "select 1")?.trim(), "1");
    }
    // Commits are asynchronous in this cluster: ask for a durable one before the crash.
    let name_a = a.rsplit('/').next().ok_or("no name")?;
    assert_eq!(psql(&a, "show synchronous_commit")?.trim(), "off");
    psql(&a, &format!("alter database \"{name_a}\" set synchronous_commit = on"))?;
    assert_eq!(psql(&a, "show synchronous_commit")?.trim(), "on");
    psql(&a, "create table t (v int); insert into t values (42)")?;

    // A client in the middle of a query: its backend must not outlive the crash and hold the
    // shared memory that the restart needs.
    let psql_bin = slipway_testkit::postgres_bindir()?.join("psql");
    let mut busy = tokio::process::Command::new(psql_bin)
        .args(["-X", &b, "-c", "select pg_sleep(60)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let waiting = "select count(*) from pg_stat_activity where wait_event = 'PgSleep'";
    while psql(&a, waiting)?.trim() == "0" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let postmaster = pg.pid().ok_or("no pid")?;
    pg.kill().await?;
    assert!(!busy.wait().await?.success(), "the client did not see the crash");
    assert!(!pg.is_running());
    assert!(!alive(postmaster), "postmaster {postmaster} survived SIGKILL");
    assert!(psql(&a, "select 1").is_err());

    pg.restart().await?;
    assert_eq!(pg.port(), port);
    assert_eq!(psql(&a, "select v from t")?.trim(), "42");
    let names = psql(&b, "select datname from pg_database")?;
    for url in [&a, &b] {
        let name = url.rsplit('/').next().ok_or("no name")?;
        assert!(names.lines().any(|n| n == name), "{name} missing in {names}");
    }

    pg.stop().await?;
    assert!(!alive(postmaster) && !pg.is_running());
    pg.restart().await?;
    assert_eq!(psql(&b, "select 1")?.trim(), "1");
    Ok(())
}

#[tokio::test]
async fn postgres_does_not_run_as_root() -> TestResult {
    let pg = Postgres::start().await?;
    let pid = pg.pid().ok_or("no pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or("no uid")?;
    assert_ne!(uid, "0", "the postmaster runs as root");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    assert!(exe.ends_with("postgres"), "{exe:?} is not the postmaster");
    Ok(())
}

#[tokio::test]
async fn shared_database_hands_out_fresh_databases() -> TestResult {
    let (a, b) = (shared_database().await?, shared_database().await?);
    assert_ne!(a, b);
    assert_eq!(a.rsplit_once('/').map(|p| p.0), b.rsplit_once('/').map(|p| p.0));
    assert_eq!(psql(&a, "select 1")?.trim(), "1");
    assert_eq!(psql(&b, "select 1")?.trim(), "1");
    Ok(())
}

async fn v2_status(client: &reqwest::Client, registry: &Registry) -> Option<u16> {
    let url = format!("{}/v2/", registry.url());
    client.get(url).send().await.ok().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn registry_answers_and_survives_kill_and_restart() -> TestResult {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut registry = Registry::start().await?;
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert_eq!(v2_status(&client, &registry).await, Some(200));

    // A monolithic blob upload: POST opens the session, PUT with the digest completes it.
    let blob = b"slipway layer";
    let digest = run(Command::new("sh").args(["-c", "printf 'slipway layer' | sha256sum"]))?;
    let digest = format!("sha256:{}", digest.split_whitespace().next().ok_or("no digest")?);
    let started = client.post(format!("{}/v2/team/app/blobs/uploads/", registry.url())).send().await?;
    assert_eq!(started.status().as_u16(), 202);
    let location = started.headers().get("location").ok_or("no location")?.to_str()?.to_owned();
    let location = if location.starts_with("http") { location } else { format!("{}{location}", registry.url()) };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = client.put(format!("{location}{separator}digest={digest}")).body(&blob[..]).send().await?;
    assert_eq!(put.status().as_u16(), 201, "{:?}", put.text().await);
    let blob_url = format!("{}/v2/team/app/blobs/{digest}", registry.url());

    registry.kill().await?;
    assert!(!registry.is_running());
    assert_eq!(v2_status(&client, &registry).await, None);

    registry.restart().await?;
    assert_eq!(v2_status(&client, &registry).await, Some(200));
    let fetched = client.get(&blob_url).send().await?;
    assert_eq!(fetched.status().as_u16(), 200);
    assert_eq!(&fetched.bytes().await?[..], blob);
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    run(Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid"])
        .args(args))
}

#[tokio::test]
async fn git_daemon_takes_pushes_and_survives_restart() -> TestResult {
    let mut daemon = GitDaemon::start().await?;
    let url = daemon.create_bare_repo("team/app")?;
    assert_eq!(url, format!("git://127.0.0.1:{}/team/app.git", daemon.port()));
    assert!(daemon.repo_path("team/app").join("HEAD").exists());
    assert!(daemon.create_bare_repo("../escape").is_err());

    let work = tempfile::tempdir()?;
    git(work.path(), &["clone", "--quiet", &url, "app"])?;
    let checkout = work.path().join("app");
    std::fs::write(checkout.join("deploy.yaml"), "replicas: 1\n")?;
    git(&checkout, &["add", "deploy.yaml"])?;
    git(&checkout, &["commit", "--quiet", "-m", "first"])?;
    git(&checkout, &["push", "--quiet", "origin", "HEAD:main"])?;
    let head = git(&checkout, &["rev-parse", "HEAD"])?;

    let remote = git(work.path(), &["ls-remote", &url])?;
    assert!(remote.contains(&format!("{}\trefs/heads/main", head.trim())), "{remote}");

    daemon.kill().await?;
    assert!(git(work.path(), &["ls-remote", &url]).is_err());
    daemon.restart().await?;
    let remote = git(work.path(), &["ls-remote", &url])?;
    assert!(remote.contains(head.trim()), "{remote}");
    Ok(())
}

#[tokio::test]
async fn service_process_stops_on_sigterm() -> TestResult {
    let mut sleeper = ServiceProcess::spawn_with_args("sleep", ["30"], &[])?;
    assert!(sleeper.is_running());
    sleeper.sigterm()?;
    let status = sleeper.wait(Duration::from_secs(5)).await?;
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(15));
    assert!(!sleeper.is_running());
    Ok(())
}

#[tokio::test]
async fn service_process_captures_output_and_env() -> TestResult {
    let envs = [("GREETING".to_owned(), "hello".to_owned())];
    let mut service = ServiceProcess::spawn_with_args("sh", ["-c", "echo $GREETING; echo oops >&2; exit 3"], &envs)?;
    let status = service.wait(Duration::from_secs(5)).await?;
    assert_eq!(status.code(), Some(3));
    let tail = service.output_tail(2);
    assert_eq!(tail, "hello\noops");

    // An exited service fails the readiness wait at once, with its output.
    let url = format!("http://127.0.0.1:{}/healthz", free_port());
    let err = service.wait_http_ok(&url, Duration::from_secs(30)).await.expect_err("nothing listens");
    assert!(err.to_string().contains("oops"), "{err}");
    Ok(())
}

#[tokio::test]
async fn service_process_wait_http_ok_sees_a_server() -> TestResult {
    let mut done = ServiceProcess::spawn("true", &[])?;
    assert!(done.wait(Duration::from_secs(5)).await?.success());

    let registry = Registry::start().await?;
    let sleeper = ServiceProcess::spawn_with_args("sleep", ["30"], &[])?;
    let url = format!("{}/v2/", registry.url());
    sleeper.wait_http_ok(&url, Duration::from_secs(5)).await?;
    sleeper.sigkill()?;
    Ok(())
}
