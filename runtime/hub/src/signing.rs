//! What the publisher's key signs. Two things, each with its own prefix so that one kind of
//! signature can never pass for the other:
//!
//! - a **component** (`busbar-component-v1:` + its sha256): checked by the hub when the
//!   component is uploaded, so only the publisher fills the hub's blob store;
//! - a **service entry** (`busbar-entry-v1:` + the entry as canonical JSON, every field but
//!   the signature): checked by the node before it applies the entry. It binds the name, the
//!   component's sha256 and size, `enabled`, the config, the limits and the grants, so a hub
//!   (or anyone on the way) cannot widen what a service may do or change how it runs;
//! - a **precompiled artifact** (`busbar-artifact-v1:` + the component's sha256, the
//!   artifact's sha256 and size, its target and engine fingerprint): checked by the hub on
//!   upload and by the node before it downloads or loads it, so native code runs only if the
//!   publisher made it from the very component the entry names, for that node's engine.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::Value;

use super::protocol::{Artifact, FleetService};
use busbar_base::digest::Sha256;

/// The bytes a component signature covers: a fixed prefix and the component's sha256 (hex),
/// so a signature cannot be mistaken for one over anything else.
pub fn signed_message(sha256: &str) -> Vec<u8> {
    format!("busbar-component-v1:{}", sha256.to_ascii_lowercase()).into_bytes()
}

/// Signs a component by its sha256 (hex); returns the signature as hex.
pub fn sign(key: &SigningKey, sha256: &str) -> String {
    hex::encode(key.sign(&signed_message(sha256)).to_bytes())
}

/// Checks `signature` (hex) of the component with `sha256` against `key`.
pub fn verify(key: &VerifyingKey, sha256: &str, signature: &str) -> Result<(), String> {
    check(key, &signed_message(sha256), signature).map_err(|e| {
        e.unwrap_or_else(|| "the signature does not match the hub's public key".into())
    })
}

/// The bytes an entry signature covers: `busbar-entry-v1:` and the entry without its
/// signature as JSON with object keys sorted and no spaces (config values included), so the
/// publisher and every node compute the same bytes from the same entry.
pub fn entry_message(entry: &FleetService) -> Vec<u8> {
    let mut value = serde_json::to_value(entry).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        fields.remove("signature");
        // Signed one by one (`artifact_message`).
        fields.remove("artifacts");
    }
    let mut out = String::from("busbar-entry-v1:");
    canonical(&value, &mut out);
    out.into_bytes()
}

/// Signs `entry` whole with the publisher's key (sets its `signature`).
pub fn sign_entry(key: &SigningKey, entry: &mut FleetService) {
    entry.signature = hex::encode(key.sign(&entry_message(entry)).to_bytes());
}

/// Checks that `entry` is exactly what the publisher signed.
pub fn verify_entry(key: &VerifyingKey, entry: &FleetService) -> Result<(), String> {
    check(key, &entry_message(entry), &entry.signature).map_err(|e| {
        e.unwrap_or_else(|| {
            "the entry's signature does not match the hub's public key (`public_key` in \
             [hub]): the entry was changed after it was signed (its version, config, limits, \
             grants or `enabled`), or another key signed it"
                .into()
        })
    })
}

/// The bytes an artifact signature covers: what it was compiled from, what it is, and what
/// it is for.
pub fn artifact_message(component: &Sha256, artifact: &Artifact) -> Vec<u8> {
    format!(
        "busbar-artifact-v1:component={component}:sha256={}:size={}:target={}:fingerprint={}",
        artifact.sha256, artifact.size, artifact.target, artifact.fingerprint
    )
    .into_bytes()
}

/// Signs `artifact` of `component` with the publisher's key (sets its `signature`).
pub fn sign_artifact(key: &SigningKey, component: &Sha256, artifact: &mut Artifact) {
    artifact.signature = hex::encode(key.sign(&artifact_message(component, artifact)).to_bytes());
}

/// Checks that the publisher made `artifact` from `component`, for its target and engine.
pub fn verify_artifact(
    key: &VerifyingKey,
    component: &Sha256,
    artifact: &Artifact,
) -> Result<(), String> {
    check(
        key,
        &artifact_message(component, artifact),
        &artifact.signature,
    )
    .map_err(|e| {
        e.unwrap_or_else(|| {
            "the artifact's signature does not match the hub's public key (`public_key` in \
             [hub]): another key signed it, or it was signed for another component, file, \
             target or engine"
                .into()
        })
    })
}

/// `Err(Some(_))`: the signature is malformed; `Err(None)`: it does not match.
fn check(key: &VerifyingKey, message: &[u8], signature: &str) -> Result<(), Option<String>> {
    let bytes = hex::decode(signature.trim())
        .map_err(|e| Some(format!("the signature is not hex: {e}")))?;
    let sig = Signature::from_slice(&bytes)
        .map_err(|_| Some(format!("the signature has {} bytes, not 64", bytes.len())))?;
    key.verify(message, &sig).map_err(|_| None)
}

