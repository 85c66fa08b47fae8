//! Pushing over `git://` without libgit2's transport: one request written at once on a
//! `TCP_NODELAY` socket, carrying only the objects the new commit adds.
//!
//! Why: libgit2 writes the push commands and then the pack in separate small writes on a
//! socket with Nagle's algorithm on. The second write waits for the ACK of the first, and the
//! receiving side (waiting for the rest of the request) delays that ACK by 40 ms on Linux, so
//! every push to a `git daemon` stalled for about 40 ms, more than the rest of the push. Here
//! the commands, the flush and the pack go out in one write, and Nagle is off.
//!
//! The pack is built from a walk of the new tree against the parent's, entering only
//! subtrees whose ids differ, instead of libgit2's marking of the whole previous tree (all
//! the repository's files) as already present. That is only right when the remote has the
//! parent, so the caller says where the branch must be (the parent, or absent for a new
//! branch off a fetched head); when the advertised head is anything else, nothing is sent and
//! the push is answered as rejected, which makes the writer refetch, as for a rejected push.
//!
//! Protocol: the v0 `git-receive-pack` exchange of git's pack-protocol documentation: the
//! server advertises its refs and capabilities, the client sends `old new ref` commands, a
//! flush and the pack, the server answers with `report-status`. The connection is opened
//! while the commit is being made ([`Opening`]), so the server's start-up is off the path.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use git2::{ObjectType, Oid, Repository, Tree};

use super::RepoKey;
use crate::timing;

/// How long a connect, read or write may take before the push counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `url` is pushed by [`push`] (plain `git://`).
pub(super) fn handles(url: &str) -> bool {
    url.starts_with("git://")
}

/// Pushes `commit` to the branch of `key`, which must be at `from` (`None`: must not exist),
/// without force. `Err` carries why it did not land, as libgit2's push does: a rejection
/// (including a remote branch not at `from`) or an unreachable remote.
pub(super) fn push(repo: &Repository, key: &RepoKey, from: Option<Oid>, commit: Oid) -> Result<(), String> {
    Session::open(key)?.push(repo, from, commit)
}

/// A [`Session`] being opened on a thread of its own, so that the server's fork, exec and
/// ref advertisement overlap the making of the commit.
pub(super) struct Opening(std::thread::JoinHandle<Result<Session, String>>);

impl Opening {
    pub(super) fn start(key: &RepoKey) -> Opening {
        let key = key.clone();
        Opening(std::thread::spawn(move || Session::open(&key)))
    }

    pub(super) fn session(self) -> Result<Session, String> {
        self.0.join().unwrap_or_else(|_| Err("git protocol: the connecting thread panicked".into()))
    }
}

/// A `git-receive-pack` exchange whose refs are advertised, waiting for its commands. Dropped
/// without pushing, it tells the server there is nothing to push, so the server ends quietly.
pub(super) struct Session {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    head_ref: String,
    advertised: Advertised,
    finished: bool,
}

impl Session {
    /// Connects and reads the advertisement.
    pub(super) fn open(key: &RepoKey) -> Result<Session, String> {
        let started = Instant::now();
        let (authority, path) = split_url(&key.url)?;
        let host = authority.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()));
        let (host, address) = match host {
            Some((host, _)) => (host, authority.to_owned()),
            None => (authority, format!("{authority}:9418")),
        };
        let address = address.to_socket_addrs().map_err(|e| format!("resolve {host}: {e}"))?.next();
        let address = address.ok_or_else(|| format!("resolve {host}: no address"))?;
        let stream = TcpStream::connect_timeout(&address, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        let mut writer = stream.try_clone().map_err(io)?;
        let mut reader = BufReader::new(stream);
        writer.write_all(&pkt(format!("git-receive-pack {path}\0host={host}\0").as_bytes())).map_err(io)?;
        let head_ref = key.head_ref();
        let advertised = read_advertisement(&mut reader, &head_ref)?;
        timing::record(timing::GIT_PUSH_CONNECT, started.elapsed());
        Ok(Session { writer, reader, head_ref, advertised, finished: false })
    }

    /// Sends the command and the pack for `commit`, if the branch is at `from`, and reads the
    /// report.
    pub(super) fn push(mut self, repo: &Repository, from: Option<Oid>, commit: Oid) -> Result<(), String> {
        let head_ref = self.head_ref.clone();
        if self.advertised.head != from {
            // Dropping says goodbye; the writer retries on a fresh fetch.
            let name = |oid: Option<Oid>| oid.map_or_else(|| "absent".to_owned(), |h| h.to_string());
            let (at, want) = (name(self.advertised.head), name(from));
            return Err(format!("{head_ref}: the remote is at {at}, not at {want}; fetch first"));
        }
        let packing = Instant::now();
        let pack = new_objects_pack(repo, commit).map_err(|e| format!("build pack: {}", e.message()))?;
        timing::record(timing::GIT_PUSH_PACK, packing.elapsed());
        let quiet = if self.advertised.capabilities.iter().any(|c| c == "quiet") { " quiet" } else { "" };
        let old = from.unwrap_or(Oid::ZERO_SHA1);
        let mut request = pkt(format!("{old} {commit} {head_ref}\0report-status{quiet} agent=slipway\n").as_bytes());
        request.extend_from_slice(b"0000");
        request.extend_from_slice(&pack);
        let sending = Instant::now();
        self.finished = true;
        self.writer.write_all(&request).map_err(io)?;
        let reported = read_report(&mut self.reader, &head_ref);
        timing::record(timing::GIT_PUSH_REPORT, sending.elapsed());
        reported
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.writer.write_all(b"0000");
        }
    }
}

