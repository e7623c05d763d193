//! The files and directories cdq writes, deletes or mounts: the one durable atomic write
//! ([`write_atomic`]: temp file, fsync, rename, directory fsync), the marks that say "cdq
//! made this" (a rendered file's header, a data directory's mark file), and the refusals
//! that keep cdq off what it did not make (symlinks, foreign directories, system paths).
//!
//! Must not: print, reach the engine, or follow a symlink it did not create. Every error
//! names the path, and the common faults (no space, read-only, permission) say the fix.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::CdqError;

/// The first line of every file cdq renders starts with one of these: it is the mark that
/// cdq wrote the file, and the only thing that lets a render replace (or a purge delete) it.
pub const RENDER_MARKS: [&str; 2] = ["# Rendered by cdq", "-- Rendered by cdq"];

/// Whether `bytes` begin with cdq's render header.
pub fn has_render_mark(bytes: &[u8]) -> bool {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    RENDER_MARKS.iter().any(|m| first.starts_with(m.as_bytes()))
}

/// An I/O error on `path` as cdq reports it: the path named, and for the faults a site
/// produces (disk full, read-only filesystem, permission) the fix.
pub fn io_error(what: &str, path: &Path, e: &std::io::Error) -> CdqError {
    let p = path.display();
    let dir = path.parent().unwrap_or(path).display();
    match e.raw_os_error() {
        Some(28) => CdqError::failure(format!(
            "{what} `{p}`: no space left on the device ({e})"
        ))
        .hint(format!(
            "free space there (`df -h {dir}`), or use another directory (`--dir`, `--data-dir`); \
             the previous file, if any, is intact"
        )),
        Some(30) => CdqError::failure(format!(
            "{what} `{p}`: the filesystem is read-only ({e})"
        ))
        .hint(format!(
            "remount it read-write (`sudo mount -o remount,rw $(stat -c %m {dir})`), or use \
             another directory (`--dir`, `--data-dir`)"
        )),
        Some(13) | Some(1) => CdqError::failure(format!("{what} `{p}`: permission denied ({e})"))
            .hint(format!(
                "run cdq as the owner of `{dir}` (or root), or use another directory (`--dir`, `--data-dir`)"
            )),
        _ => CdqError::failure(format!("{what} `{p}`: {e}")),
    }
}

/// Refuses `path` when it is a symlink: cdq writes only through links it made, and it
/// makes none.
pub fn refuse_symlink(path: &Path) -> Result<(), CdqError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            Err(CdqError::usage(format!(
                "`{}` is a symlink to `{target}`: cdq does not write through links it did not create",
                path.display()
            ))
            .hint(format!(
                "replace the link with the file itself (`cp --remove-destination {target} {}`), or use another directory (`--dir`)",
                path.display()
            )))
        }
        _ => Ok(()),
    }
}

/// Refuses a symlink at `path` or at any of its ancestors below `root` (which itself may be
/// a link: the user chose it).
pub fn refuse_symlinks_below(root: &Path, path: &Path) -> Result<(), CdqError> {
    for a in path.ancestors() {
        if a == root || !a.starts_with(root) {
            break;
        }
        refuse_symlink(a)?;
    }
    Ok(())
}

/// Creates `dir` and its missing parents; returns the directories it created, outermost
/// first (so a purge can remove exactly those).
pub fn create_dirs(dir: &Path) -> Result<Vec<PathBuf>, CdqError> {
    create_dirs_io(dir).map_err(|(d, e)| io_error("creating", &d, &e))
}

/// [`create_dirs`] with the OS error as it is, and the directory it failed on.
pub fn create_dirs_io(dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|a| std::fs::symlink_metadata(a).is_err())
        .map(Path::to_path_buf)
        .collect();
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err((d.clone(), e)),
        }
    }
    Ok(missing.into_iter().rev().collect())
}

/// Writes `bytes` to `path` atomically and durably: a temp file in the same directory,
/// written, given `mode` (and, as root, the old file's owner), fsynced, renamed over `path`,
/// then the directory fsynced. A fault at any step leaves the old file (or none), never a
/// truncated one. Refuses a symlink at `path`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CdqError> {
    refuse_symlink(path)?;
    let parent = path
        .parent()
        .ok_or_else(|| CdqError::failure(format!("`{}` has no directory", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| CdqError::failure(format!("`{}` has no file name", path.display())))?
        .to_string_lossy();
    let owner = match std::fs::symlink_metadata(path) {
        Ok(m) if crate::host::is_root() => Some((m.uid(), m.gid())),
        _ => None,
    };
    let tmp = parent.join(format!(".{name}.cdq-tmp"));
    // The temp name is cdq's own: one left by a killed cdq is removed (a file only).
    if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.is_file()) {
        let _ = std::fs::remove_file(&tmp);
    }
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // Explicitly, so the umask does not decide a secret's mode.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("writing", path, &e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("replacing", path, &e));
    }
    sync_dir(parent)
}

