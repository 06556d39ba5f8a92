//! The ACME storage directory: `account-<ca>.json` (the account's credentials, one per ACME
//! directory) and `<host>.crt` / `<host>.key`. The directory is private (0700) and every file is
//! written 0600, atomically (a temporary file renamed into place), so a reader — the certificate
//! watcher's reload — never sees half a file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;

/// `<dir>/<host>.crt`.
pub fn cert_path(dir: &Path, host: &str) -> PathBuf {
    dir.join(format!("{host}.crt"))
}

/// `<dir>/<host>.key`.
pub fn key_path(dir: &Path, host: &str) -> PathBuf {
    dir.join(format!("{host}.key"))
}

/// `<dir>/account-<authority of the directory URL>.json`.
pub fn account_path(dir: &Path, directory_url: &str) -> PathBuf {
    let authority = directory_url
        .split_once("://")
        .map_or(directory_url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let name: String = authority
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("account-{name}.json"))
}

/// Creates `dir` (and parents) if missing and makes it private (0700); returns its canonical
/// path.
pub fn ensure_dir(dir: &Path) -> std::io::Result<PathBuf> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    fs::canonicalize(dir)
}

/// Writes `data` to `path` with mode 0600: a temporary file beside it, then a rename.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Stores a newly issued pair: the key first, then the chain (the watcher reloads on either;
/// both land within its debounce).
pub fn write_pair(dir: &Path, host: &str, chain_pem: &str, key_pem: &str) -> std::io::Result<()> {
    ensure_dir(dir)?;
    write_private(&key_path(dir, host), key_pem.as_bytes())?;
    write_private(&cert_path(dir, host), chain_pem.as_bytes())
}

/// Loads a stored pair and checks that it belongs together and covers `host`.
pub fn load_pair(cert: &Path, key: &Path, host: &str) -> Result<Arc<CertifiedKey>, String> {
    let (c, k) = (cert.to_string_lossy(), key.to_string_lossy());
    let ck = crate::tls::certs::certified_key(&c, &k, &[])?;
    if !crate::tls::certs::covers(&ck, host) {
        return Err(format!("`{c}` is not valid for `{host}`"));
    }
    Ok(ck)
}

/// The end of the validity of the leaf of `ck`.
pub fn not_after(ck: &CertifiedKey) -> Option<SystemTime> {
    let leaf = ck.end_entity_cert().ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_replaced_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acme");
        let dir = ensure_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let f = dir.join("x.key");
        write_private(&f, b"one").unwrap();
        write_private(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[test]
    fn account_file_is_named_by_the_ca() {
        let d = Path::new("/s");
        assert_eq!(
            account_path(d, "https://acme-v02.api.letsencrypt.org/directory"),
            Path::new("/s/account-acme-v02.api.letsencrypt.org.json")
        );
        assert_eq!(
            account_path(d, "https://127.0.0.1:14000/dir"),
            Path::new("/s/account-127.0.0.1_14000.json")
        );
    }

    #[test]
    fn a_stored_pair_loads_with_its_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["s.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        write_pair(tmp.path(), "s.example", &cert.pem(), &key.serialize_pem()).unwrap();
        let ck = load_pair(
            &cert_path(tmp.path(), "s.example"),
            &key_path(tmp.path(), "s.example"),
            "s.example",
        )
        .unwrap();
        assert!(not_after(&ck).unwrap() > SystemTime::now());
        assert!(load_pair(
            &cert_path(tmp.path(), "s.example"),
            &key_path(tmp.path(), "s.example"),
            "other.example",
        )
        .is_err());
    }
}
