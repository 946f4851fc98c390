//! The webhook's TLS configuration: serving certificate and key (and optionally a client CA)
//! read from PEM files, rebuilt when the files change. rustls with the ring provider only,
//! TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The files the TLS configuration is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{cert} and {key}: {message}")]
    Pair {
        cert: String,
        key: String,
        message: String,
    },
}

/// A loaded configuration and what identifies it.
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// SHA-256 over the bytes of every file: unchanged files are not reloaded.
    pub fingerprint: [u8; 32],
    /// Expiry of the leaf certificate, seconds since the Unix epoch.
    pub not_after: i64,
    /// Subject alternative names of the leaf, for the log.
    pub names: Vec<String>,
}

/// The crypto provider csr-warden uses everywhere.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The bytes of every file, in a fixed order.
pub fn read_files(files: &TlsFiles) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut out = vec![read(&files.cert)?, read(&files.key)?];
    if let Some(ca) = &files.client_ca {
        out.push(read(ca)?);
    }
    Ok(out)
}

pub fn fingerprint(contents: &[Vec<u8>]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in contents {
        h.update((c.len() as u64).to_be_bytes());
        h.update(c);
    }
    h.finalize().into()
}

/// Read and check the files and build a server configuration from them.
pub fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let contents = read_files(files)?;
    build(files, &contents)
}

/// Build a server configuration from file contents already read (`read_files` order).
pub fn build(files: &TlsFiles, contents: &[Vec<u8>]) -> Result<Loaded, TlsError> {
    let file_err = |path: &Path, message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&contents[0])
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    let Some(leaf) = certs.first() else {
        return Err(file_err(&files.cert, "no CERTIFICATE block".into()));
    };
    let (not_after, names) = leaf_facts(leaf)
        .map_err(|e| file_err(&files.cert, format!("unreadable certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&contents[1])
        .map_err(|e| file_err(&files.key, format!("not a PEM private key: {e}")))?;

    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| file_err(&files.cert, e.to_string()))?;
    let builder = match (&files.client_ca, contents.get(2)) {
        (Some(ca_path), Some(ca_pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                let cert =
                    cert.map_err(|e| file_err(ca_path, format!("not a PEM CA bundle: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| file_err(ca_path, format!("unusable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(file_err(ca_path, "no CERTIFICATE block".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| file_err(ca_path, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs.clone(), key)
        .map_err(|e| TlsError::Pair {
            cert: files.cert.display().to_string(),
            key: files.key.display().to_string(),
            message: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint: fingerprint(contents),
        not_after,
        names,
    })
}

fn leaf_facts(leaf: &CertificateDer<'_>) -> Result<(i64, Vec<String>), String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| e.to_string())?;
    let not_after = cert.validity().not_after.timestamp();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(ip) => names.push(match ip.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                        .to_string(),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                        .to_string(),
                    _ => crate::csr::hex(ip),
                }),
                _ => {}
            }
        }
    }
    Ok((not_after, names))
}

/// The configuration new connections get; replaced as a whole when the files change, so a
/// connection keeps the configuration it started with.
pub struct TlsState {
    files: TlsFiles,
    current: RwLock<(Arc<ServerConfig>, [u8; 32])>,
}

/// What a reload check found.
pub enum Reload {
    Unchanged,
    Reloaded(Loaded),
    /// The files changed but cannot be used: the previous configuration keeps serving.
    Failed(TlsError),
}

impl TlsState {
    pub fn new(files: TlsFiles, loaded: &Loaded) -> TlsState {
        TlsState {
            files,
            current: RwLock::new((loaded.config.clone(), loaded.fingerprint)),
        }
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Re-read the files; swap in a new configuration when they changed and are good.
    pub fn reload(&self) -> Reload {
        let contents = match read_files(&self.files) {
            Ok(c) => c,
            Err(e) => return Reload::Failed(e),
        };
        let fp = fingerprint(&contents);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).1 == fp {
            return Reload::Unchanged;
        }
        match build(&self.files, &contents) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    (loaded.config.clone(), loaded.fingerprint);
                Reload::Reloaded(loaded)
            }
            Err(e) => {
                // Remember the broken contents so the same failure is reported once.
                let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
                cur.1 = fp;
                Reload::Failed(e)
            }
        }
    }
}