/// Makes a rename or removal in `dir` durable.
/// A new file beside `path` (`.<name>.cdq-partial`), mode 0600 from its first byte, for an
/// archive written as a stream and renamed into place once complete (a stale one from an
/// interrupted run is replaced). Returns its path and the open file.
pub fn create_partial(path: &Path) -> anyhow::Result<(PathBuf, File)> {
    use anyhow::Context as _;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let tmp = path.with_file_name(format!(".{name}.cdq-partial"));
    let _ = std::fs::remove_file(&tmp);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating `{}`", tmp.display()))?;
    Ok((tmp, f))
}

pub fn sync_dir(dir: &Path) -> Result<(), CdqError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing", dir, &e))
}

// ---- marks on data directories -------------------------------------------------------

/// What a data directory's mark says: cdq made it, for which project, from which deploy
/// directory, and which of its parents cdq created too (a purge removes those when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub project: String,
    pub deploy_dir: PathBuf,
    pub created: Vec<PathBuf>,
}

/// The mark of `dir` lives beside it (`.<name>.cdq-mark`), not in it: services such as
/// MySQL refuse to initialise a data directory holding a file they do not know, and a mark
/// beside the directory survives whatever the service does inside.
pub fn mark_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!(".{name}.cdq-mark"))
}

const MARK_SUFFIX: &str = ".cdq-mark";

/// The directory a mark file marks (`a/.mysql.cdq-mark` -> `a/mysql`).
pub fn marked_by(mark: &Path) -> Option<PathBuf> {
    let n = mark.file_name()?.to_str()?;
    let inner = n.strip_prefix('.')?.strip_suffix(MARK_SUFFIX)?;
    (!inner.is_empty()).then(|| mark.with_file_name(inner))
}

pub fn read_mark(dir: &Path) -> Option<Mark> {
    read_mark_file(&mark_path(dir))
}

pub fn read_mark_file(p: &Path) -> Option<Mark> {
    // A mark that is a link is not a mark: anyone could point it at another project's.
    if !std::fs::symlink_metadata(p).ok()?.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(p).ok()?;
    let mut project = None;
    let mut deploy_dir = None;
    let mut created = Vec::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("project", v)) => project = Some(v.to_string()),
            Some(("deploy_dir", v)) => deploy_dir = Some(PathBuf::from(v)),
            Some(("created", v)) => created.push(PathBuf::from(v)),
            _ => {}
        }
    }
    Some(Mark {
        project: project?,
        deploy_dir: deploy_dir?,
        created,
    })
}

/// Writes the mark of `dir` (durably: it must survive a `kill -9` right after). A file at
/// the mark's path that is not a cdq mark is someone else's: refused, not replaced.
pub fn write_mark(dir: &Path, m: &Mark) -> Result<(), CdqError> {
    let at = mark_path(dir);
    if std::fs::symlink_metadata(&at).is_ok() && read_mark_file(&at).is_none() {
        return Err(CdqError::usage(format!(
            "`{}` is where cdq keeps the mark of `{}`, and it holds something else",
            at.display(),
            dir.display()
        ))
        .hint("move it away, or use another data directory (`--data-dir DIR`)"));
    }
    let mut text = format!(
        "# cdq made `{}` for project `{}`: `cdq down --purge` deletes it. Keep this file with it.\nproject={}\ndeploy_dir={}\n",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        m.project,
        m.project,
        m.deploy_dir.display()
    );
    for c in &m.created {
        text.push_str(&format!("created={}\n", c.display()));
    }
    write_atomic(&mark_path(dir), text.as_bytes(), 0o644)
}

/// Mark files under `root` (not following symlinks), at most `depth` levels down.
pub fn find_marks(root: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(t) = e.file_type() else { continue };
        let p = e.path();
        if t.is_file() && marked_by(&p).is_some() {
            out.push(p);
        } else if t.is_dir() && depth > 1 {
            out.extend(find_marks(&p, depth - 1));
        }
    }
    out
}

