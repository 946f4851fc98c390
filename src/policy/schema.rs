//! The policy file format (`csr-warden.io/v1alpha1`, kind `CSRPolicy`), as written by people.
//!
//! These types only describe the YAML; [`super::compile`] checks them and turns them into the
//! form evaluation uses. Every struct refuses unknown fields.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub const API_VERSION: &str = "csr-warden.io/v1alpha1";
pub const KIND: &str = "CSRPolicy";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyDocument {
    #[schemars(with = "String")]
    pub api_version: Spanned<String>,
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    pub metadata: Metadata,
    pub spec: PolicySpec,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Approve,
    Deny,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default)]
    pub description: Option<String>,
    #[schemars(with = "Action")]
    pub action: Spanned<Action>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(rename = "match")]
    pub selector: Selector,
    // Rules of approve policies.
    #[serde(default)]
    #[schemars(with = "Option<SubjectRules>")]
    pub subject: Option<Spanned<SubjectRules>>,
    #[serde(default)]
    #[schemars(with = "Option<SanRules>")]
    pub subject_alt_names: Option<Spanned<SanRules>>,
    #[serde(default)]
    #[schemars(with = "Option<UsageRules>")]
    pub usages: Option<Spanned<UsageRules>>,
    #[serde(default)]
    #[schemars(with = "Option<KeyRules>")]
    pub key: Option<Spanned<KeyRules>>,
    #[serde(default)]
    #[schemars(with = "Option<ExpirationRules>")]
    pub expiration: Option<Spanned<ExpirationRules>>,
    #[serde(default)]
    #[schemars(with = "Option<ExtensionRules>")]
    pub extensions: Option<Spanned<ExtensionRules>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub waive_guards: Vec<Spanned<String>>,
    // Conditions of deny policies.
    #[serde(default)]
    #[schemars(with = "Option<Vec<DenyCondition>>")]
    pub deny_when: Option<Spanned<Vec<DenyCondition>>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    #[schemars(with = "Vec<String>")]
    pub signer_names: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub usernames: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub groups: Vec<Spanned<String>>,
}

/// Allowed values of one subject attribute. In `otherAttributes`, `oid` names the attribute.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttributeRule {
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub oid: Option<Spanned<String>>,
    /// Exact values; `${capture}` is replaced by the captured text, compared literally.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub values: Vec<Spanned<String>>,
    /// Regular expressions, each matching the whole value.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub patterns: Vec<Spanned<String>>,
    /// At least one value must be present.
    #[serde(default)]
    pub required: bool,
    /// Each of these values (templates) must be present.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub required_values: Vec<Spanned<String>>,
    /// How many values may appear (default 1: two CNs are refused unless allowed here).
    #[serde(default)]
    pub max_count: Option<usize>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubjectRules {
    #[schemars(with = "Option<AttributeRule>")]
    pub common_name: Option<Spanned<AttributeRule>>,
    #[schemars(with = "Option<AttributeRule>")]
    pub organization: Option<Spanned<AttributeRule>>,
    #[schemars(with = "Option<AttributeRule>")]
    pub organizational_unit: Option<Spanned<AttributeRule>>,
    #[schemars(with = "Option<AttributeRule>")]
    pub country: Option<Spanned<AttributeRule>>,
    #[schemars(with = "Option<AttributeRule>")]
    pub province: Option<Spanned<AttributeRule>>,
    #[schemars(with = "Option<AttributeRule>")]
    pub locality: Option<Spanned<AttributeRule>>,
    #[schemars(with = "Option<AttributeRule>")]
    pub street_address: Option<Spanned<AttributeRule>>,
    #[schemars(with = "Option<AttributeRule>")]
    pub postal_code: Option<Spanned<AttributeRule>>,
    #[schemars(with = "Option<AttributeRule>")]
    pub serial_number: Option<Spanned<AttributeRule>>,
    #[serde(default)]
    #[schemars(with = "Vec<AttributeRule>")]
    pub other_attributes: Vec<Spanned<AttributeRule>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SanTypeRule {
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub values: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub patterns: Vec<Spanned<String>>,
    #[serde(default)]
    pub min_count: Option<usize>,
    #[serde(default)]
    pub max_count: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpRule {
    #[schemars(with = "Vec<String>")]
    pub cidrs: Vec<Spanned<String>>,
    #[serde(default)]
    pub min_count: Option<usize>,
    #[serde(default)]
    pub max_count: Option<usize>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OtherNameRule {
    #[schemars(with = "Vec<String>")]
    pub oids: Vec<Spanned<String>>,
    #[serde(default)]
    pub min_count: Option<usize>,
    #[serde(default)]
    pub max_count: Option<usize>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SanRules {
    #[serde(default)]
    pub min_count: Option<usize>,
    #[serde(default)]
    pub max_count: Option<usize>,
    #[schemars(with = "Option<SanTypeRule>")]
    pub dns_names: Option<Spanned<SanTypeRule>>,
    #[schemars(with = "Option<IpRule>")]
    pub ip_addresses: Option<Spanned<IpRule>>,
    #[schemars(with = "Option<SanTypeRule>")]
    pub email_addresses: Option<Spanned<SanTypeRule>>,
    #[schemars(with = "Option<SanTypeRule>")]
    pub uris: Option<Spanned<SanTypeRule>>,
    #[schemars(with = "Option<OtherNameRule>")]
    pub other_names: Option<Spanned<OtherNameRule>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UsageRules {
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allowed: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub required: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyRules {
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub algorithms: Vec<Spanned<String>>,
    #[serde(default)]
    pub rsa_min_bits: Option<usize>,
    #[serde(default)]
    pub rsa_max_bits: Option<usize>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ecdsa_curves: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExpirationRules {
    #[serde(default)]
    pub max_seconds: Option<i64>,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtensionRules {
    #[serde(default, rename = "allowedOIDs")]
    #[schemars(with = "Vec<String>")]
    pub allowed_oids: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DenyCondition {
    #[schemars(with = "String")]
    pub field: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub values: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub patterns: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cidrs: Vec<Spanned<String>>,
    #[serde(default)]
    pub message: Option<String>,
}
