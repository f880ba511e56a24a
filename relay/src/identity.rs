//! The relay's persistent identity: an ed25519 keypair in a file, created on
//! first start (mode 0600, written atomically), so its peer id (and every
//! `--bootstrap` address naming it) survives restarts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read identity file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("identity file {path} is not a valid key ({reason})")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot create identity file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

pub fn load_or_create(path: &Path) -> Result<Keypair, IdentityError> {
    match fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Corrupt {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            write_private(path, &bytes).map_err(|source| IdentityError::Write {
                path: path.to_owned(),
                source,
            })?;
            tracing::info!(path = %path.display(), "created a new relay identity");
            Ok(keypair)
        }
        Err(source) => Err(IdentityError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
