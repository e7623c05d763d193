//! A lock on the deploy directory so two cdq processes never drive the same stack at once.
//! The lock is an OS file lock: it dies with the process, so `kill -9` never leaves it stale.

use std::fs::{File, TryLockError};
use std::path::Path;

use anyhow::Context;

use crate::error::{CdqError, Kind};

pub struct DeployLock {
    _file: File,
}

pub fn acquire(deploy_dir: &Path) -> anyhow::Result<DeployLock> {
    let dir = deploy_dir.join(".cdq");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let path = dir.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening `{}`", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DeployLock { _file: file }),
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
