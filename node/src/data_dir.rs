//! The node's data directory: created on first start (mode 0700) and locked
//! so that only one process uses it at a time. It holds the key file
//! ([`crate::store::key_file`]) and the history store ([`crate::store`]).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "LOCK";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create or open data dir {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "data dir {path} is in use by another node process (stop it, or pick another --data-dir)"
    )]
    InUse { path: PathBuf },
}

/// An open, locked data directory. The lock is held until this is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates (mode 0700) and locks the directory.
    pub fn open(path: &Path) -> Result<Self, DataDirError> {
        let create = |source| DataDirError::Create {
            path: path.to_owned(),
            source,
        };
        let existed = path.exists();
        fs::create_dir_all(path).map_err(create)?;
        if !existed {
            // Private from the start; a directory the user already had keeps its mode.
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path.join(LOCK_FILE))
            .map_err(create)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::InUse {
                    path: path.to_owned(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(create(e)),
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palaver-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_data_dir_is_private() {
        let dir = temp_dir("mode");
        let _d = DataDir::open(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_refused() {
        let dir = temp_dir("lock");
        let _held = DataDir::open(&dir).unwrap();
        assert!(matches!(
            DataDir::open(&dir),
            Err(DataDirError::InUse { .. })
        ));
        drop(_held);
        assert!(DataDir::open(&dir).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }
}