/// What is at a service's data directory, as far as cdq's rules go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum DirState {
    Missing,
    Empty,
    /// Carries cdq's mark for this project.
    Ours,
    /// Made by cdq, for another project.
    OtherProject {
        project: String,
        deploy_dir: PathBuf,
    },
    /// Exists, is not empty, and carries no mark of this project.
    Foreign {
        owner: String,
        entries: Vec<String>,
        total: usize,
    },
    /// A file or something else that is not a directory.
    NotDir,
}

/// A service data directory's state; `link` is the target when the path is a symlink (the
/// state is then the target's, and the mark must be the link's).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirCheck {
    pub path: PathBuf,
    pub link: Option<PathBuf>,
    pub state: DirState,
}

impl DirCheck {
    /// Whether cdq may mount (and hand over) this directory without being told to adopt it.
    pub fn usable(&self) -> bool {
        match self.state {
            DirState::Missing => self.link.is_none(),
            DirState::Empty | DirState::Ours => true,
            _ => false,
        }
    }

    /// "`data/mysql` is owned by uid 1234 (alice) and holds `a`, `b`": for messages.
    pub fn describe(&self) -> String {
        let p = self.path.display();
        let via = match &self.link {
            Some(t) => format!("`{p}` (a symlink to `{}`)", t.display()),
            None => format!("`{p}`"),
        };
        match &self.state {
            DirState::Missing => format!("{via} does not exist"),
            DirState::Empty => format!("{via} is empty"),
            DirState::Ours => format!("{via} was made by cdq for this project"),
            DirState::OtherProject {
                project,
                deploy_dir,
            } => format!(
                "{via} was made by cdq for project `{project}` (deploy directory `{}`)",
                deploy_dir.display()
            ),
            DirState::Foreign {
                owner,
                entries,
                total,
            } => {
                let mut list = crate::error::quoted_list(entries);
                if *total > entries.len() {
                    list.push_str(&format!(" and {} more", total - entries.len()));
                }
                format!("{via} is owned by {owner} and holds {list}, not made by cdq")
            }
            DirState::NotDir => format!("{via} is not a directory"),
        }
    }
}

/// Owner as `uid N (name)`, the name from /etc/passwd when it has one.
pub fn owner_name(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
        t.lines().find_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let u: u32 = f.nth(1)?.parse().ok()?;
            (u == uid).then(|| n.to_string())
        })
    });
    match name {
        Some(n) => format!("uid {uid} ({n})"),
        None => format!("uid {uid}"),
    }
}

/// Classifies a service data directory for `project`.
pub fn classify(dir: &Path, project: &str) -> DirCheck {
    let link = std::fs::symlink_metadata(dir)
        .ok()
        .filter(|m| m.file_type().is_symlink())
        .map(|_| std::fs::read_link(dir).unwrap_or_default());
    let state = match read_mark(dir) {
        Some(m) if m.project == project && dir.is_dir() => DirState::Ours,
        Some(m) if dir.exists() => DirState::OtherProject {
            project: m.project,
            deploy_dir: m.deploy_dir,
        },
        _ => match std::fs::metadata(dir) {
            Err(_) => DirState::Missing,
            Ok(m) if !m.is_dir() => DirState::NotDir,
            Ok(m) => {
                let mut names: Vec<String> = std::fs::read_dir(dir)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                if names.is_empty() {
                    DirState::Empty
                } else {
                    names.sort();
                    let total = names.len();
                    names.truncate(5);
                    DirState::Foreign {
                        owner: owner_name(m.uid()),
                        entries: names,
                        total,
                    }
                }
            }
        },
    };
    DirCheck {
        path: dir.to_path_buf(),
        link,
        state,
    }
}

/// Whether `dir` exists and holds anything (for "is this service's data initialised").
pub fn non_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_some())
}

// ---- system paths ---------------------------------------------------------------------

/// Directories that are never cdq's: the path itself is refused.
const SYSTEM: [&str; 27] = [
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
    "/var/cache",
    "/var/spool",
];
/// Trees that belong to the OS or to Docker: nothing inside them is cdq's either.
const SYSTEM_TREES: [&str; 10] = [
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/proc",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib/docker",
];