fn io(e: std::io::Error) -> String {
    format!("git protocol: {e}")
}

/// `git://host[:port]/path` → (`host[:port]`, `/path`); a `/~user` path keeps its `~` first.
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url.strip_prefix("git://").ok_or_else(|| "not a git:// url".to_owned())?;
    let slash = rest.find('/').ok_or_else(|| "git:// url without a path".to_owned())?;
    let (authority, path) = rest.split_at(slash);
    Ok((authority, if path.starts_with("/~") { &path[1..] } else { path }))
}

/// One pkt-line: four hex digits of length (itself included), then the data.
fn pkt(data: &[u8]) -> Vec<u8> {
    let mut line = format!("{:04x}", data.len() + 4).into_bytes();
    line.extend_from_slice(data);
    line
}

/// The next pkt-line's data; `None` for a flush packet.
fn read_pkt(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).map_err(|e| format!("git protocol: the remote hung up: {e}"))?;
    let len = std::str::from_utf8(&len).ok().and_then(|l| usize::from_str_radix(l, 16).ok());
    let len = len.ok_or_else(|| "git protocol: malformed pkt-line".to_owned())?;
    if len == 0 {
        return Ok(None);
    }
    let mut data = vec![0; len.checked_sub(4).ok_or_else(|| "git protocol: malformed pkt-line".to_owned())?];
    reader.read_exact(&mut data).map_err(|e| format!("git protocol: the remote hung up: {e}"))?;
    if let Some(message) = data.strip_prefix(b"ERR ") {
        return Err(format!("remote error: {}", String::from_utf8_lossy(message).trim_end()));
    }
    Ok(Some(data))
}

/// What the server advertised: where `head_ref` is, and its capabilities.
#[derive(Debug, Default, PartialEq, Eq)]
struct Advertised {
    head: Option<Oid>,
    capabilities: Vec<String>,
}

fn read_advertisement(reader: &mut impl BufRead, head_ref: &str) -> Result<Advertised, String> {
    let mut advertised = Advertised::default();
    let mut first = true;
    while let Some(line) = read_pkt(reader)? {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\n');
        let (reference, capabilities) = line.split_once('\0').unwrap_or((line, ""));
        if std::mem::take(&mut first) {
            advertised.capabilities = capabilities.split(' ').filter(|c| !c.is_empty()).map(str::to_owned).collect();
        }
        if let Some((oid, name)) = reference.split_once(' ')
            && name == head_ref
        {
            advertised.head = Oid::from_str(oid).ok();
        }
    }
    let has = |c: &str| advertised.capabilities.iter().any(|x| x == c);
    if !has("report-status") {
        return Err("git protocol: the remote does not offer report-status".into());
    }
    if advertised.capabilities.iter().any(|c| c.starts_with("object-format=") && c != "object-format=sha1") {
        return Err("git protocol: only SHA-1 repositories are supported".into());
    }
    Ok(advertised)
}

/// Reads `report-status`: `Ok` when the pack unpacked and `head_ref` was updated.
fn read_report(reader: &mut impl BufRead, head_ref: &str) -> Result<(), String> {
    let mut updated = None;
    while let Some(line) = read_pkt(reader)? {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\n');
        if let Some(status) = line.strip_prefix("unpack ") {
            if status != "ok" {
                return Err(format!("remote unpack failed: {status}"));
            }
        } else if line.strip_prefix("ok ") == Some(head_ref) {
            updated = Some(Ok(()));
        } else if let Some(rest) = line.strip_prefix("ng ")
            && let Some(reason) = rest.strip_prefix(head_ref)
        {
            updated = Some(Err(format!("{head_ref}: {}", reason.trim())));
        }
    }
    updated.unwrap_or_else(|| Err(format!("{head_ref}: no status reported")))
}

