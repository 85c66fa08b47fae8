//! Git repositories on the test kit's `git daemon`, seeded and read back with the `git`
//! command, for the tests of the GitOps write-back and of the services that use it.

use crate::GitDaemon;

/// Runs git with a fixed identity; panics with its stderr on failure.
pub fn git(args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=seed", "-c", "user.email=seed@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The bare repository `name` on `daemon`, as a `--git-dir` argument.
pub fn git_dir(daemon: &GitDaemon, name: &str) -> String {
    daemon.repo_path(name).to_str().expect("utf-8 path").to_owned()
}

/// A bare repository `name` on the daemon whose `main` holds `files` (path, text); returns
/// its URL. Every update of `main` goes to the reflog (the no-force-push checks read it).
pub fn seed_repo(daemon: &GitDaemon, name: &str, files: &[(String, String)]) -> String {
    let url = daemon.create_bare_repo(name).expect("bare repo");
    git(&["--git-dir", &git_dir(daemon, name), "config", "core.logAllRefUpdates", "always"]);
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().to_str().expect("utf-8 path");
    git(&["init", "-q", dir]);
    for (path, text) in files {
        let file = work.path().join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, text).expect("write");
    }
    git(&["-C", dir, "add", "-A"]);
    git(&["-C", dir, "commit", "-q", "-m", "seed"]);
    git(&["-C", dir, "push", "-q", &url, "main"]);
    url
}

/// `git show <rev>:<path>` in the bare repository `name`.
pub fn remote_show(daemon: &GitDaemon, name: &str, rev: &str, path: &str) -> String {
    git(&["--git-dir", &git_dir(daemon, name), "show", &format!("{rev}:{path}")])
}

/// The commit `branch` points at in the bare repository `name`.
pub fn remote_head(daemon: &GitDaemon, name: &str, branch: &str) -> String {
    git(&["--git-dir", &git_dir(daemon, name), "rev-parse", &format!("refs/heads/{branch}")]).trim().to_owned()
}
