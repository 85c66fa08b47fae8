//! `slipctl`, the Slipway admin client. It calls the promoter's admin gRPC API
//! (`slipway.v1.AdminService`) with a bearer token: the apps × stages matrix, pipeline runs,
//! a live event stream, and approve / reject / promote / roll back / hold / release.
//!
//! The token comes from `--token`, `SLIPWAY_TOKEN` or the config file
//! (`~/.config/slipway/slipctl.toml`, see [`settings`]). Output is for people (coloured on a
//! terminal) or JSON with `--json`. Exit codes: 0 ok, 1 refused by the server, 2 usage,
//! 3 server unreachable, 4 token not accepted or role too low.

mod catalog;
mod client;
mod commands;
mod dlq;
mod logs;
mod output;
mod settings;
mod spool;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "slipctl", version, about = "Slipway admin client")]
#[command(
    after_help = "Exit codes: 0 ok, 1 refused by the server, 2 usage, 3 server unreachable, 4 token not accepted \
                        or role too low."
)]
struct Cli {
    /// Admin API URL of the promoter [default: the config file's, else http://127.0.0.1:9443].
    #[arg(long, env = "SLIPWAY_ADMIN_URL", global = true)]
    server: Option<String>,
    /// Bearer token [default: the config file's].
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Config file [default: ~/.config/slipway/slipctl.toml].
    #[arg(long, env = "SLIPCTL_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apps × stages with their versions, health, holds and waiting approvals.
    Status {
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Only apps of this team (the app catalog's).
        #[arg(long)]
        team: Option<String>,
        /// Only apps whose pipeline has this stage.
        #[arg(long)]
        stage: Option<String>,
        /// Only apps "waiting" for an approval, or "removed" from the catalog.
        #[arg(long)]
        state: Option<String>,
        /// At most this many apps (server-side paging; 0: all).
        #[arg(long, default_value_t = 0)]
        page_size: u32,
        /// The page after the one that printed this token.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Pipeline runs, newest first.
    Runs {
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Follow events live (Ctrl-C stops).
    Watch {
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        stage: Option<String>,
        /// Replay from this stream sequence first.
        #[arg(long)]
        from_seq: Option<u64>,
        /// Subject filter, e.g. `slipway.promotion.>` (repeatable).
        #[arg(long)]
        subject: Vec<String>,
    },
    /// Approve the promotion waiting for APP in STAGE.
    Approve {
        app: String,
        stage: String,
        /// A specific promotion id instead of the one waiting.
        #[arg(long)]
        promotion: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject the promotion waiting for APP in STAGE; its run fails.
    Reject {
        app: String,
        stage: String,
        #[arg(long)]
        promotion: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Promote APP into STAGE (the previous stage's version, or --tag).
    Promote {
        app: String,
        stage: String,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        /// Promote inside a freeze window (admin tokens only; audited).
        #[arg(long)]
        override_freeze: bool,
        /// Promote past the stage's scan policy (admin tokens only; needs --reason; audited).
        #[arg(long)]
        override_scan: bool,
    },
    /// Roll APP in STAGE back to its last healthy version (or --tag) and hold the stage.
    Rollback {
        app: String,
        stage: String,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Stop automatic promotion of APP into STAGE (every stage without one).
    Hold {
        app: String,
        stage: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The notifier's dead letters: notifications that failed every attempt.
    Dlq {
        /// Admin URL of the notifier.
        #[arg(long, env = "SLIPWAY_NOTIFIER_URL", default_value = "http://127.0.0.1:9104")]
        notifier: String,
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// The app catalog, offline: validate files (as a GitOps repository's CI would), show apps.
    Catalog {
        #[command(subcommand)]
        command: catalog::CatalogCommand,
    },
    /// Ingest's spool: entries waiting for NATS and dead letters (ingest admin port).
    Spool {
        /// Admin URL of ingest.
        #[arg(long, env = "SLIPWAY_INGEST_URL", default_value = "http://127.0.0.1:9101")]
        ingest: String,
        #[command(subcommand)]
        command: spool::SpoolCommand,
    },
    /// The whole body of webhook delivery ID, as ingest kept it (pushes too large for one event).
    Delivery {
        id: String,
        /// Write it to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// NATS server URL.
        #[arg(long, env = "SLIPWAY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats: String,
    },
    /// A build's log, read from NATS (the builder writes it while the build runs).
    Logs {
        build_id: String,
        /// Keep printing until the build ends.
        #[arg(long, short)]
        follow: bool,
        /// NATS server URL.
        #[arg(long, env = "SLIPWAY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats: String,
    },
    /// Lift a hold; waiting promotions go on.
    Release {
        app: String,
        stage: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Run STAGE's verification checks again against the version APP runs there.
    Verify {
        app: String,
        stage: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let print = commands::Print { json: cli.json, style: output::Style::detect() };
    let result = async {
        if let Command::Dlq { notifier, command } = cli.command {
            return dlq::run(&notifier, command, print).await;
        }
        if let Command::Catalog { command } = cli.command {
            return catalog::run(command, print).await;
        }
        if let Command::Spool { ingest, command } = cli.command {
            return spool::run(&ingest, command, print).await;
        }
        if let Command::Delivery { id, output, nats } = cli.command {
            return spool::original(&nats, &id, output.as_deref()).await;
        }
        if let Command::Logs { build_id, follow, nats } = cli.command {
            return logs::run(&nats, &build_id, follow, print).await;
        }
        let settings = settings::resolve(cli.server, cli.token, cli.config)?;
        let api = client::Api::connect(settings).await?;
        commands::run(&api, cli.command, print).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("slipctl: {}", failure.message());
            ExitCode::from(failure.exit_code())
        }
    }
}
