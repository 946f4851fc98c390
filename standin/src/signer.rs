//! kube-controller-manager's signer for the built-in signers (`pkg/controller/certificates/signer`):
//! signs approved requests with a test CA, or marks them `Failed` with reason
//! `SignerValidationFailure` when the signer's rules refuse them.

use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateSigningRequestDer;

use crate::csr::{
    self, KUBE_APISERVER_CLIENT, KUBE_APISERVER_CLIENT_KUBELET, KUBELET_SERVING, has_condition,
};

/// What the signer does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not this signer's, not approved, or already finished.
    Skip,
    /// PEM certificate to write to `status.certificate`.
    Issued(String),
    /// Message for a `Failed` condition, reason `SignerValidationFailure`.
    Failed(String),
}

pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    /// `--cluster-signing-duration` (default one year).
    pub max_duration: Duration,
}

impl Signer {
    pub fn new() -> Signer {
        let key = KeyPair::generate().expect("generating the signer key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-standin cluster CA");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key).expect("self-signing the CA");
        Signer {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            max_duration: Duration::from_secs(365 * 24 * 3600),
        }
    }

    /// The cluster CA, PEM (what a kubeconfig's certificate-authority-data would hold).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A serving certificate and key (PEM) from the cluster CA, for the stand-in's own HTTPS.
    pub fn issue_serving(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("generating a serving key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("serving certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing the serving certificate");
        (cert.pem(), key.serialize_pem())
    }

    pub fn decide(&self, csr: &CertificateSigningRequest) -> Outcome {
        let signer = csr.spec.signer_name.as_str();
        if ![
            KUBE_APISERVER_CLIENT,
            KUBE_APISERVER_CLIENT_KUBELET,
            KUBELET_SERVING,
        ]
        .contains(&signer)
        {
            return Outcome::Skip;
        }
        let done = csr
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some_and(|c| !c.0.is_empty());
        if done
            || !has_condition(csr, "Approved")
            || has_condition(csr, "Denied")
            || has_condition(csr, "Failed")
        {
            return Outcome::Skip;
        }
        let der = match csr::check_request(&csr.spec.request.0) {
            Ok(der) => der,
            Err(e) => return Outcome::Failed(format!("unable to parse csr: {e}")),
        };
        let usages = csr.spec.usages.clone().unwrap_or_default();
        if let Err(e) = validate_for_signer(signer, &der, &usages) {
            return Outcome::Failed(e);
        }
        match self.sign(&der, &usages, csr.spec.expiration_seconds) {
            Ok(pem) => Outcome::Issued(pem),
            Err(e) => Outcome::Failed(format!("the stand-in signer cannot sign this request: {e}")),
        }
    }

    fn sign(
        &self,
        der: &[u8],
        usages: &[String],
        expiration: Option<i32>,
    ) -> Result<String, rcgen::Error> {
        let request = CertificateSigningRequestParams::from_der(
            &CertificateSigningRequestDer::from(der.to_vec()),
        )?;
        let mut params = request.params;
        params.is_ca = IsCa::ExplicitNoCa; // never CA certificates
        params.key_usages = Vec::new();
        params.extended_key_usages = Vec::new();
        for u in usages {
            match u.as_str() {
                "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "content commitment" => params.key_usages.push(KeyUsagePurpose::ContentCommitment),
                "key agreement" => params.key_usages.push(KeyUsagePurpose::KeyAgreement),
                "data encipherment" => params.key_usages.push(KeyUsagePurpose::DataEncipherment),
                "server auth" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth),
                "client auth" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                "code signing" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::CodeSigning),
                "email protection" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::EmailProtection),
                "timestamping" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::TimeStamping),
                "ocsp signing" => params
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::OcspSigning),
                _ => {}
            }
        }
        // Lifetime: expirationSeconds when set, capped at the cluster signing duration;
        // backdated 5 minutes for clock skew, as the controller does.
        let requested = expiration.map(|s| Duration::from_secs(s.max(0) as u64));
        let lifetime = requested.map_or(self.max_duration, |r| r.min(self.max_duration));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
        let serial: Vec<u8> = (0..2)
            .flat_map(|_| crate::store::random_u64().to_be_bytes())
            .collect();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(
            &[&[0x01][..], &serial].concat(),
        ));
        let cert = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.issuer)?;
        Ok(cert.pem())
    }
}