/// A pack of `commit` and the trees and blobs it has that its parent's tree does not.
fn new_objects_pack(repo: &Repository, commit: Oid) -> Result<Vec<u8>, git2::Error> {
    let mut builder = repo.packbuilder()?;
    for oid in new_objects(repo, &repo.find_commit(commit)?)? {
        builder.insert_object(oid, None)?;
    }
    let mut buf = git2::Buf::new();
    builder.write_buf(&mut buf)?;
    Ok(buf.to_vec())
}

/// `commit` and the trees and blobs it has that its (first) parent's tree does not.
pub(super) fn new_objects(repo: &Repository, commit: &git2::Commit<'_>) -> Result<Vec<Oid>, git2::Error> {
    let old = match commit.parent_count() {
        0 => None,
        _ => Some(commit.parent(0)?.tree()?),
    };
    let mut objects = vec![commit.id()];
    changed(repo, &commit.tree()?, old.as_ref(), &mut objects)?;
    Ok(objects)
}

/// `new` and, below it, every tree and blob whose id differs from the entry at the same path
/// in `old`. Equal ids are whole equal subtrees, so they are not entered.
fn changed(repo: &Repository, new: &Tree<'_>, old: Option<&Tree<'_>>, out: &mut Vec<Oid>) -> Result<(), git2::Error> {
    out.push(new.id());
    for entry in new.iter() {
        let before = old.and_then(|t| t.get_name_bytes(entry.name_bytes()));
        if before.as_ref().is_some_and(|b| b.id() == entry.id()) {
            continue;
        }
        match entry.kind() {
            Some(ObjectType::Tree) => {
                let subtree = repo.find_tree(entry.id())?;
                let old_subtree = before.filter(|b| b.kind() == Some(ObjectType::Tree)).map(|b| repo.find_tree(b.id()));
                changed(repo, &subtree, old_subtree.transpose()?.as_ref(), out)?;
            }
            Some(ObjectType::Blob) => out.push(entry.id()),
            // A submodule's commit is not in this repository.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkts(lines: &[&str]) -> std::io::Cursor<Vec<u8>> {
        let mut bytes = Vec::new();
        for line in lines {
            if line.is_empty() {
                bytes.extend_from_slice(b"0000");
            } else {
                bytes.extend(pkt(line.as_bytes()));
            }
        }
        std::io::Cursor::new(bytes)
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(split_url("git://127.0.0.1:9418/acme/gitops.git"), Ok(("127.0.0.1:9418", "/acme/gitops.git")));
        assert_eq!(split_url("git://host/~dana/r.git"), Ok(("host", "~dana/r.git")));
        assert!(split_url("git://host").is_err());
        assert!(handles("git://h/r") && !handles("https://h/r") && !handles("file:///r"));
        assert_eq!(pkt(b"a\n"), b"0006a\n");
    }

    #[test]
    fn the_advertisement_names_the_branch_head_and_capabilities() {
        let first = format!("{A} refs/heads/dev\0report-status delete-refs quiet agent=git/2.47\n");
        let second = format!("{B} refs/heads/main\n");
        let advertised = read_advertisement(&mut pkts(&[&first, &second, ""]), "refs/heads/main").expect("parsed");
        assert_eq!(advertised.head, Some(Oid::from_str(B).expect("oid")));
        assert!(advertised.capabilities.contains(&"quiet".to_owned()));
        let empty = format!("{} capabilities^{{}}\0report-status\n", "0".repeat(40));
        let advertised = read_advertisement(&mut pkts(&[&empty, ""]), "refs/heads/main").expect("parsed");
        assert_eq!(advertised.head, None);
        let old = format!("{A} refs/heads/main\0delete-refs\n");
        assert!(read_advertisement(&mut pkts(&[&old, ""]), "refs/heads/main").is_err(), "needs report-status");
        let sha256 = format!("{A} refs/heads/main\0report-status object-format=sha256\n");
        assert!(read_advertisement(&mut pkts(&[&sha256, ""]), "refs/heads/main").is_err());
        let refused = read_advertisement(&mut pkts(&["ERR access denied\n"]), "refs/heads/main");
        assert_eq!(refused, Err("remote error: access denied".into()));
    }

    #[test]
    fn the_report_says_whether_the_branch_moved() {
        let main = "refs/heads/main";
        assert_eq!(read_report(&mut pkts(&["unpack ok\n", "ok refs/heads/main\n", ""]), main), Ok(()));
        let rejected = read_report(&mut pkts(&["unpack ok\n", "ng refs/heads/main fetch first\n", ""]), main);
        assert_eq!(rejected, Err("refs/heads/main: fetch first".into()));
        let unpack = read_report(&mut pkts(&["unpack index-pack failed\n", ""]), main);
        assert_eq!(unpack, Err("remote unpack failed: index-pack failed".into()));
        assert!(read_report(&mut pkts(&["unpack ok\n", ""]), main).is_err(), "no status for the branch");
        assert!(read_report(&mut pkts(&["unpack ok\n"]), main).is_err(), "hung up");
    }
}
