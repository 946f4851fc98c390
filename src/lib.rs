//! csr-warden decides Kubernetes CertificateSigningRequests by policy.
//!
//! The decision core is pure: [`csr`] extracts the facts of a PKCS#10 request, [`policy`]
//! evaluates them with the Kubernetes fields of the request against a set of policies. The CLI
//! (and later the admission webhook and the approver) are thin adapters around it.
#![forbid(unsafe_code)]

pub mod admission;
pub mod approver;
pub mod cli;
pub mod csr;
pub mod input;
pub mod json_schema;
pub mod policy;
pub mod policy_dir;
pub mod record;
pub mod request;
pub mod server;
pub mod suite;
