//! Locks so two cdq processes never drive the same stack at once: one on the deploy
//! directory, and one host-wide per project name (two directories using one name must not
//! race either: two creates of one network leave two networks of that name). Both are OS
//! file locks: they die with the process, so `kill -9` never leaves one stale.
//!
//! The project lock lives in `/run/lock` (shared by every user, cleared at boot), else
//! `$XDG_RUNTIME_DIR`, else the temporary directory: never inside a deploy directory, which
//! is what two racing runs do not share.

use std::fs::{File, TryLockError};
use std::path::Path;

use crate::error::{CdqError, Kind};

pub struct DeployLock {
    _file: Option<File>,
}

/// Whether an I/O error says the filesystem is read-only.
fn read_only(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(30)
}

pub fn acquire(deploy_dir: &Path) -> anyhow::Result<DeployLock> {
    let dir = deploy_dir.join(".cdq");
    let path = dir.join("lock");
    crate::fsio::refuse_symlink(&dir)?;
    crate::fsio::refuse_symlink(&path)?;
    let opened = std::fs::create_dir_all(&dir).and_then(|()| {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    });
    let file = match opened {
        Ok(f) => f,
        // A read-only deploy directory must not stop `down` from stopping the stack: an
        // existing lock file is locked read-only (flock needs no write access); with none,
        // no cdq can hold one there either (it could not have created it).
        Err(e) if read_only(&e) => match File::open(&path) {
            Ok(f) => f,
            Err(_) => return Ok(DeployLock { _file: None }),
        },
        Err(e) => return Err(crate::fsio::io_error("opening", &path, &e).into()),
    };
    match file.try_lock() {
        Ok(()) => Ok(DeployLock { _file: Some(file) }),
        Err(TryLockError::WouldBlock) => Err(CdqError::new(
            Kind::Locked,
            format!("another cdq is working on `{}`", deploy_dir.display()),
        )
        .hint("wait for it to finish (or stop it), then run this again")
        .into()),
        Err(TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("locking `{}`", path.display())))
        }
    }
}

pub struct ProjectLock {
    _file: File,
    pub path: std::path::PathBuf,
}

/// Where project locks live: the first of these that exists as a directory.
fn lock_dirs() -> Vec<std::path::PathBuf> {
    let mut v = vec![std::path::PathBuf::from("/run/lock")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty()) {
        v.push(x.into());
    }
    v.push(std::env::temp_dir());
    v
}

/// The host-wide lock on project `name`, taken by the cdq working on it from `deploy_dir`
/// (written into the lock file so a second cdq can say who holds it).
pub fn acquire_project(name: &str, deploy_dir: &Path) -> anyhow::Result<ProjectLock> {
    acquire_project_in(&lock_dirs(), name, deploy_dir)
}

fn acquire_project_in(
    dirs: &[std::path::PathBuf],
    name: &str,
    deploy_dir: &Path,
) -> anyhow::Result<ProjectLock> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    // Settings allow only `[a-z0-9][a-z0-9_-]*`; a compose file's `name:` is mapped the same
    // way, so any name is one file name.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file_name = format!("cdq-project-{safe}.lock");
    let mut last_err = None;
    for d in dirs.iter().filter(|d| d.is_dir()) {
        let path = d.join(&file_name);
        // World-readable, so another user's cdq can open it to lock (flock needs no write
        // access) and read who holds it.
        let opened = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .open(&path)
            .or_else(|_| File::open(&path));
        let mut file = match opened {
            Ok(f) => f,
            Err(e) => {
                last_err =
                    Some(anyhow::Error::new(e).context(format!("opening `{}`", path.display())));
                continue;
            }
        };
        return match file.try_lock() {
            Ok(()) => {
                // Best effort: a file of another user's is locked but not rewritten.
                let _ = file.set_len(0).and_then(|_| {
                    file.rewind()?;
                    writeln!(
                        file,
                        "pid {} deploy directory {}",
                        std::process::id(),
                        deploy_dir.display()
                    )
                });
                Ok(ProjectLock { _file: file, path })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                Err(CdqError::new(
                    Kind::Locked,
                    if holder.is_empty() {
                        format!("another cdq is working on project `{name}`")
                    } else {
                        format!("another cdq is working on project `{name}` ({holder})")
                    },
                )
                .hint(format!(
                    "wait for it to finish (or stop it), then run this again; a stack of its own needs its own name (`-p NAME`); the lock is `{}`",
                    path.display()
                ))
                .into())
            }
            Err(TryLockError::Error(e)) => {
                Err(anyhow::Error::new(e).context(format!("locking `{}`", path.display())))
            }
        };
    }
    Err(last_err.unwrap_or_else(|| {
        anyhow::anyhow!(
            "no directory for the project lock: none of {} exists",
            dirs.iter()
                .map(|d| format!("`{}`", d.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_is_locked_host_wide_whatever_the_directory() {
        let locks = tempfile::tempdir().unwrap();
        let dirs = vec![locks.path().join("missing"), locks.path().to_path_buf()];
        let first = acquire_project_in(&dirs, "demo", Path::new("/a")).unwrap();
        let e = acquire_project_in(&dirs, "demo", Path::new("/b"))
            .err()
            .unwrap();
        assert_eq!(crate::error::exit_code(&e), 5);
        let text = crate::error::format(&e);
        assert!(text.contains("project `demo`"), "{text}");
        assert!(text.contains("deploy directory /a"), "{text}");
        assert!(acquire_project_in(&dirs, "other", Path::new("/b")).is_ok());
        drop(first);
        assert!(acquire_project_in(&dirs, "demo", Path::new("/b")).is_ok());
    }

    #[test]
    fn second_lock_fails_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = acquire(d.path()).unwrap();
        let e = acquire(d.path()).err().unwrap();
        assert_eq!(crate::error::exit_code(&e), 5);
        drop(first);
        assert!(acquire(d.path()).is_ok());
    }
}
