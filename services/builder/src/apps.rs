//! The apps this builder builds: its own `[[apps]]`, or the app catalog in force (published
//! by ingest in NATS, followed live). A build takes its app's settings when it is planned and
//! keeps them: a catalog revision arriving meanwhile applies to the next build.

use crate::config::AppConfig;
use slipway_catalog::CompiledApp;
use slipway_runtime::catalog::{CatalogStore, Live};
use std::path::PathBuf;

/// Where apps come from.
#[derive(Debug, Clone)]
pub enum Apps {
    /// `[[apps]]` of the builder's configuration.
    Fixed(Vec<AppConfig>),
    /// The catalog in force, and the bucket to catch up from.
    Catalog(Live, Box<CatalogStore>),
}

impl Apps {
    /// The settings of app `name`, as they are now.
    pub fn get(&self, name: &str) -> Option<AppConfig> {
        match self {
            Apps::Fixed(apps) => apps.iter().find(|a| a.name.as_str() == name).cloned(),
            Apps::Catalog(live, _) => live.get().catalog.apps.get(name).and_then(from_catalog),
        }
    }

    /// Where an unknown app was looked for, for the refusal.
    pub fn origin(&self) -> &'static str {
        match self {
            Apps::Fixed(_) => "this builder's [[apps]]",
            Apps::Catalog(..) => "the app catalog in force",
        }
    }

    /// Catches up with the bucket when a request was made under a newer revision than the
    /// one held (the watch may lag the ingest that published it by a moment).
    pub async fn catch_up(&self, revision: u64) {
        if let Apps::Catalog(live, store) = self
            && revision > live.sequence()
            && let Err(e) = live.refresh(store).await
        {
            tracing::warn!(error = %e, revision, "catalog not refreshed; planning under the revision held");
        }
    }
}

/// A catalog app as build settings. Moving tags move on builds of the app's one branch when
/// `source.branches` names exactly one without wildcards, else of `main`.
pub fn from_catalog(app: &CompiledApp) -> Option<AppConfig> {
    let literal = |b: &String| !b.contains(['*', '?', '[', '{']);
    let branch = match app.source.branches.as_slice() {
        [only] if literal(only) => only.clone(),
        _ => "main".to_owned(),
    };
    let moving_tags =
        app.build.moving_tags.iter().filter_map(|t| slipway_mesh::names::ImageTag::parse(t).ok()).collect();
    Some(AppConfig {
        name: slipway_mesh::names::AppName::parse(&app.name).ok()?,
        repository: app.clone_url.clone(),
        context: PathBuf::from(&app.build.context),
        dockerfile: app.build.dockerfile.as_ref().map(PathBuf::from),
        image: app.image.clone(),
        moving_tags,
        branch,
        build_args: app.build.args.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_catalog::DirTree;

    #[test]
    fn catalog_apps_become_build_settings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/catalog/example");
        let catalog = slipway_catalog::build(&DirTree(dir), "slipway.yaml", &|_| None).expect("valid");
        let writer = from_catalog(&catalog.apps["writer"]).expect("writer");
        assert_eq!(writer.repository, "https://github.com/acme/mono.git");
        assert_eq!(
            (writer.context.to_str(), writer.dockerfile_path().to_str()),
            (Some("apps/writer"), Some("apps/writer/Dockerfile"))
        );
        assert_eq!((writer.branch.as_str(), writer.moving_tags.len()), ("main", 1));
        assert_eq!(writer.image, "registry.example/acme/writer");
        let apps = Apps::Fixed(vec![writer]);
        assert!(apps.get("writer").is_some() && apps.get("nope").is_none());
        assert_eq!(apps.origin(), "this builder's [[apps]]");
    }
}
