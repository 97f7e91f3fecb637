//! A sha256 digest in hex, checked where it enters: 64 hex digits, kept lowercase. Everything
//! that comes from outside (a hub's manifest, a node's status, a path) names component
//! versions with it, so code further in can show, slice and compare digests without
//! checking them again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// 64 lowercase hex digits: the sha256 of a component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256(String);

/// Text that is not a sha256; says what it got (cut short, escaped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a sha256: expected 64 hex digits")]
pub struct NotSha256(String);

impl Sha256 {
    /// Checks `text` and keeps it lowercase.
    pub fn parse(text: &str) -> Result<Self, NotSha256> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(NotSha256(shown(text)))
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(hex::encode(sha2::Sha256::digest(bytes)))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, as logs show a version.
    pub fn short(&self) -> &str {
        // Checked ASCII of length 64: the slice is on a character boundary.
        self.0.get(..12).unwrap_or(&self.0)
    }
}

/// At most 80 characters of `text`, with control characters escaped: for error messages
/// that quote input.
pub fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(80).flat_map(char::escape_debug).collect();
    if text.chars().nth(80).is_some() {
        out.push('…');
    }
    out
}

impl TryFrom<String> for Sha256 {
    type Error = NotSha256;
    fn try_from(text: String) -> Result<Self, NotSha256> {
        Self::parse(&text)
    }
}

impl From<Sha256> for String {
    fn from(d: Sha256) -> Self {
        d.0
    }
}

impl std::str::FromStr for Sha256 {
    type Err = NotSha256;
    fn from_str(text: &str) -> Result<Self, NotSha256> {
        Self::parse(text)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Sha256 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Sha256 {
    fn eq(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

/// 16 lowercase hex digits: busbar's name for a wasm engine's compilation settings (its
/// wasmtime version, target and the settings that change generated code). A node announces
/// its own; a precompiled artifact names the one it was compiled for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

/// Text that is not an engine fingerprint; says what it got (cut short, escaped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an engine fingerprint: expected 16 hex digits")]
pub struct NotFingerprint(String);

impl Fingerprint {
    /// Checks `text` and keeps it lowercase.
    pub fn parse(text: &str) -> Result<Self, NotFingerprint> {
        if text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(NotFingerprint(shown(text)))
        }
    }

    /// The fingerprint of a description of the settings: the first 16 hex digits of its
    /// sha256.
    pub fn of(description: &str) -> Self {
        let digest = Sha256::of(description.as_bytes());
        Self(digest.as_str().chars().take(16).collect())
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = NotFingerprint;
    fn try_from(text: String) -> Result<Self, NotFingerprint> {
        Self::parse(&text)
    }
}

impl From<Fingerprint> for String {
    fn from(d: Fingerprint) -> Self {
        d.0
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = NotFingerprint;
    fn from_str(text: &str) -> Result<Self, NotFingerprint> {
        Self::parse(text)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_hex_digits_pass_and_are_kept_lowercase() {
        let d = Sha256::parse(&"AB".repeat(32)).unwrap();
        assert_eq!(d.as_str(), "ab".repeat(32));
        assert_eq!(d.short(), "abababababab");
        for bad in ["", "abc", "../etc/passwd", &"g".repeat(64), &"é".repeat(32)] {
            assert!(Sha256::parse(bad).is_err(), "{bad}");
        }
        // Non-ASCII input of the right byte length is refused, not sliced.
        let e = serde_json::from_str::<Sha256>(&format!("\"{}\"", "ü".repeat(32))).unwrap_err();
        assert!(e.to_string().contains("is not a sha256"), "{e}");
        assert_eq!(Sha256::of(b"").short(), "e3b0c44298fc");
    }

    #[test]
    fn a_fingerprint_is_16_hex_digits() {
        let f = Fingerprint::of("settings");
        assert_eq!(f.as_str().len(), 16);
        assert_eq!(Fingerprint::parse(&f.as_str().to_uppercase()).unwrap(), f);
        for bad in ["", "abc", &"g".repeat(16), &"ü".repeat(8), &"a".repeat(64)] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad}");
        }
        let e = serde_json::from_str::<Fingerprint>("\"x\"").unwrap_err();
        assert!(e.to_string().contains("not an engine fingerprint"), "{e}");
    }

    #[test]
    fn shown_text_is_cut_and_escaped() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(100)).chars().count(), 81);
    }
}
