//! The API server's rules for CertificateSigningRequests (`pkg/apis/certificates/validation`,
//! `pkg/registry/certificates/certificates`, the `CertificateSubjectRestriction` admission plugin),
//! as summarised in `../shared/reference/kubernetes-csr.md`.

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde_json::{Value, json};

use crate::status::ApiError;
use crate::store::{CSRS, now};

/// Usages the v1 API accepts (`certificates.KeyUsage` constants).
pub const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

pub fn parse(obj: &Value) -> Result<CertificateSigningRequest, ApiError> {
    serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as a CertificateSigningRequest: {e}"
        ))
    })
}

pub fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Go's `field.ErrorList.ToAggregate().Error()`: one error as it is, several in brackets.
fn aggregate(errors: &[String]) -> String {
    if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("[{}]", errors.join(", "))
    }
}

/// The request's DER if it is a PEM `CERTIFICATE REQUEST` whose self-signature verifies.
pub fn check_request(pem: &[u8]) -> Result<Vec<u8>, String> {
    // `pem.Decode`: the first PEM block must be the request.
    let (kind, der) = <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .ok_or("PEM block type must be CERTIFICATE REQUEST")?;
    if kind != SectionKind::Csr {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    // x509-parser's ring verifier covers RSA PKCS#1 v1.5, ECDSA P-256/P-384 and Ed25519;
    // the real server also takes P-224, P-521 and RSA-PSS (a documented gap of the stand-in).
    csr.verify_signature()
        .map_err(|e| format!("x509: signature verification failed: {e}"))?;
    Ok(der)
}

fn qualified_signer_name(s: &str) -> bool {
    let Some((domain, path)) = s.split_once('/') else {
        return false;
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // `ValidateSignerName`: a fully qualified domain name, a slash, a path.
    domain.contains('.')
        && domain.len() <= 253
        && domain.split('.').all(label_ok)
        && !path.is_empty()
        && !path.chars().any(char::is_whitespace)
}

/// Validation of a new CSR (`ValidateCertificateSigningRequestCreate`), then the
/// `CertificateSubjectRestriction` admission plugin.
pub fn validate_create(csr: &CertificateSigningRequest, name: &str) -> Result<(), ApiError> {
    let spec = &csr.spec;
    let mut errors = Vec::new();
    if let Err(e) = check_request(&spec.request.0) {
        errors.push(format!(
            "spec.request: Invalid value: \"<{} bytes>\": {e}",
            spec.request.0.len()
        ));
    }
    if spec.signer_name.is_empty() {
        errors.push("spec.signerName: Required value".into());
    } else if spec.signer_name == LEGACY_UNKNOWN {
        errors.push(format!(
            "spec.signerName: Invalid value: {:?}: the legacy signerName is not allowed via this API version",
            spec.signer_name
        ));
    } else if !qualified_signer_name(&spec.signer_name) {
        errors.push(format!(
            "spec.signerName: Invalid value: {:?}: must be a fully qualified domain and path of the form 'example.com/signer-name'",
            spec.signer_name
        ));
    }
    let usages = spec.usages.clone().unwrap_or_default();
    if usages.is_empty() {
        errors.push("spec.usages: Required value".into());
    }
    for (i, u) in usages.iter().enumerate() {
        if !KNOWN_USAGES.contains(&u.as_str()) {
            errors.push(format!(
                "spec.usages[{i}]: Unsupported value: {u:?}: supported values: {}",
                KNOWN_USAGES
                    .iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else if usages[..i].contains(u) {
            errors.push(format!("spec.usages[{i}]: Duplicate value: {u:?}"));
        }
    }
    if let Some(s) = spec.expiration_seconds
        && s < 600
    {
        errors.push(format!(
            "spec.expirationSeconds: Invalid value: {s}: may not specify a duration less than 600 seconds (10 minutes)"
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(CSRS, name, &aggregate(&errors)));
    }
    // CertificateSubjectRestriction: no system:masters client certificates from this signer.
    if spec.signer_name == KUBE_APISERVER_CLIENT
        && let Ok(der) = check_request(&spec.request.0)
        && organizations(&der).iter().any(|o| o == "system:masters")
    {
        return Err(ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed",
            CSRS.qualified()
        )));
    }
    Ok(())
}

/// Subject O values of a request.
pub fn organizations(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::FromDer;
    let Ok((_, csr)) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
    else {
        return vec![];
    };
    csr.certification_request_info
        .subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect()
}

/// Prepare a new CSR as the create strategy does: the requester from the caller, no status.
pub fn prepare_create(obj: &mut Value, user: &crate::identity::Identity) {
    obj["spec"]["username"] = json!(user.username);
    obj["spec"]["uid"] = json!(user.uid);
    obj["spec"]["groups"] = json!(user.groups);
    if user.extra.is_empty() {
        if let Some(spec) = obj["spec"].as_object_mut() {
            spec.remove("extra");
        }
    } else {
        obj["spec"]["extra"] = json!(user.extra);
    }
    obj["status"] = json!({});
}

fn conditions(csr: &CertificateSigningRequest) -> Vec<CertificateSigningRequestCondition> {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

pub fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    conditions(csr)
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

const EXCLUSIVE: &[&str] = &["Approved", "Denied", "Failed"];

/// Condition rules shared by the approval and status subresources
/// (`validateConditions` in `pkg/apis/certificates/validation`).
fn validate_conditions(
    new: &[CertificateSigningRequestCondition],
    old: &[CertificateSigningRequestCondition],
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in new.iter().enumerate() {
        if c.type_.is_empty() {
            errors.push(format!("status.conditions[{i}].type: Required value"));
            continue;
        }
        if EXCLUSIVE.contains(&c.type_.as_str()) {
            if c.status != "True" {
                errors.push(format!(
                    "status.conditions[{i}].status: Unsupported value: {:?}: supported values: \"True\"",
                    c.status
                ));
            }
            if seen.contains(&c.type_.as_str()) {
                errors.push(format!(
                    "status.conditions[{i}].type: Duplicate value: {:?}",
                    c.type_
                ));
            }
            seen.push(&c.type_);
        } else if !["True", "False", "Unknown"].contains(&c.status.as_str()) {
            errors.push(format!(
                "status.conditions[{i}].status: Unsupported value: {:?}: supported values: \"False\", \"True\", \"Unknown\"",
                c.status
            ));
        }
    }
    if seen.contains(&"Approved") && seen.contains(&"Denied") {
        errors.push(
            "status.conditions: Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive"
                .into(),
        );
    }
    for o in old {
        if EXCLUSIVE.contains(&o.type_.as_str()) && !new.iter().any(|c| c.type_ == o.type_) {
            errors.push(format!(
                "status.conditions: Forbidden: updates may not remove a condition of type {:?}",
                o.type_
            ));
        }
    }
    errors
}

fn fill_times(
    conds: &mut [CertificateSigningRequestCondition],
    old: &[CertificateSigningRequestCondition],
) {
    let stamp = || {
        serde_json::from_value::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>(json!(now()))
            .ok()
    };
    for c in conds.iter_mut() {
        let before = old.iter().find(|o| o.type_ == c.type_);
        if c.last_update_time.is_none() {
            c.last_update_time = before
                .and_then(|b| b.last_update_time.clone())
                .or_else(stamp);
        }
        if c.last_transition_time.is_none() {
            c.last_transition_time = match before {
                Some(b) if b.status == c.status => b.last_transition_time.clone().or_else(stamp),
                _ => stamp(),
            };
        }
    }
}

/// The stored object after an `approval` write: only `status.conditions` is taken from `body`
/// (`csrApprovalStrategy.PrepareForUpdate`).
pub fn apply_approval(stored: &Value, body: &Value) -> Result<Value, ApiError> {
    let old = parse(stored)?;
    let new = parse(body)?;
    let name = name_of(stored);
    let old_conds = conditions(&old);
    let mut new_conds = conditions(&new);
    let errors = validate_conditions(&new_conds, &old_conds);
    if !errors.is_empty() {
        return Err(ApiError::invalid(CSRS, &name, &aggregate(&errors)));
    }
    fill_times(&mut new_conds, &old_conds);
    let mut out = stored.clone();
    out["status"]["conditions"] = serde_json::to_value(&new_conds).unwrap_or(json!([]));
    Ok(out)
}

/// The stored object after a `status` write: conditions and certificate from `body`
/// (`csrStatusStrategy`); Approved and Denied cannot be changed there.
pub fn apply_status(stored: &Value, body: &Value) -> Result<Value, ApiError> {
    let old = parse(stored)?;
    let new = parse(body)?;
    let name = name_of(stored);
    let old_conds = conditions(&old);
    let mut new_conds = conditions(&new);
    let mut errors = validate_conditions(&new_conds, &old_conds);
    for kind in ["Approved", "Denied"] {
        let had = old_conds.iter().any(|c| c.type_ == kind);
        let has = new_conds.iter().any(|c| c.type_ == kind);
        if has && !had {
            errors.push(format!(
                "status.conditions: Forbidden: updates may not add a condition of type {kind:?}"
            ));
        }
    }
    let old_cert = old.status.as_ref().and_then(|s| s.certificate.clone());
    let new_cert = new.status.as_ref().and_then(|s| s.certificate.clone());
    if let Some(cert) = &new_cert
        && !cert.0.is_empty()
    {
        if old_cert
            .as_ref()
            .is_some_and(|o| !o.0.is_empty() && o.0 != cert.0)
        {
            errors.push(
                "status.certificate: Forbidden: updates may not modify existing certificate content"
                    .into(),
            );
        }
        let blocks = rustls_pki_types::CertificateDer::pem_slice_iter(&cert.0)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
        if blocks.is_empty() {
            errors.push(
                "status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block"
                    .into(),
            );
        }
        if !has_condition(&old, "Approved") || has_condition(&old, "Failed") {
            errors.push(
                "status.certificate: Invalid value: \"<certificate data>\": certificate issuance requires an Approved condition and no Failed condition"
                    .into(),
            );
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(CSRS, &name, &aggregate(&errors)));
    }
    fill_times(&mut new_conds, &old_conds);
    let mut out = stored.clone();
    out["status"]["conditions"] = serde_json::to_value(&new_conds).unwrap_or(json!([]));
    match new_cert {
        Some(c) if !c.0.is_empty() => {
            out["status"]["certificate"] = serde_json::to_value(&c).unwrap_or_default()
        }
        _ => {
            if let Some(s) = out["status"].as_object_mut()
                && old_cert.is_none()
            {
                s.remove("certificate");
            }
        }
    }
    Ok(out)
}

/// The object after an update of the main resource: spec and status stay as stored
/// (`csrStrategy.PrepareForUpdate`); metadata (labels, annotations, finalizers) is taken.
pub fn apply_update(stored: &Value, body: &Value) -> Value {
    let mut out = stored.clone();
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        match body["metadata"].get(field) {
            Some(v) => out["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = out["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    out
}
