//! The node's secrets in one file, `keys.age`: its libp2p keypair (its peer
//! identity) and the age X25519 identity its history is encrypted to, both
//! encrypted with age's passphrase (scrypt) recipient. Nothing secret is ever
//! written in the clear; changing the passphrase replaces the file atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use hmac::{Hmac, Mac};
use libp2p::identity::Keypair;
use sha2::Sha256;

/// The encrypted key file in the data dir.
pub const KEY_FILE: &str = "keys.age";
/// The plaintext identity file of versions before the key file; imported and removed.
pub const LEGACY_IDENTITY_FILE: &str = "identity.key";
/// What the decrypted file starts with.
const MAGIC: &str = palaver_proto::contract::labels::KEY_FILE_MAGIC;
/// scrypt cost (log2 N) for new key files: about a second and 256 MiB here.
pub const DEFAULT_LOG_N: u8 = 18;
/// The costliest key file this node agrees to open (4 GiB of scrypt memory).
const MAX_LOG_N: u8 = 22;

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("wrong passphrase for {path}")]
    WrongPassphrase { path: PathBuf },
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    #[error(
        "key file {path} is corrupt ({reason}); restore it from a backup, or move the data dir away to start afresh"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot encrypt the keys: {0}")]
    Encrypt(String),
}

/// The node's secrets, decrypted.
pub struct Keys {
    /// The node's libp2p identity.
    pub keypair: Keypair,
    /// What the history is encrypted to.
    pub storage: age::x25519::Identity,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("peer_id", &self.keypair.public().to_peer_id())
            .finish_non_exhaustive()
    }
}

impl Keys {
    fn generate(keypair: Option<Keypair>) -> Self {
        Self {
            keypair: keypair.unwrap_or_else(Keypair::generate_ed25519),
            storage: age::x25519::Identity::generate(),
        }
    }

    /// The key that turns room names and message ids into store keys that
    /// reveal nothing: HMAC-SHA256 keyed by the storage identity.
    pub fn index_key(&self) -> [u8; 32] {
        let secret = self.storage.to_string();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(palaver_proto::contract::labels::STORE_INDEX_KEY);
        mac.finalize().into_bytes().into()
    }

    fn encode(&self) -> Result<SecretString, String> {
        let keypair = self
            .keypair
            .to_protobuf_encoding()
            .map_err(|e| e.to_string())?;
        let hex: String = keypair.iter().map(|b| format!("{b:02x}")).collect();
        let storage = self.storage.to_string();
        Ok(SecretString::from(format!(
            "{MAGIC}\nlibp2p {hex}\nage {}\n",
            storage.expose_secret()
        )))
    }

    fn decode(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err("not a Palaver key file".into());
        }
        let mut keypair = None;
        let mut storage = None;
        for line in lines {
            match line.split_once(' ') {
                Some(("libp2p", hex)) => {
                    let bytes = from_hex(hex).ok_or("libp2p key is not hex")?;
                    keypair = Some(
                        Keypair::from_protobuf_encoding(&bytes)
                            .map_err(|e| format!("libp2p key: {e}"))?,
                    );
                }
                Some(("age", secret)) => {
                    storage = Some(
                        secret
                            .parse::<age::x25519::Identity>()
                            .map_err(|e| format!("age identity: {e}"))?,
                    );
                }
                _ => return Err("unknown line".into()),
            }
        }
        Ok(Self {
            keypair: keypair.ok_or("no libp2p key")?,
            storage: storage.ok_or("no age identity")?,
        })
    }
}

#[allow(clippy::panic, reason = "HMAC takes keys of any length")]
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 accepts every key length")
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Opens the key file in `dir` with `passphrase`, creating it (with a new
/// identity, or the one a previous version kept in the clear) on first start.
/// Returns the keys and whether they were just created.
pub fn open_or_create(
    dir: &Path,
    passphrase: &SecretString,
    log_n: u8,
) -> Result<(Keys, bool), KeyFileError> {
    if passphrase.expose_secret().is_empty() {
        return Err(KeyFileError::EmptyPassphrase);
    }
    let path = dir.join(KEY_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok((decrypt(&path, &bytes, passphrase)?, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let legacy_path = dir.join(LEGACY_IDENTITY_FILE);
            // Only a file of this user's that no one else may write to is
            // taken for the node's identity.
            if let Err(e) = crate::data_dir::check_private(&legacy_path, false) {
                return Err(KeyFileError::Corrupt {
                    path: legacy_path,
                    reason: e.to_string(),
                });
            }
            let legacy = match fs::read(&legacy_path) {
                Ok(bytes) => Some(Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
                    KeyFileError::Corrupt {
                        path: legacy_path.clone(),
                        reason: e.to_string(),
                    }
                })?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(KeyFileError::Read {
                        path: legacy_path,
                        source,
                    });
                }
            };
            let imported = legacy.is_some();
            let keys = Keys::generate(legacy);
            write(&path, &keys, passphrase, log_n)?;
            if imported {
                // The identity is now only kept encrypted.
                fs::remove_file(&legacy_path).map_err(|source| KeyFileError::Write {
                    path: legacy_path,
                    source,
                })?;
            }
            Ok((keys, true))
        }
        Err(source) => Err(KeyFileError::Read { path, source }),
    }
}

