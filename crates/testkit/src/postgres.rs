//! A dedicated PostgreSQL cluster (initdb + postgres) in a temporary directory, and one cluster
//! shared by all tests of a test process that hands out a fresh database per call.
//!
//! PostgreSQL refuses to run as root, and tests and CI run as root; then every server-side
//! binary runs as the Debian `postgres` user through `setpriv`, which (unlike `runuser`, which
//! forks and stays as a parent) execs the binary: the process we spawn and signal *is* the
//! postmaster.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::free_port;
use crate::process;
use crate::watchdog::Watchdog;

/// A PostgreSQL cluster of its own on a free loopback port, trust authentication for the
/// `postgres` superuser, durability switched off for speed (`fsync`, `full_page_writes` and
/// `synchronous_commit` off). Its data directory survives [`kill`](Postgres::kill) and
/// [`restart`](Postgres::restart), but a commit acknowledged within about 0.6 s (three
/// `wal_writer_delay`s) before a kill may be lost; `ALTER DATABASE <name> SET
/// synchronous_commit = on` (the command-line default cannot be changed with `ALTER SYSTEM`)
/// makes that database's commits survive a kill.
pub struct Postgres {
    // Fields drop in order: the postmaster dies before its directory is removed.
    daemon: Daemon,
    port: u16,
    bindir: PathBuf,
    dir: TempDir,
}

impl Postgres {
    /// Runs initdb, starts the postmaster and waits until it accepts connections.
    pub async fn start() -> Result<Self> {
        let bindir = bindir()?;
        let user = RunAs::detect()?;
        process::retry_port_clash(|| Self::try_start(&bindir, &user)).await
    }

    async fn try_start(bindir: &Path, user: &RunAs) -> Result<Self> {
        let dir =
            tempfile::Builder::new().prefix("slipway-pg-").tempdir().map_err(Error::io("create postgres temp dir"))?;
        // Before initdb, which a dying test process would otherwise leave writing.
        let mut watchdog = Watchdog::spawn(dir.path())?;
        let (data, sock) = (dir.path().join("data"), dir.path().join("sock"));
        std::fs::create_dir(&sock).map_err(Error::io("create postgres socket dir"))?;
        user.chown(dir.path())?;

        let initdb = [
            "-D".into(),
            data.clone().into(),
            "-A".into(),
            "trust".into(),
            "-U".into(),
            "postgres".into(),
            "--no-sync".into(),
            "-E".into(),
            "UTF8".into(),
            // The C locale exists everywhere and matches any encoding.
            "--no-locale".into(),
        ];
        let (program, args) = user.command(&bindir.join("initdb"), initdb);
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(dir.path());
        process::run_watched(&mut cmd, Some(&mut watchdog)).await?;

        let port = free_port();
        let settings = [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
        ];
        let mut server: Vec<OsString> =
            vec!["-D".into(), data.into(), "-p".into(), port.to_string().into(), "-k".into(), sock.into()];
        for setting in settings {
            server.extend(["-c".into(), setting.into()]);
        }
        let (program, args) = user.command(&bindir.join("postgres"), server);
        let log = dir.path().join("postgres.log");
        let daemon = Daemon::new("postgres", program, args, dir.path(), log, watchdog)
            // SIGTERM is "smart" shutdown, which waits for every client (a test's pool) to leave.
            .stop_signal("INT")
            .kill_children();
        let mut pg = Postgres { daemon, port, bindir: bindir.to_owned(), dir };
        let ready = pg.ready_probe();
        pg.daemon.start(|| ready.check()).await?;
        Ok(pg)
    }

    fn ready_probe(&self) -> ReadyProbe {
        ReadyProbe { pg_isready: self.bindir.join("pg_isready"), port: self.port }
    }