/// Writes `v` as JSON with object keys sorted, whatever order the map keeps them in.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Reads a public key: 64 hex digits (as `busbar hub keygen` writes to `KEY.pub`).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "a public key is 64 hex digits".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an ed25519 public key: {e}"))
}

/// Reads a secret key: 64 hex digits (the seed `busbar hub keygen` writes to `KEY`).
pub fn parse_secret_key(text: &str) -> Result<SigningKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "a secret key is 64 hex digits".to_owned())?;
    Ok(SigningKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_digest_and_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let sha = "ab".repeat(32);
        let sig = sign(&key, &sha);
        verify(&key.verifying_key(), &sha, &sig).unwrap();
        let e = verify(&key.verifying_key(), &"cd".repeat(32), &sig).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(verify(&other, &sha, &sig).is_err());
        assert!(
            verify(&key.verifying_key(), &sha, "zz")
                .unwrap_err()
                .contains("not hex")
        );
        let public = hex::encode(key.verifying_key().to_bytes());
        assert_eq!(parse_public_key(&public).unwrap(), key.verifying_key());
    }

    fn artifact(key: &SigningKey, component: &Sha256) -> Artifact {
        let mut a = Artifact {
            target: "aarch64-unknown-linux-gnu".into(),
            fingerprint: busbar_base::digest::Fingerprint::of("engine"),
            sha256: Sha256::of(b"code"),
            size: 4,
            signature: String::new(),
        };
        sign_artifact(key, component, &mut a);
        a
    }

    #[test]
    fn an_artifact_signature_binds_its_component_file_target_and_engine() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let component = Sha256::of(b"component");
        let a = artifact(&key, &component);
        verify_artifact(&public, &component, &a).unwrap();
        let other_component = Sha256::of(b"other");
        assert!(verify_artifact(&public, &other_component, &a).is_err());
        type Change = Box<dyn Fn(&mut Artifact)>;
        let changes: Vec<Change> = vec![
            Box::new(|a| a.target = "armv7-unknown-linux-gnueabihf".into()),
            Box::new(|a| a.fingerprint = busbar_base::digest::Fingerprint::of("other")),
            Box::new(|a| a.sha256 = Sha256::of(b"other code")),
            Box::new(|a| a.size += 1),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut tampered = a.clone();
            change(&mut tampered);
            let e = verify_artifact(&public, &component, &tampered).unwrap_err();
            assert!(e.contains("does not match"), "change {i}: {e}");
        }
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let forged = artifact(&stranger, &component);
        assert!(verify_artifact(&public, &component, &forged).is_err());
    }

    #[test]
    fn an_entry_signature_covers_every_field_that_decides_what_a_service_may_do() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key();
        let mut entry = crate::protocol::test_service("echo", 'a');
        entry.config.insert(
            "nested".into(),
            serde_json::json!({"b": 1, "a": [true, 2.5]}),
        );
        // Floats that a lossy parse would change still verify after the trip through JSON.
        let floats = [
            0.1f64,
            1.0 / 3.0,
            2.2250738585072014e-308,
            9007199254740993.0,
            1e300,
        ];
        for (i, f) in floats.into_iter().enumerate() {
            entry.config.insert(format!("f{i}"), serde_json::json!(f));
        }
        sign_entry(&key, &mut entry);
        verify_entry(&public, &entry).unwrap();
        // Parsed back from JSON (as a node gets it), it still verifies.
        let text = serde_json::to_string(&entry).unwrap();
        verify_entry(&public, &serde_json::from_str(&text).unwrap()).unwrap();
        type Change = Box<dyn Fn(&mut FleetService)>;
        let changes: Vec<Change> = vec![
            Box::new(|e| e.name = "other".into()),
            Box::new(|e| e.sha256 = busbar_base::digest::Sha256::parse(&"b".repeat(64)).unwrap()),
            Box::new(|e| e.size += 1),
            Box::new(|e| e.enabled = false),
            Box::new(|e| {
                e.config.insert("k".into(), "v".into());
            }),
            Box::new(|e| e.limits.mailbox += 1),
            Box::new(|e| e.grants.privileged = true),
            Box::new(|e| e.grants.destinations.push("*".into())),
            Box::new(|e| e.grants.data = Some(busbar_base::grants::DataAccess::ReadWrite)),
            Box::new(|e| e.grants.env.push("HOME".into())),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut tampered = entry.clone();
            change(&mut tampered);
            let e = verify_entry(&public, &tampered).unwrap_err();
            assert!(e.contains("does not match"), "change {i}: {e}");
        }
        // Artifacts are signed on their own: adding one leaves the entry's signature valid.
        let mut with = entry.clone();
        with.artifacts.push(artifact(&key, &entry.sha256));
        verify_entry(&public, &with).unwrap();
        // A component signature is not an entry signature.
        let mut swapped = entry.clone();
        swapped.signature = sign(&key, entry.sha256.as_str());
        assert!(verify_entry(&public, &swapped).is_err());
    }
}