impl Default for Signer {
    fn default() -> Self {
        Signer::new()
    }
}

struct Subject {
    cn: Vec<String>,
    o: Vec<String>,
    dns: usize,
    ip: usize,
    email: usize,
    uri: usize,
}

fn subject(der: &[u8]) -> Option<Subject> {
    use x509_parser::prelude::*;
    let (_, csr) = X509CertificationRequest::from_der(der).ok()?;
    let info = &csr.certification_request_info;
    let strs = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let mut s = Subject {
        cn: strs(&mut info.subject.iter_common_name()),
        o: strs(&mut info.subject.iter_organization()),
        dns: 0,
        ip: 0,
        email: 0,
        uri: 0,
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(_) => s.dns += 1,
                    GeneralName::IPAddress(_) => s.ip += 1,
                    GeneralName::RFC822Name(_) => s.email += 1,
                    GeneralName::URI(_) => s.uri += 1,
                    _ => {}
                }
            }
        }
    }
    Some(s)
}

/// The signer's own rules (`pkg/apis/certificates/v1` helpers `ValidateKubeletClientCSR`,
/// `ValidateKubeletServingCSR`, and the kube-apiserver-client usage check).
fn validate_for_signer(signer: &str, der: &[u8], usages: &[String]) -> Result<(), String> {
    let has = |u: &str| usages.iter().any(|x| x == u);
    let only = |allowed: &[&str]| usages.iter().all(|u| allowed.contains(&u.as_str()));
    let s = subject(der).ok_or("unable to parse csr")?;
    match signer {
        KUBE_APISERVER_CLIENT => {
            if !has("client auth") {
                return Err(
                    "invalid usage for client certificate: missing required usage \"client auth\""
                        .into(),
                );
            }
            if !only(&["digital signature", "key encipherment", "client auth"]) {
                let bad: Vec<&String> = usages
                    .iter()
                    .filter(|u| {
                        !["digital signature", "key encipherment", "client auth"]
                            .contains(&u.as_str())
                    })
                    .collect();
                return Err(format!("invalid usage for client certificate: {bad:?}"));
            }
            Ok(())
        }
        KUBE_APISERVER_CLIENT_KUBELET | KUBELET_SERVING => {
            if s.o != ["system:nodes"] {
                return Err("subject organization is not system:nodes".into());
            }
            if !s
                .cn
                .first()
                .is_some_and(|cn| cn.starts_with("system:node:"))
            {
                return Err("subject common name does not begin with system:node:".into());
            }
            if s.email > 0 {
                return Err("Email subjectAltNames are not allowed".into());
            }
            if s.uri > 0 {
                return Err("URI subjectAltNames are not allowed".into());
            }
            if signer == KUBE_APISERVER_CLIENT_KUBELET {
                if s.dns > 0 {
                    return Err("DNS subjectAltNames are not allowed".into());
                }
                if s.ip > 0 {
                    return Err("IP subjectAltNames are not allowed".into());
                }
                if !has("client auth")
                    || !only(&["digital signature", "key encipherment", "client auth"])
                {
                    return Err(format!(
                        "usages did not match [\"client auth\" \"digital signature\" \"key encipherment\"]: {usages:?}"
                    ));
                }
            } else {
                if s.dns + s.ip == 0 {
                    return Err("DNS or IP subjectAltName is required".into());
                }
                if !has("server auth")
                    || !only(&["digital signature", "key encipherment", "server auth"])
                {
                    return Err(format!(
                        "usages did not match [\"digital signature\" \"key encipherment\" \"server auth\"]: {usages:?}"
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