/// `path` with `.` and `..` resolved lexically (the path need not exist).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Refuses a deploy or data directory at a system path (`/`, `/etc`, `/var/lib`, a home
/// directory itself, anything under `/usr` or `/var/lib/docker`, …): cdq creates and, on
/// a purge, deletes what it made there, and those directories belong to others.
pub fn refuse_system_path(
    setting: &str,
    flag: &str,
    path: &Path,
    home: Option<&Path>,
) -> Result<(), CdqError> {
    let mut candidates = vec![normal(path)];
    if let Ok(real) = path.canonicalize() {
        candidates.push(real);
    }
    for p in &candidates {
        let s = p.to_string_lossy();
        let home_dir =
            home.is_some_and(|h| normal(h) == *p) || (p.parent() == Some(Path::new("/home")));
        let reason = if SYSTEM.contains(&s.as_ref()) {
            Some("it is a system directory")
        } else if SYSTEM_TREES.iter().any(|t| p.starts_with(t)) {
            Some("it is inside a directory that belongs to the system or to Docker")
        } else if home_dir {
            Some("it is a home directory")
        } else {
            None
        };
        if let Some(why) = reason {
            let shown = if *p == normal(path) {
                format!("`{}`", path.display())
            } else {
                format!("`{}` (really `{}`)", path.display(), p.display())
            };
            return Err(CdqError::usage(format!(
                "`{setting}` {shown} is refused: {why}, and cdq creates (and `down --purge` deletes) its own directories there"
            ))
            .hint(format!(
                "give cdq a directory of its own, e.g. `{flag} {}`",
                if setting == "data_dir" {
                    "/srv/cdq/data"
                } else {
                    "/srv/cdq"
                }
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temp file left");
    }

    #[test]
    fn atomic_write_refuses_a_symlink_and_leaves_its_target() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, "theirs").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = write_atomic(&link, b"ours", 0o600).unwrap_err();
        assert!(e.message.contains("is a symlink to"), "{}", e.message);
        assert!(e.message.contains(&link.display().to_string()));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "theirs");
    }

    #[test]
    fn a_full_disk_names_the_path_and_keeps_the_old_file() {
        let e = std::io::Error::from_raw_os_error(28);
        let err = io_error("writing", Path::new("/d/secrets.env"), &e);
        assert!(
            err.message
                .starts_with("writing `/d/secrets.env`: no space left")
        );
        assert!(err.hint.unwrap().contains("df -h /d"));
    }

    #[test]
    fn marks_round_trip_and_classify() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("mysql");
        assert_eq!(classify(&dir, "p").state, DirState::Missing);
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(classify(&dir, "p").state, DirState::Empty);
        std::fs::write(dir.join("ibdata1"), "x").unwrap();
        assert!(matches!(
            classify(&dir, "p").state,
            DirState::Foreign { ref entries, .. } if entries == &["ibdata1".to_string()]
        ));
        let m = Mark {
            project: "p".into(),
            deploy_dir: "/d".into(),
            created: vec![],
        };
        write_mark(&dir, &m).unwrap();
        assert_eq!(read_mark(&dir), Some(m));
        assert_eq!(classify(&dir, "p").state, DirState::Ours);
        assert!(matches!(
            classify(&dir, "q").state,
            DirState::OtherProject { .. }
        ));
        assert_eq!(marked_by(&mark_path(&dir)), Some(dir));
    }

    #[test]
    fn system_paths_are_refused_and_own_directories_are_not() {
        let home = Some(Path::new("/home/alice"));
        for p in [
            "/",
            "/etc",
            "/var/lib",
            "/usr/local/cdq",
            "/home/alice",
            "/home/bob",
            "/root",
            "/var/lib/docker/volumes",
            "/srv/../etc",
        ] {
            assert!(
                refuse_system_path("data_dir", "--data-dir", Path::new(p), home).is_err(),
                "{p}"
            );
        }
        for p in [
            "/srv/cdq",
            "/var/lib/cdq",
            "/home/alice/cdq",
            "/data/cdq",
            "/tmp/x",
        ] {
            assert!(
                refuse_system_path("data_dir", "--data-dir", Path::new(p), home).is_ok(),
                "{p}"
            );
        }
    }

    #[test]
    fn created_dirs_are_reported_outermost_first() {
        let d = tempfile::tempdir().unwrap();
        let c = create_dirs(&d.path().join("a/b/c")).unwrap();
        assert_eq!(
            c,
            vec![
                d.path().join("a"),
                d.path().join("a/b"),
                d.path().join("a/b/c")
            ]
        );
        assert!(create_dirs(&d.path().join("a/b/c")).unwrap().is_empty());
    }
}
