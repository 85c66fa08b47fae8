//! The Kubernetes side of the health gate: the client, and for one promotion a list+watch of
//! the one object that tells its health ([`kube::runtime::watcher::watch_object`], which
//! resumes a dropped watch from the last resourceVersion and re-lists when that is gone),
//! read through [`judge`](super::judge) into [`Look`]s.

use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use slipway_mesh::v1::ImageRef;

use super::config::{HealthConfig, Target};
use super::judge::{self, Observation};

/// One look at the watched object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    Seen(Observation),
    /// The object is not there (never created, or deleted); the text names it.
    Missing(String),
}

/// The looks at one object, for ever; errors are transient (the watcher recovers, with
/// client-go's backoff).
pub type Looks = BoxStream<'static, Result<Look, watcher::Error>>;

/// The API client: `health.kube_url` as plain configuration (a `kubectl proxy` or a test's
/// fake API server), else in-cluster or kubeconfig, as `kubectl` would choose.
pub async fn client(config: &HealthConfig) -> anyhow::Result<kube::Client> {
    let config = match &config.kube_url {
        Some(url) => kube::Config::new(url.parse()?),
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// The `argoproj.io/v1alpha1` `Application` resource, read as a dynamic object.
pub fn application_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"))
}

/// The `argoproj.io/v1alpha1` `Rollout` resource (Argo Rollouts), read as a dynamic object.
pub fn rollout_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"))
}

/// Watches `target` for a promotion that wrote `commit` with `image`.
pub fn observe(client: kube::Client, target: &Target, commit: String, image: Option<ImageRef>) -> Looks {
    match target {
        // Nothing to look at: the watcher reports a pushed commit without looking.
        Target::Commit => futures::stream::empty().boxed(),
        Target::Application { namespace, name } => {
            let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &application_resource());
            let what = format!("application {namespace}/{name}");
            watcher::watch_object(api, name)
                .default_backoff()
                .map_ok(move |object| match object {
                    Some(app) => Look::Seen(judge::application(&app.data, &commit)),
                    None => Look::Missing(what.clone()),
                })
                .boxed()
        }
        Target::Deployment { namespace, name, container } => {
            let api: Api<Deployment> = Api::namespaced(client, namespace);
            let what = format!("deployment {namespace}/{name}");
            let (image, container) = (image.unwrap_or_default(), container.clone());
            watcher::watch_object(api, name)
                .default_backoff()
                .map_ok(move |object| match object {
                    Some(d) => Look::Seen(judge::deployment(&d, &image, container.as_deref())),
                    None => Look::Missing(what.clone()),
                })
                .boxed()
        }
        Target::Rollout { namespace, name } => {
            let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &rollout_resource());
            let what = format!("rollout {namespace}/{name}");
            let image = image.unwrap_or_default();
            watcher::watch_object(api, name)
                .default_backoff()
                .map_ok(move |object| match object {
                    Some(rollout) => Look::Seen(judge::rollout(&rollout.data, &image)),
                    None => Look::Missing(what.clone()),
                })
                .boxed()
        }
    }
}
