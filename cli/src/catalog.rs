//! `slipctl catalog validate FILE… [--source owner/name=DIR]` and `slipctl catalog show`:
//! the app catalog checked offline with the same code the services run (`slipway-catalog`),
//! so a GitOps repository's own CI can refuse a broken catalog before it is merged.
//!
//! Each FILE is a catalog root (`slipway.yaml`); its directory stands for the repository
//! root, where `include` globs are resolved. Generators are expanded against `--source`
//! directories; without one a generator is only checked for its syntax and listed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use slipway_catalog::{Catalog, DirTree, Tree as _};
use slipway_runtime::catalog::CatalogStore;

use crate::client::Failure;
use crate::commands::Print;

/// The catalog subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// Check catalog files; prints `file:line: key: reason` per problem, exit 1 if any.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A source repository's checkout for generators, `owner/name=DIR` (repeatable).
        #[arg(long, value_name = "OWNER/NAME=DIR")]
        source: Vec<String>,
    },
    /// The compiled, generator-expanded catalog in force (or of --file): apps with their
    /// stages and who may approve them.
    Show {
        /// Only this app.
        app: Option<String>,
        /// A catalog root file instead of the revision in force.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, value_name = "OWNER/NAME=DIR")]
        source: Vec<String>,
        /// NATS server URL.
        #[arg(long, env = "SLIPWAY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats: String,
    },
    /// The revisions of the catalog, oldest first (the last is in force).
    History {
        /// NATS server URL.
        #[arg(long, env = "SLIPWAY_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats: String,
    },
}

fn sources(flags: &[String]) -> Result<BTreeMap<String, Vec<String>>, Failure> {
    let mut out = BTreeMap::new();
    for flag in flags {
        let (repo, dir) = flag
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--source {flag:?}: expected OWNER/NAME=DIR")))?;
        if !Path::new(dir).is_dir() {
            return Err(Failure::Usage(format!("--source {flag:?}: {dir} is not a directory")));
        }
        out.insert(repo.to_owned(), DirTree(PathBuf::from(dir)).paths());
    }
    Ok(out)
}

fn compile(file: &Path, sources: &BTreeMap<String, Vec<String>>) -> Result<Result<Catalog, Vec<String>>, Failure> {
    let root = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::Usage(format!("{}: not a file", file.display())))?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let shown = |name: &str| if dir == Path::new(".") { name.to_owned() } else { dir.join(name).display().to_string() };
    let lookup = |repo: &str| sources.get(repo).cloned();
    Ok(slipway_catalog::build(&DirTree(dir.clone()), root, &lookup).map_err(|invalid| {
        invalid
            .0
            .into_iter()
            .map(|mut p| {
                p.file = shown(&p.file);
                p.to_string()
            })
            .collect()
    }))
}

async fn store(url: &str) -> Result<CatalogStore, Failure> {
    let js = crate::client::jetstream(url).await?;
    if js.get_key_value(slipway_runtime::catalog::BUCKET).await.is_err() {
        return Err(Failure::Api("no catalog has been published yet".into()));
    }
    CatalogStore::open(&js, 1).await.map_err(|e| Failure::Api(e.to_string()))
}

/// Runs `command`: validate offline, show and history from NATS (or show --file offline).
pub async fn run(command: CatalogCommand, print: Print) -> Result<(), Failure> {
    match command {
        CatalogCommand::History { nats } => {
            let history = store(&nats).await?.history().await.map_err(|e| Failure::Api(e.to_string()))?;
            print.show(&history, || {
                let mut out = format!("{:<6} {:<26} {:<12} {:>6}  {}\n", "REV", "PUBLISHED", "COMMIT", "APPS", "FROM");
                for r in &history {
                    let at = r.published_at.get(..19).unwrap_or(&r.published_at);
                    let commit = r.commit.get(..12).unwrap_or(&r.commit);
                    out.push_str(&format!("{:<6} {at:<26} {commit:<12} {:>6}  {}\n", r.sequence, r.apps, r.repository));
                }
                out.trim_end().to_owned()
            })
        }
        CatalogCommand::Show { app, file: None, nats, .. } => {
            let store = store(&nats).await?;
            let revision = store.current().await.map_err(|e| Failure::Api(e.to_string()))?;
            let revision = revision.ok_or_else(|| Failure::Api("no catalog has been published yet".into()))?;
            let catalog = store.load(&revision).await.map_err(|e| Failure::Api(e.to_string()))?;
            show(&catalog, app.as_deref(), print)
        }
        offline => run_offline(offline, print),
    }
}

fn show(catalog: &Catalog, app: Option<&str>, print: Print) -> Result<(), Failure> {
    let apps: Vec<_> = catalog.apps.values().filter(|a| app.is_none_or(|name| a.name == name)).collect();
    if let Some(name) = app
        && apps.is_empty()
    {
        return Err(Failure::Api(format!("no app {name} in the catalog")));
    }
    print.show(&apps, || table(catalog, &apps))
}

fn run_offline(command: CatalogCommand, print: Print) -> Result<(), Failure> {
    match command {
        CatalogCommand::Validate { files, source } => {
            let sources = sources(&source)?;
            let mut problems = 0;
            for file in &files {
                match compile(file, &sources)? {
                    Ok(catalog) => {
                        let unexpanded =
                            catalog.unexpanded.iter().map(|g| format!(" (not expanded: {g})")).collect::<String>();
                        println!(
                            "{}: ok: {} apps, {} pipelines, {} teams, {} files{unexpanded}",
                            file.display(),
                            catalog.apps.len(),
                            catalog.pipelines.len(),
                            catalog.teams.len(),
                            catalog.files.len()
                        );
                    }
                    Err(lines) => {
                        problems += lines.len();
                        for line in lines {
                            println!("{line}");
                        }
                    }
                }
            }
            if problems > 0 {
                return Err(Failure::Api(format!("{problems} problem(s) in the catalog")));
            }
            Ok(())
        }
        CatalogCommand::Show { app, file: Some(file), source, .. } => {
            let catalog = match compile(&file, &sources(&source)?)? {
                Ok(catalog) => catalog,
                Err(lines) => {
                    return Err(Failure::Api(format!("the catalog does not validate:\n{}", lines.join("\n"))));
                }
            };
            show(&catalog, app.as_deref(), print)
        }
        CatalogCommand::Show { file: None, .. } | CatalogCommand::History { .. } => Ok(()),
    }
}

fn table(catalog: &Catalog, apps: &[&slipway_catalog::CompiledApp]) -> String {
    let mut out = String::new();
    for app in apps {
        let team = app.team.as_deref().unwrap_or("-");
        out.push_str(&format!("{}  team {team}  pipeline {}  image {}\n", app.name, app.pipeline, app.image));
        out.push_str(&format!("  source {} {:?}  from {}\n", app.source.repository, app.source.paths, app.origin));
        for stage in &app.stages {
            let who = catalog.approvers(&app.name, &stage.stage.name);
            let gate = match stage.stage.policy {
                slipway_catalog::model::Policy::Auto => "auto".to_owned(),
                slipway_catalog::model::Policy::Approval => {
                    format!(
                        "{} approval(s) by {}",
                        stage.stage.approvals,
                        if who.is_empty() { "-".into() } else { who.join(", ") }
                    )
                }
            };
            out.push_str(&format!(
                "  {:<10} {gate:<40} {}:{}\n",
                stage.stage.name, stage.deploy.repository, stage.deploy.path
            ));
        }
    }
    out.trim_end().to_owned()
}
