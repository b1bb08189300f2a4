//! What the data directory holds besides the database, created on first start:
//! - `master.key`: the AES-256-GCM key every secret at rest is sealed with (mode 0600); made only when there
//!   is no database yet (a missing key beside a database stops the start: see [`prepare`]);
//! - every private file is written by [`write_private`] (atomic, 0600 from creation);
//! - `ca.pem` / `ca.key`: a local root CA (the key mode 0600) that devices are told to trust;
//! - the TLS server certificate, issued by that CA at every start for the configured host names (so a new
//!   name needs only a restart), kept in memory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use dps_crypto::MasterKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Material {
    pub master_key: Arc<MasterKey>,
    pub ca_pem: String,
    pub ca_path: PathBuf,
    /// The local CA's key (PEM), which signs certificates of credential policies with the local issuer; absent
    /// when the CA is a cluster's shared file (`ca_file`: its key stays with `dps init`'s files).
    pub ca_key: Option<dps_crypto::Secret>,
    pub server_chain: Vec<CertificateDer<'static>>,
    pub server_key: PrivateKeyDer<'static>,
}

/// Writes a private file (a key, a password, anything secret) — the one way every such file is written:
/// a new temporary file in the same directory, created with mode 0600 (never readable by others, not even
/// for a moment, whatever the file it replaces allowed), written and fsynced, then renamed over `path`
/// (readers see the old file or the new one, never half of one); the directory is fsynced so the rename
/// survives a crash.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.{:016x}.tmp", name.to_string_lossy(), rand::random::<u64>()));
    let written = write_new_private(&tmp, contents).and_then(|()| rename_durably(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Renames `from` over `to` (same directory) and fsyncs the directory, so the rename survives a crash.
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).with_context(|| format!("cannot replace {} with {}", to.display(), from.display()))?;
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(to.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_new_private(path: &Path, contents: &[u8]) -> Result<()> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Whether the database in `data_dir` holds anything (then it holds values sealed with the master key).
pub(crate) fn database_has_data(data_dir: &Path) -> bool {
    let db = data_dir.join(crate::DATABASE_FILE);
    let wal = data_dir.join(format!("{}-wal", crate::DATABASE_FILE));
    [db, wal].iter().any(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
}

/// The master key; a new one only when there is no database yet — with a database, a new key would leave
/// every sealed secret unreadable, so a missing key stops the start with what to do.
pub(crate) fn load_or_create_master_key(path: &Path, data_dir: &Path) -> Result<MasterKey> {
    match fs::metadata(path) {
        Ok(_) => crate::keys::read_key_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && database_has_data(data_dir) => {
            let db = data_dir.join(crate::DATABASE_FILE);
            Err(anyhow!(
                "the master key file {key} is missing, but the database {db} holds keys and secrets sealed with it: a new key \
                 would make them unreadable, so none is made. Restore {key} from a backup (or point master_key_file, \
                 DPS_MASTER_KEY_FILE or --master-key-file at it); to start over with an empty service instead, move {db} \
                 and its -wal and -shm files out of {dir}",
                key = path.display(),
                db = db.display(),
                dir = data_dir.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, text) = MasterKey::generate();
            write_private(path, format!("{text}\n").as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(anyhow!("cannot read the master key {}: {e}", path.display())),
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair)> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert_path.exists() && key_path.exists() {
        let pem = fs::read_to_string(&cert_path)?;
        let key =
            KeyPair::from_pem(&fs::read_to_string(&key_path)?).with_context(|| format!("{} is not a private key", key_path.display()))?;
        return Ok((pem, key));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
    dn.push(DnType::CommonName, format!("DPS Console local root CA ({host})"));
    dn.push(DnType::OrganizationName, "DPS Console");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, 3650);
    let cert = params.self_signed(&key)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    fs::write(&cert_path, cert.pem())?;
    Ok((cert.pem(), key))
}

fn issue_server_certificate(ca_pem: &str, ca_key: &KeyPair, names: &[String]) -> Result<(String, KeyPair)> {
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).context("the CA certificate cannot be read")?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.first().cloned().unwrap_or_else(|| "localhost".into()));
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, 397);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key))
}

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut pem.as_bytes()).collect::<std::result::Result<Vec<_>, _>>().context("bad PEM")
}

