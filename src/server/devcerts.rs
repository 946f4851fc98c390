//! Development certificates: a throwaway CA and a serving certificate for localhost and the
//! in-cluster Service names, so `serve` runs on a fresh machine and a dev cluster can trust it.
//! Never for production: use a TLS Secret (cert-manager) there.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// File names, as a Kubernetes TLS Secret mounts them (plus the CA for `caBundle`).
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
pub const CA_FILE: &str = "ca.crt";

/// Default Service the webhook runs behind, as `deploy/` names it.
pub const DEFAULT_SERVICE: &str = "csr-warden";
pub const DEFAULT_NAMESPACE: &str = "csr-warden";

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("generating development certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A development CA that can issue serving and client certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl DevCa {
    /// A new CA (ECDSA P-256, valid 10 years), named `common_name`.
    pub fn generate(common_name: &str) -> Result<DevCa, DevCertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, 3650);
        let cert = params.self_signed(&key)?;
        Ok(DevCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A serving certificate (valid one year) for `names`: DNS names or IP addresses.
    pub fn issue_serving(&self, names: &[String]) -> Result<Issued, DevCertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let cn = names.first().map(String::as_str).unwrap_or("csr-warden");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 365);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A client certificate (valid one year) with common name `cn`.
    pub fn issue_client(&self, cn: &str) -> Result<Issued, DevCertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, 365);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The names a webhook serving certificate needs: localhost for running it by hand, and every
/// form of the Service's DNS name the API server may use.
pub fn serving_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        service.into(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// What [`write`] wrote.
#[derive(Debug, Clone)]
pub struct DevCertFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA certificate, PEM, for a webhook configuration's `caBundle` (after base64).
    pub ca_pem: String,
}

/// Generate a CA and a serving certificate for `service.namespace` into `dir`:
/// `ca.crt`, `tls.crt` and `tls.key` (mode 0600). The CA's key is not kept.
pub fn generate_into(
    dir: &Path,
    service: &str,
    namespace: &str,
) -> Result<DevCertFiles, DevCertError> {
    let ca = DevCa::generate("csr-warden development CA")?;
    let serving = ca.issue_serving(&serving_names(service, namespace))?;
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let files = DevCertFiles {
        ca: dir.join(CA_FILE),
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
        ca_pem: ca.cert_pem().to_string(),
    };
    // Key first, then the certificate: a reader that sees the new certificate sees its key.
    write_file(&files.key, serving.key_pem.as_bytes(), 0o600)?;
    write_file(&files.cert, serving.cert_pem.as_bytes(), 0o644)?;
    write_file(&files.ca, ca.cert_pem().as_bytes(), 0o644)?;
    Ok(files)
}

/// Write through a temporary file and rename, so readers never see half a file; `mode` is set
/// before any byte is written.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), DevCertError> {
    let err = |source| DevCertError::Write {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}
