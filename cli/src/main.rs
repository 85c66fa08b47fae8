//! `slipctl`, the Slipway admin client. It talks to the promoter's admin gRPC API
//! (`slipway.v1.AdminService`) with a bearer token.
//!
//! This first version has `status`; the other commands (runs, watch, approve, promote,
//! rollback, hold, release, logs, dlq) come with the promoter's admin API.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use slipway_proto::v1::{ListAppsRequest, admin_service_client::AdminServiceClient};
use tonic::metadata::MetadataValue;

#[derive(Debug, Parser)]
#[command(name = "slipctl", version, about = "Slipway admin client")]
struct Cli {
    /// Admin API address of the promoter.
    #[arg(long, env = "SLIPWAY_ADMIN_URL", default_value = "http://127.0.0.1:9443", global = true)]
    server: String,
    /// Bearer token.
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apps × stages with their versions.
    Status {
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let channel = tonic::transport::Endpoint::from_shared(cli.server.clone())
        .context("--server is not a valid URL")?
        .connect()
        .await
        .with_context(|| format!("cannot reach the Slipway admin API at {}", cli.server))?;
    let token: Option<MetadataValue<_>> = match &cli.token {
        Some(t) => Some(format!("Bearer {t}").parse().context("the token has characters a header cannot carry")?),
        None => None,
    };
    let mut client = AdminServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(t) = &token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    });
    match cli.command {
        Command::Status { app } => {
            let resp = client
                .list_apps(ListAppsRequest { app: app.unwrap_or_default() })
                .await
                .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
                .into_inner();
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else {
                println!("{:<24} {}", "APP", resp.stages.join("  "));
                for a in resp.apps {
                    let cells: Vec<String> = a
                        .stages
                        .iter()
                        .map(|s| s.desired.as_ref().map(|i| i.tag.clone()).unwrap_or_else(|| "-".into()))
                        .collect();
                    println!("{:<24} {}", a.app, cells.join("  "));
                }
            }
        }
    }
    Ok(())
}