/// Makes the data directory (the owner's alone).
pub fn create_data_dir(data_dir: &Path) -> Result<()> {
    fs::create_dir_all(data_dir).with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Prepares the data directory and the TLS material for `host_names`, with the key file's master key.
pub fn prepare(data_dir: &Path, master_key_file: &Path, host_names: &[String]) -> Result<Material> {
    create_data_dir(data_dir)?;
    let key = load_or_create_master_key(master_key_file, data_dir)?;
    prepare_with_key(data_dir, key, host_names)
}

/// [`prepare`] with a master key already loaded (see [`crate::keys::load`]), in a data directory that exists (the
/// service's lock made it: [`crate::lock::DataDirLock::acquire`]).
pub fn prepare_with_key(data_dir: &Path, key: MasterKey, host_names: &[String]) -> Result<Material> {
    let master_key = Arc::new(key);
    let (ca_pem, ca_key) = load_or_create_ca(data_dir)?;
    let (server_pem, server_key) = issue_server_certificate(&ca_pem, &ca_key, host_names)?;
    let mut server_chain = pem_certs(&server_pem)?;
    server_chain.extend(pem_certs(&ca_pem)?);
    Ok(Material {
        master_key,
        ca_path: fs::canonicalize(data_dir.join("ca.pem")).unwrap_or_else(|_| data_dir.join("ca.pem")),
        ca_pem,
        ca_key: Some(dps_crypto::Secret::new(ca_key.serialize_pem())),
        server_chain,
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    })
}

/// The material `config` names, with the master key [`crate::keys::load`] loaded (a `master_key_file` a layer
/// names must exist: a configured key is loaded, never made). Configured files are loaded, never made: with `ca_file`/`tls_cert_file`/`tls_key_file` (a cluster, [`init`]) the server certificate is the
/// file's, not one issued here — every instance behind a load balancer presents the same certificate and CA.
pub fn prepare_configured(config: &crate::Config, key: MasterKey, host_names: &[String]) -> Result<Material> {
    let Some(shared) = &config.shared_tls else {
        return prepare_with_key(&config.data_dir, key, host_names);
    };
    let master_key = Arc::new(key);
    let read = |p: &Path, what: &str| {
        fs::read_to_string(p).with_context(|| format!("cannot read the {what} {} ({what} files are loaded, never made)", p.display()))
    };
    let ca_pem = read(&shared.ca_file, "CA certificate")?;
    if pem_certs(&ca_pem)?.is_empty() {
        return Err(anyhow!("{} (ca_file) holds no certificate", shared.ca_file.display()));
    }
    let server_chain = pem_certs(&read(&shared.cert_file, "server certificate")?)?;
    if server_chain.is_empty() {
        return Err(anyhow!("{} (tls_cert_file) holds no certificate", shared.cert_file.display()));
    }
    let server_key = rustls_pemfile::private_key(&mut read(&shared.key_file, "server key")?.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("{} (tls_key_file) holds no private key", shared.key_file.display()))?;
    Ok(Material {
        master_key,
        ca_path: fs::canonicalize(&shared.ca_file).unwrap_or_else(|_| shared.ca_file.clone()),
        ca_pem,
        ca_key: None,
        server_chain,
        server_key,
    })
}

/// What [`init`] made, for a cluster's instances to load.
pub struct ClusterFiles {
    pub master_key: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `dps init`: a cluster's material, made once in `dir` — the master key, a CA (`ca.pem`, `ca.key`) and a server
/// certificate for `host_names` (`server.pem`: the chain, `server.key`). Refused when `dir` already holds a master
/// key: a second set would split the cluster.
pub fn init(dir: &Path, host_names: &[String]) -> Result<ClusterFiles> {
    let master = dir.join("master.key");
    if master.exists() {
        return Err(anyhow!(
            "{} already exists: `dps init` makes a cluster's material once (copy that directory's files instead)",
            master.display()
        ));
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (_, text) = MasterKey::generate();
    write_private(&master, format!("{text}\n").as_bytes())?;
    let (ca_pem, ca_key) = load_or_create_ca(dir)?;
    let (server_pem, server_key) = issue_server_certificate(&ca_pem, &ca_key, host_names)?;
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    fs::write(&cert, format!("{server_pem}{ca_pem}")).with_context(|| format!("cannot write {}", cert.display()))?;
    write_private(&key, server_key.serialize_pem().as_bytes())?;
    Ok(ClusterFiles { master_key: master, ca: dir.join("ca.pem"), cert, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// A file another tool made world-readable is replaced, not rewritten in place: the new one is 0600 from
    /// its creation (the old way, `open` with a mode, kept an existing file's mode), and no temporary file stays.
    #[test]
    fn private_files_are_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("secret.key");
        fs::write(&path, "an old, longer secret that was readable by everyone\n").expect("writes");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("sets permissions");
        }
        write_private(&path, b"new secret\n").expect("write private");
        assert_eq!(fs::read_to_string(&path).expect("reads the file"), "new secret\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
            assert_eq!(mode, 0o600);
        }
        assert_eq!(names(dir.path()), ["secret.key"]);
        assert!(write_private(&dir.path().join("missing-dir").join("x"), b"x").is_err());
        assert_eq!(names(dir.path()), ["secret.key"], "a failed write leaves nothing behind");
    }

    /// #14 item 5: without its master key, a database's secrets cannot be read: no new key is made.
    #[test]
    fn a_missing_master_key_beside_a_database_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = dir.path().join("master.key");
        assert!(load_or_create_master_key(&key, dir.path()).is_ok(), "first start: a new key");
        fs::remove_file(&key).expect("removes the file");
        fs::write(dir.path().join(crate::DATABASE_FILE), b"SQLite format 3\0").expect("writes");
        let e = load_or_create_master_key(&key, dir.path()).err().unwrap_or_else(|| panic!("a new key was made")).to_string();
        assert!(e.contains(&key.display().to_string()) && e.contains("Restore"), "{e}");
        assert!(!key.exists());
    }

    fn load_and_prepare(config: &crate::Config, host_names: &[String]) -> Result<Material> {
        create_data_dir(&config.data_dir)?;
        let (key, _) = crate::keys::load(config)?;
        prepare_configured(config, key, host_names)
    }

    fn cluster_config(data_dir: &Path, cluster: &Path) -> crate::Config {
        let flags = crate::config::Overrides {
            master_key_file: Some(cluster.join("master.key")),
            ca_file: Some(cluster.join("ca.pem")),
            tls_cert_file: Some(cluster.join("server.pem")),
            tls_key_file: Some(cluster.join("server.key")),
            ..Default::default()
        };
        crate::Config::load(data_dir.into(), None, &Default::default(), flags).expect("loads")
    }

    /// Issue #15 item 3: `dps init` makes a cluster's material once; instances load it as given and make nothing.
    #[test]
    fn cluster_material_is_made_once_and_loaded_never_made() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let cluster = root.path().join("cluster");
        let files = init(&cluster, &["dps.example".into()]).expect("init");
        assert_eq!(names(&cluster), ["ca.key", "ca.pem", "master.key", "server.key", "server.pem"]);
        let again = init(&cluster, &["dps.example".into()]).err().unwrap_or_else(|| panic!("a second set was made")).to_string();
        assert!(again.contains("already exists"), "{again}");

        let data = root.path().join("instance");
        let m = load_and_prepare(&cluster_config(&data, &cluster), &["other.example".into()]).expect("load and prepare");
        let served = pem_certs(&fs::read_to_string(&files.cert).expect("reads the file")).expect("pem certs");
        assert_eq!(m.server_chain, served, "the file's certificate, not one issued for this instance's names");
        assert_eq!(m.ca_pem, fs::read_to_string(&files.ca).expect("reads the file"));
        assert_eq!(names(&data), Vec::<String>::new(), "nothing is made in the instance's data directory");

        fs::remove_file(&files.master_key).expect("removes the file");
        let e =
            load_and_prepare(&cluster_config(&data, &cluster), &[]).err().unwrap_or_else(|| panic!("started without the key")).to_string();
        assert!(e.contains("master_key_file") && e.contains("never made"), "{e}");
        assert!(!files.master_key.exists(), "a configured key is never made");

        let half = crate::config::Overrides { tls_cert_file: Some(files.cert), ..Default::default() };
        let e = crate::Config::load(data, None, &Default::default(), half).err().unwrap_or_else(|| panic!("half the material")).to_string();
        assert!(e.contains("go together"), "{e}");
    }
}
