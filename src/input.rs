//! Reading requests to decide from what people have at hand: a PEM (or DER) request, a
//! CertificateSigningRequest manifest (YAML or JSON, one or more documents, or a List), or an
//! AdmissionReview. Pure: bytes in, documents out.

use std::collections::BTreeMap;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::core::admission::AdmissionReview;
use serde_json::Value;

/// One request found in an input, with whatever Kubernetes fields the input carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CsrDocument {
    /// Where it came from: the file, with `#N` when a file holds several.
    pub label: String,
    /// `metadata.name` of a manifest or the AdmissionReview's `request.name`.
    pub name: Option<String>,
    pub uid: Option<String>,
    /// The PKCS#10 request, PEM or DER.
    pub request: Vec<u8>,
    pub signer_name: Option<String>,
    pub usages: Option<Vec<String>>,
    pub expiration_seconds: Option<i64>,
    pub username: Option<String>,
    pub requester_uid: Option<String>,
    pub groups: Option<Vec<String>>,
    pub extra: Option<BTreeMap<String, Vec<String>>>,
    /// When the input is a decision record: what was decided then.
    pub recorded: Option<Recorded>,
}

impl CsrDocument {
    /// The decision input: the request and the Kubernetes fields this document records
    /// (absent ones empty).
    pub fn review_input(&self, limits: &crate::csr::Limits) -> crate::request::ReviewInput {
        crate::request::ReviewInput::new(
            &self.request,
            limits,
            crate::request::CsrSpec {
                signer_name: self.signer_name.clone().unwrap_or_default(),
                usages: self.usages.clone().unwrap_or_default(),
                expiration_seconds: self.expiration_seconds,
            },
            crate::request::Requester {
                username: self.username.clone().unwrap_or_default(),
                uid: self.requester_uid.clone().unwrap_or_default(),
                groups: self.groups.clone().unwrap_or_default(),
                extra: self.extra.clone().unwrap_or_default(),
            },
        )
    }
}

/// The decision a decision record reports, to compare a new decision with.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub decision: crate::policy::Verdict,
    pub policy: Option<String>,
    pub policy_digest: String,
    pub source: String,
    pub timestamp: String,
}

/// Every request in `bytes`, or why the input is none of the accepted forms.
pub fn read_documents(label: &str, bytes: &[u8]) -> Result<Vec<CsrDocument>, String> {
    let trimmed = bytes.trim_ascii_start();
    let raw = |request: &[u8]| CsrDocument {
        label: label.to_string(),
        request: request.to_vec(),
        ..CsrDocument::default()
    };
    if trimmed.starts_with(b"-----BEGIN") || trimmed.first() == Some(&0x30) {
        return Ok(vec![raw(bytes)]);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        "not a PEM request, a CertificateSigningRequest manifest or an AdmissionReview \
         (not text, and not DER)"
            .to_string()
    })?;
    let values: Vec<Value> = if trimmed.first() == Some(&b'{') {
        // One JSON document, or several in a row (decision records as JSON lines).
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        serde_saphyr::from_multiple(text).map_err(|e| {
            format!(
                "not a PEM request, a CertificateSigningRequest manifest or an AdmissionReview: {}",
                e.to_string().lines().next().unwrap_or("invalid YAML")
            )
        })?
    };
    let mut docs = Vec::new();
    for value in values {
        collect(value, &mut docs)?;
    }
    if docs.is_empty() {
        return Err(
            "no CertificateSigningRequest found: expected a PEM request, a manifest of kind \
             CertificateSigningRequest or an AdmissionReview"
                .to_string(),
        );
    }
    let several = docs.len() > 1;
    for (i, d) in docs.iter_mut().enumerate() {
        d.label = match (&d.name, several) {
            (Some(name), _) => format!("{label} ({name})"),
            (None, true) => format!("{label}#{}", i + 1),
            (None, false) => label.to_string(),
        };
    }
    Ok(docs)
}

fn collect(value: Value, out: &mut Vec<CsrDocument>) -> Result<(), String> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    match kind {
        "CertificateSigningRequest" => {
            let csr: CertificateSigningRequest = serde_json::from_value(value)
                .map_err(|e| format!("invalid CertificateSigningRequest: {e}"))?;
            out.push(from_manifest(csr));
        }
        "List" | "CertificateSigningRequestList" => {
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for item in items {
                collect(item, out)?;
            }
        }
        "AdmissionReview" => {
            let review: AdmissionReview<CertificateSigningRequest> = serde_json::from_value(value)
                .map_err(|e| format!("invalid AdmissionReview: {e}"))?;
            let req: kube::core::admission::AdmissionRequest<CertificateSigningRequest> = review
                .try_into()
                .map_err(|e| format!("AdmissionReview without a request: {e}"))?;
            let csr = req.object.ok_or("AdmissionReview request has no object")?;
            let mut doc = from_manifest(csr);
            // At CREATE the caller is the requester. In any other review (an approval, say)
            // the caller is someone else: the requester is what the API server recorded in spec.
            if req.operation == kube::core::admission::Operation::Create {
                let user = req.user_info;
                doc.username = user.username.or(doc.username);
                doc.requester_uid = user.uid.or(doc.requester_uid);
                doc.groups = user.groups.or(doc.groups);
                doc.extra = user.extra.or(doc.extra);
            }
            if doc.name.is_none() && !req.name.is_empty() {
                doc.name = Some(req.name);
            }
            out.push(doc);
        }
        "DecisionRecord" => out.push(from_record(&value)?),
        "" => {
            return Err(
                "not a PEM request, a CertificateSigningRequest manifest or an AdmissionReview \
                 (no kind)"
                    .to_string(),
            );
        }
        other => return Err(format!("kind {other:?} is not a CertificateSigningRequest")),
    }
    Ok(())
}