    /// Creates a database with a unique name; returns its URL,
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub async fn create_database(&self) -> Result<String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\"")).await?;
        Ok(self.url(&name))
    }

    /// Runs SQL through `psql` as the superuser; returns its unaligned, tuples-only output.
    pub async fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new(self.bindir.join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-U", "postgres", "-p", &self.port.to_string(), "-d", database])
            .args(["-c", sql]);
        process::run(&mut cmd).await
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The port the postmaster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory with the PostgreSQL binaries in use.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The postmaster's log file.
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// The last `lines` lines of the postmaster's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// SIGKILL to the postmaster and all its backends at once: a crash. The next start runs
    /// crash recovery.
    pub async fn kill(&mut self) -> Result<()> {
        self.daemon.kill().await
    }

    /// Fast shutdown (SIGINT: clients are disconnected, data flushed); SIGKILL after 10 s.
    pub async fn stop(&mut self) -> Result<()> {
        self.daemon.stop().await
    }

    /// Starts the postmaster again on the same port and data directory (stopping it first if
    /// it runs) and waits until it accepts connections.
    pub async fn restart(&mut self) -> Result<()> {
        self.daemon.stop().await?;
        let ready = self.ready_probe();
        self.daemon.restart(|| ready.check()).await
    }

    /// Whether the postmaster is alive.
    pub fn is_running(&self) -> bool {
        self.daemon.is_running()
    }

    /// The postmaster's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }
}

/// Ready means: a TCP connect succeeds and `pg_isready` agrees (the port opens before the
/// startup recovery ends).
struct ReadyProbe {
    pg_isready: PathBuf,
    port: u16,
}

impl ReadyProbe {
    async fn check(&self) -> bool {
        if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            return false;
        }
        let mut cmd = Command::new(&self.pg_isready);
        cmd.args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"]).args([
            "-t",
            "2",
            "-p",
            &self.port.to_string(),
        ]);
        process::run(&mut cmd).await.is_ok()
    }
}

/// Who the server-side binaries run as.
enum RunAs {
    /// Ourselves: we are not root.
    Me,
    /// The `postgres` user, through `setpriv`, because we are root.
    Postgres { setpriv: PathBuf },
}

impl RunAs {
    fn detect() -> Result<Self> {
        if !process::is_root() {
            return Ok(RunAs::Me);
        }
        let setpriv = process::find_binary("setpriv", "util-linux")?;
        let mut id = std::process::Command::new("id");
        id.args(["-u", "postgres"]);
        if process::run_sync(&mut id).is_err() {
            return Err(Error::NoPostgresUser);
        }
        Ok(RunAs::Postgres { setpriv })
    }

    fn command(&self, program: &Path, args: impl IntoIterator<Item = OsString>) -> (PathBuf, Vec<OsString>) {
        match self {
            RunAs::Me => (program.to_owned(), args.into_iter().collect()),
            RunAs::Postgres { setpriv } => {
                let mut all = process::args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]);
                all.push(program.into());
                all.extend(args);
                (setpriv.clone(), all)
            }
        }
    }

    /// Hands the temporary directory to the `postgres` user. Its parent (the system temp dir)
    /// must be traversable by that user, which `/tmp` is.
    fn chown(&self, dir: &Path) -> Result<()> {
        if let RunAs::Postgres { .. } = self {
            let mut chown = std::process::Command::new("chown");
            chown.arg("-R").arg("postgres:postgres").arg(dir);
            process::run_sync(&mut chown)?;
        }
        Ok(())
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has a `postgres`, or
/// `SLIPWAY_PG_BINDIR` when set.
pub fn bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SLIPWAY_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let missing = || Error::MissingBinary {
        binary: "/usr/lib/postgresql/<version>/bin/postgres".to_owned(),
        package: "postgresql",
    };
    let entries = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| missing())?;
    entries
        .filter_map(|e| {
            let entry = e.ok()?;
            let version: Vec<u32> =
                entry.file_name().to_str()?.split('.').map(str::parse).collect::<Result<_, _>>().ok()?;
            let bin = entry.path().join("bin");
            process::is_executable(&bin.join("postgres")).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
        .ok_or_else(missing)
}

static SHARED: OnceCell<Postgres> = OnceCell::const_new();

/// A fresh database (its URL) in the one cluster this test process shares among its tests.
///
/// The cluster is started on first use and, being a `static`, never dropped. So that it does not
/// outlive the test process, the watchdog that every server has (a small `sh` that notices the
/// test process's end) then kills the postmaster and its backends and removes the cluster's
/// directory under the system temp dir. Only if the watchdog itself is killed does a
/// `slipway-pg-*` directory stay behind in the temp dir.
pub async fn shared_database() -> Result<String> {
    let pg = SHARED.get_or_try_init(Postgres::start).await?;
    pg.create_database().await
}
