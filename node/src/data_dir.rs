//! The node's data directory: created on first start, locked so that only one
//! process uses it at a time, and holding the node's identity (its ed25519
//! keypair) so that its peer id survives restarts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

const LOCK_FILE: &str = "LOCK";
const IDENTITY_FILE: &str = "identity.key";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create or open data dir {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error(
        "data dir {path} is in use by another node process (stop it, or pick another --data-dir)"
    )]
    InUse { path: PathBuf },
    #[error("cannot read identity file {path}: {source}")]
    ReadIdentity { path: PathBuf, source: io::Error },
    #[error(
        "identity file {path} is corrupt ({reason}); move it away to start with a new identity"
    )]
    CorruptIdentity { path: PathBuf, reason: String },
    #[error("cannot write identity file {path}: {source}")]
    WriteIdentity { path: PathBuf, source: io::Error },
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

    /// Loads the node's keypair, creating it on first start.
    pub fn identity(&self) -> Result<Keypair, DataDirError> {
        let path = self.path.join(IDENTITY_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                Keypair::from_protobuf_encoding(&bytes).map_err(|e| DataDirError::CorruptIdentity {
                    path,
                    reason: e.to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let keypair = Keypair::generate_ed25519();
                let bytes =
                    keypair
                        .to_protobuf_encoding()
                        .map_err(|e| DataDirError::CorruptIdentity {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                write_private_atomically(&path, &bytes)
                    .map_err(|source| DataDirError::WriteIdentity { path, source })?;
                Ok(keypair)
            }
            Err(source) => Err(DataDirError::ReadIdentity { path, source }),
        }
    }
}

/// Writes a file readable only by its owner, so that a crash leaves either
/// the old file or the complete new one.
fn write_private_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
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
    fn the_identity_survives_a_restart() {
        let dir = temp_dir("identity");
        let first = DataDir::open(&dir).unwrap().identity().unwrap();
        let second = DataDir::open(&dir).unwrap().identity().unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        let mode = fs::metadata(dir.join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
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

    #[test]
    fn a_corrupt_identity_is_a_clear_error_and_is_left_in_place() {
        let dir = temp_dir("corrupt");
        let d = DataDir::open(&dir).unwrap();
        fs::write(dir.join(IDENTITY_FILE), b"garbage").unwrap();
        assert!(matches!(
            d.identity(),
            Err(DataDirError::CorruptIdentity { .. })
        ));
        assert_eq!(fs::read(dir.join(IDENTITY_FILE)).unwrap(), b"garbage");
        fs::remove_dir_all(dir).unwrap();
    }
}