/// A decision record (`csr-warden.io/v1alpha1`), to decide its request again.
fn from_record(v: &Value) -> Result<CsrDocument, String> {
    use base64::Engine;
    if v["apiVersion"] != crate::record::API_VERSION {
        return Err(format!(
            "decision record of apiVersion {}: this csr-warden reads {}",
            v["apiVersion"],
            crate::record::API_VERSION
        ));
    }
    let data = v["request"]["data"].as_str().ok_or(
        "decision record without request.data (written before records carried the request)",
    )?;
    let request = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("decision record: request.data is not base64: {e}"))?;
    let strings = |x: &Value| -> Option<Vec<String>> {
        x.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
    };
    let decision: crate::policy::Verdict = serde_json::from_value(v["decision"].clone())
        .map_err(|e| format!("decision record: decision: {e}"))?;
    Ok(CsrDocument {
        label: String::new(),
        name: v["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        uid: v["uid"].as_str().map(str::to_string),
        request,
        signer_name: v["request"]["signerName"].as_str().map(str::to_string),
        usages: strings(&v["request"]["usages"]),
        expiration_seconds: v["request"]["expirationSeconds"].as_i64(),
        username: v["requester"]["username"].as_str().map(str::to_string),
        requester_uid: v["requester"]["uid"].as_str().map(str::to_string),
        groups: strings(&v["requester"]["groups"]),
        extra: serde_json::from_value(v["requester"]["extra"].clone()).ok(),
        recorded: Some(Recorded {
            decision,
            policy: v["policy"].as_str().map(str::to_string),
            policy_digest: v["policyDigest"].as_str().unwrap_or_default().to_string(),
            source: v["source"].as_str().unwrap_or_default().to_string(),
            timestamp: v["timestamp"].as_str().unwrap_or_default().to_string(),
        }),
    })
}

fn from_manifest(csr: CertificateSigningRequest) -> CsrDocument {
    let spec = csr.spec;
    CsrDocument {
        label: String::new(),
        name: csr.metadata.name,
        uid: csr.metadata.uid,
        request: spec.request.0,
        signer_name: Some(spec.signer_name).filter(|s| !s.is_empty()),
        usages: spec.usages,
        expiration_seconds: spec.expiration_seconds.map(i64::from),
        username: spec.username,
        requester_uid: spec.uid,
        groups: spec.groups,
        extra: spec.extra,
        recorded: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str =
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";

    #[test]
    fn pem_is_taken_as_is() {
        let docs = read_documents("a.pem", PEM.as_bytes()).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].request, PEM.as_bytes());
        assert_eq!(docs[0].signer_name, None);
    }

    #[test]
    fn manifest_supplies_spec_and_identity() {
        let yaml = format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: alice\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n  expirationSeconds: 3600\n  username: alice\n  groups: [terraform]\n",
            base64(PEM)
        );
        let docs = read_documents("a.yaml", yaml.as_bytes()).unwrap();
        let d = &docs[0];
        assert_eq!(d.label, "a.yaml (alice)");
        assert_eq!(d.request, PEM.as_bytes());
        assert_eq!(
            d.signer_name.as_deref(),
            Some("kubernetes.io/kube-apiserver-client")
        );
        assert_eq!(d.usages, Some(vec!["client auth".to_string()]));
        assert_eq!(d.expiration_seconds, Some(3600));
        assert_eq!(d.groups, Some(vec!["terraform".to_string()]));
    }

    #[test]
    fn admission_review_takes_the_requester_from_user_info() {
        let json = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "certificates.k8s.io", "version": "v1", "kind": "CertificateSigningRequest"},
                "resource": {"group": "certificates.k8s.io", "version": "v1", "resource": "certificatesigningrequests"},
                "name": "csr-1",
                "operation": "CREATE",
                "userInfo": {"username": "system:node:worker-1", "groups": ["system:nodes", "system:authenticated"]},
                "object": {
                    "apiVersion": "certificates.k8s.io/v1",
                    "kind": "CertificateSigningRequest",
                    "metadata": {},
                    "spec": {"request": base64(PEM), "signerName": "kubernetes.io/kubelet-serving", "usages": ["server auth"]}
                },
                "dryRun": false
            }
        });
        let docs = read_documents("r.json", json.to_string().as_bytes()).unwrap();
        assert_eq!(docs[0].username.as_deref(), Some("system:node:worker-1"));
        assert_eq!(docs[0].name.as_deref(), Some("csr-1"));
        assert_eq!(docs[0].label, "r.json (csr-1)");
    }

    #[test]
    fn anything_else_is_an_error() {
        assert!(read_documents("g", b"hello world").is_err());
        assert!(
            read_documents("g", b"kind: Pod\n")
                .unwrap_err()
                .contains("Pod")
        );
        assert!(read_documents("g", b"{not json").is_err());
        assert!(read_documents("g", &[0xff, 0xfe, 0x00]).is_err());
    }

    fn base64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }
}
