//! The node's data directory: created on first start (mode 0700) and locked
//! so that only one process uses it at a time. It holds the key file
//! ([`crate::store::key_file`]) and the history store ([`crate::store`]).
//!
//! A directory that another local user owns or may write to is refused, as
//! OpenSSH refuses such a `~/.ssh`: whoever can write there could plant an
//! identity for the node to import, or swap its files for links.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "LOCK";
/// `open(2)` fails on a symbolic link.
const O_NOFOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits();

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create or open data dir {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "data dir {path} is in use by another node process (stop it, or pick another --data-dir)"
    )]
    InUse { path: PathBuf },
    #[error(
        "refusing {path}: {reason} (fix it with chown and chmod go-w, or pick another --data-dir)"
    )]
    Unsafe { path: PathBuf, reason: String },
}

/// The user this process runs as: the owner of `/proc/self`.
fn running_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Refuses `path` when it is a symbolic link (unless `follow`), owned by
/// another user than this process's, or writable by group or others.
pub fn check_private(path: &Path, follow: bool) -> Result<(), DataDirError> {
    use std::os::unix::fs::MetadataExt;
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DataDirError::Create {
                path: path.to_owned(),
                source,
            });
        }
    };
    let unsafe_because = |reason: String| DataDirError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_because("it is a symbolic link".to_owned()));
    }
    if let Some(me) = running_uid()
        && meta.uid() != me
    {
        return Err(unsafe_because(format!(
            "it belongs to uid {}, not to this user (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_because(format!(
            "other users may write to it (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// What in a data dir is checked besides the dir itself.
const CHECKED: [&str; 4] = [
    LOCK_FILE,
    crate::store::key_file::KEY_FILE,
    crate::store::key_file::LEGACY_IDENTITY_FILE,
    crate::store::STORE_DIR,
];

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
            // Private from the start; a directory the user already had keeps
            // its mode, if no one else may write to it.
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        }
        check_private(path, true)?;
        for name in CHECKED {
            check_private(&path.join(name), false)?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW)
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
    fn a_data_dir_others_may_write_to_is_refused_and_so_is_a_planted_link() {
        let dir = temp_dir("writable");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            DataDir::open(&dir),
            Err(DataDirError::Unsafe { .. })
        ));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join(crate::store::key_file::KEY_FILE))
            .unwrap();
        assert!(matches!(
            DataDir::open(&dir),
            Err(DataDirError::Unsafe { .. })
        ));
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
