//! A lock on the deploy directory so two cdq processes never drive the same stack at once.
//! The lock is an OS file lock: it dies with the process, so `kill -9` never leaves it stale.

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

#[cfg(test)]
mod tests {
    use super::*;

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
