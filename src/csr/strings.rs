//! Decoding of directory-string attribute values, whatever ASN.1 string type carries them.

use serde::Serialize;
use x509_parser::asn1_rs::{Any, Tag};

/// The ASN.1 type a subject attribute value was encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StringType {
    #[serde(rename = "UTF8String")]
    Utf8,
    #[serde(rename = "PrintableString")]
    Printable,
    #[serde(rename = "IA5String")]
    Ia5,
    #[serde(rename = "NumericString")]
    Numeric,
    #[serde(rename = "VisibleString")]
    Visible,
    #[serde(rename = "TeletexString")]
    Teletex,
    #[serde(rename = "BMPString")]
    Bmp,
    #[serde(rename = "UniversalString")]
    Universal,
    /// Not a string type, or bytes that are not valid in their declared type: the value is
    /// reported as `#` + hex of its content.
    #[serde(rename = "undecodable")]
    Undecodable,
}

/// Decode an attribute value into text. Undecodable values come back as `#hex` with
/// [`StringType::Undecodable`], so they are reported rather than dropped.
pub fn decode(any: &Any<'_>) -> (String, StringType) {
    let data = any.data;
    let decoded = match any.tag() {
        Tag::Utf8String => std::str::from_utf8(data)
            .ok()
            .map(|s| (s.to_string(), StringType::Utf8)),
        Tag::PrintableString => ascii(data).map(|s| (s, StringType::Printable)),
        Tag::Ia5String => ascii(data).map(|s| (s, StringType::Ia5)),
        Tag::NumericString => ascii(data).map(|s| (s, StringType::Numeric)),
        Tag::VisibleString => ascii(data).map(|s| (s, StringType::Visible)),
        // T.61 is in practice Latin-1 (as Go and OpenSSL treat it).
        Tag::T61String => Some((
            data.iter().map(|b| char::from(*b)).collect(),
            StringType::Teletex,
        )),
        Tag::BmpString => utf16be(data).map(|s| (s, StringType::Bmp)),
        Tag::UniversalString => utf32be(data).map(|s| (s, StringType::Universal)),
        _ => None,
    };
    decoded.unwrap_or_else(|| (format!("#{}", super::hex(data)), StringType::Undecodable))
}

fn ascii(data: &[u8]) -> Option<String> {
    data.is_ascii()
        .then(|| String::from_utf8_lossy(data).into_owned())
}

fn utf16be(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(2) {
        return None;
    }
    let units = data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

fn utf32be(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(4) {
        return None;
    }
    data.chunks_exact(4)
        .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wide_strings() {
        assert_eq!(
            utf16be(&[0, b'h', 0, b'i', 0x00, 0xe9]).as_deref(),
            Some("hié")
        );
        assert_eq!(utf16be(&[0, b'h', 0]), None);
        assert_eq!(utf16be(&[0xd8, 0x00]), None, "lone surrogate");
        assert_eq!(
            utf32be(&[0, 0, 0, b'a', 0, 1, 0xf6, 0x00]).as_deref(),
            Some("a😀")
        );
        assert_eq!(utf32be(&[0, 0x11, 0, 0]), None, "beyond U+10FFFF");
    }
}