/// Re-encrypts the key file under `new`. The file is replaced by a rename, so
/// a crash at any point leaves the old or the new passphrase working.
pub fn change_passphrase(
    dir: &Path,
    old: &SecretString,
    new: &SecretString,
    log_n: u8,
) -> Result<(), KeyFileError> {
    if new.expose_secret().is_empty() {
        return Err(KeyFileError::EmptyPassphrase);
    }
    let path = dir.join(KEY_FILE);
    let bytes = fs::read(&path).map_err(|source| KeyFileError::Read {
        path: path.clone(),
        source,
    })?;
    let keys = decrypt(&path, &bytes, old)?;
    write(&path, &keys, new, log_n)
}

fn decrypt(path: &Path, bytes: &[u8], passphrase: &SecretString) -> Result<Keys, KeyFileError> {
    let mut identity = age::scrypt::Identity::new(passphrase.clone());
    identity.set_max_work_factor(MAX_LOG_N);
    let corrupt = |reason: String| KeyFileError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let plaintext = age::decrypt(&identity, bytes).map_err(|e| match e {
        age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
            KeyFileError::WrongPassphrase {
                path: path.to_owned(),
            }
        }
        other => corrupt(other.to_string()),
    })?;
    let text = SecretString::from(
        String::from_utf8(plaintext).map_err(|_| corrupt("not UTF-8 inside".into()))?,
    );
    Keys::decode(text.expose_secret()).map_err(corrupt)
}

fn write(
    path: &Path,
    keys: &Keys,
    passphrase: &SecretString,
    log_n: u8,
) -> Result<(), KeyFileError> {
    let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
    recipient.set_work_factor(log_n);
    let plaintext = keys.encode().map_err(KeyFileError::Encrypt)?;
    let ciphertext = age::encrypt(&recipient, plaintext.expose_secret().as_bytes())
        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
    write_private_atomically(path, &ciphertext).map_err(|source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file readable only by its owner, so that a crash leaves either
/// the old file or the complete new one. The temporary file has a random
/// name and is created new (`O_EXCL`, which follows no link): nothing
/// planted beside the key file is written through.
fn write_private_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(io::Error::other)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension(format!("{suffix}.tmp"));
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Cheap scrypt for tests.
    const TEST_LOG_N: u8 = 4;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palaver-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn the_keys_survive_a_restart_and_the_file_is_private_and_encrypted() {
        let dir = temp_dir("restart");
        let (first, created) = open_or_create(&dir, &secret("pass"), TEST_LOG_N).unwrap();
        assert!(created);
        let (second, created) = open_or_create(&dir, &secret("pass"), TEST_LOG_N).unwrap();
        assert!(!created);
        assert_eq!(
            first.keypair.public().to_peer_id(),
            second.keypair.public().to_peer_id()
        );
        assert_eq!(first.index_key(), second.index_key());
        let file = dir.join(KEY_FILE);
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let bytes = fs::read(&file).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        let secret_key = first.storage.to_string();
        let needle = secret_key.expose_secret().as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_wrong_passphrase_is_refused_and_changes_nothing() {
        let dir = temp_dir("wrong");
        open_or_create(&dir, &secret("right"), TEST_LOG_N).unwrap();
        let before = fs::read(dir.join(KEY_FILE)).unwrap();
        assert!(matches!(
            open_or_create(&dir, &secret("wrong"), TEST_LOG_N),
            Err(KeyFileError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            change_passphrase(&dir, &secret("wrong"), &secret("new"), TEST_LOG_N),
            Err(KeyFileError::WrongPassphrase { .. })
        ));
        assert_eq!(fs::read(dir.join(KEY_FILE)).unwrap(), before);
        assert!(matches!(
            open_or_create(&dir, &secret(""), TEST_LOG_N),
            Err(KeyFileError::EmptyPassphrase)
        ));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn changing_the_passphrase_keeps_the_keys_and_retires_the_old_passphrase() {
        let dir = temp_dir("change");
        let (keys, _) = open_or_create(&dir, &secret("old"), TEST_LOG_N).unwrap();
        change_passphrase(&dir, &secret("old"), &secret("new"), TEST_LOG_N).unwrap();
        assert!(open_or_create(&dir, &secret("old"), TEST_LOG_N).is_err());
        let (again, _) = open_or_create(&dir, &secret("new"), TEST_LOG_N).unwrap();
        assert_eq!(
            keys.keypair.public().to_peer_id(),
            again.keypair.public().to_peer_id()
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_legacy_plaintext_identity_is_imported_and_removed() {
        let dir = temp_dir("legacy");
        let keypair = Keypair::generate_ed25519();
        fs::write(
            dir.join(LEGACY_IDENTITY_FILE),
            keypair.to_protobuf_encoding().unwrap(),
        )
        .unwrap();
        let (keys, _) = open_or_create(&dir, &secret("p"), TEST_LOG_N).unwrap();
        assert_eq!(
            keys.keypair.public().to_peer_id(),
            keypair.public().to_peer_id()
        );
        assert!(!dir.join(LEGACY_IDENTITY_FILE).exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_key_file_is_a_clear_error_and_is_left_in_place() {
        let dir = temp_dir("corrupt");
        fs::write(dir.join(KEY_FILE), b"garbage").unwrap();
        let err = open_or_create(&dir, &secret("p"), TEST_LOG_N).unwrap_err();
        assert!(matches!(err, KeyFileError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(dir.join(KEY_FILE)).unwrap(), b"garbage");
        fs::remove_dir_all(dir).unwrap();
    }
}
