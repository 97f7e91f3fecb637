//! The service entry a publisher signs on their machine: its command-line arguments
//! (shared by `busbar hub publish` and `busbar hub sign`), the signing itself, and the signed
//! bundle `busbar hub sign` writes for the console to publish.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::protocol::{self, FleetService};
use busbar_base::digest::Sha256;

/// The service entry `busbar hub publish` and `busbar hub sign` make and sign.
#[derive(Debug, Args)]
pub struct EntryArgs {
    /// The secret signing key (as `busbar hub keygen` wrote it).
    #[arg(long)]
    pub key: PathBuf,
    /// The service's name on the bus.
    #[arg(long)]
    pub service: String,
    /// The component (.wasm).
    #[arg(long)]
    pub component: PathBuf,
    /// A configuration property, key=value; the value is JSON when it parses as JSON, else
    /// a string (repeatable).
    #[arg(long = "config", value_parser = parse_property)]
    pub config: Vec<(String, serde_json::Value)>,
    /// Publish it disabled: nodes keep it but do not run it.
    #[arg(long)]
    pub disabled: bool,
    /// Its sandbox limits, as the JSON of a manifest's `limits`, e.g.
    /// '{"mailbox": 1024, "deadline_ms": 500}'.
    #[arg(long, value_parser = parse_json::<busbar_base::limits::Limits>)]
    pub limits: Option<busbar_base::limits::Limits>,
    /// Its grants, as the JSON of a manifest's `grants`, e.g.
    /// '{"destinations": ["seq-receiver"]}'.
    #[arg(long, value_parser = parse_json::<busbar_base::grants::Grants>)]
    pub grants: Option<busbar_base::grants::Grants>,
    /// An MQTT subscription made before it starts, as the JSON of a manifest's `subscribe`
    /// item (repeatable), e.g. '{"filter": "/zigbee2mqtt/+/temperature", "broker": "field"}'.
    #[arg(long, value_parser = parse_json::<busbar_base::grants::Subscription>)]
    pub subscribe: Vec<busbar_base::grants::Subscription>,
    /// Share it in this group across the fabric: `{name}@{group}` reaches one of the
    /// group's instances, on whichever node.
    #[arg(long, value_parser = |s: &str| busbar_base::address::Place::parse(s))]
    pub shared: Option<busbar_base::address::Place>,
}

/// A component and its entry, signed.
pub(crate) struct Signed {
    pub(crate) key: ed25519_dalek::SigningKey,
    pub(crate) wasm: Vec<u8>,
    pub(crate) digest: Sha256,
    pub(crate) service: FleetService,
    pub(crate) signature: String,
}

/// Reads the component and the key of `entry` and signs the entry (checked first, with the
/// words the hub and the nodes would use) and the component.
pub(crate) fn sign_entry(entry: &EntryArgs) -> anyhow::Result<Signed> {
    busbar_base::names::check_name(&entry.service)
        .map_err(|e| anyhow::anyhow!("--service: {e}"))?;
    let key_text = std::fs::read_to_string(&entry.key)
        .with_context(|| format!("cannot read secret key {}", entry.key.display()))?;
    let key = protocol::parse_secret_key(&key_text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", entry.key.display()))?;
    let wasm = std::fs::read(&entry.component)
        .with_context(|| format!("cannot read component {}", entry.component.display()))?;
    let digest = busbar_base::digest::Sha256::of(&wasm);
    let sha = digest.to_string();
    let size = wasm.len() as u64;
    let mut service = FleetService {
        name: entry.service.clone(),
        sha256: digest.clone(),
        size,
        signature: String::new(),
        enabled: !entry.disabled,
        config: entry.config.iter().cloned().collect::<BTreeMap<_, _>>(),
        limits: entry.limits.clone().unwrap_or_default(),
        grants: entry.grants.clone().unwrap_or_default(),
        subscribe: entry.subscribe.clone(),
        shared: entry.shared.clone(),
        artifacts: Vec::new(),
    };
    // Refused here with the words the hub and the nodes would use.
    service
        .check()
        .map_err(|e| anyhow::anyhow!("service {e}"))?;
    // The whole entry is signed here, on the publisher's machine: the hub cannot change it.
    protocol::sign_entry(&key, &mut service);
    let signature = protocol::sign(&key, &sha);
    Ok(Signed {
        key,
        wasm,
        digest,
        service,
        signature,
    })
}

/// What `busbar hub sign` writes: an entry and its component's signature, for the console to
/// upload with the component and publish.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SignedBundle {
    /// The entry, signed.
    pub entry: FleetService,
    /// The component's signature (the `x-busbar-signature` of its upload).
    pub component_signature: String,
}

/// `busbar hub sign`.
#[derive(Debug, Args)]
pub struct HubSignArgs {
    /// The entry.
    #[command(flatten)]
    pub entry: EntryArgs,
    /// Where to write the signed bundle (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// `busbar hub sign`: signs an entry on this machine, without a hub, and writes it with the
/// component's signature; the console publishes it with the component. No artifacts: nodes
/// compile it themselves (gateway builds without a compiler need `busbar hub publish`).
pub fn sign(args: &HubSignArgs) -> anyhow::Result<()> {
    let signed = sign_entry(&args.entry)?;
    let bundle = SignedBundle {
        entry: signed.service,
        component_signature: signed.signature,
    };
    let text = serde_json::to_string_pretty(&bundle).context("cannot serialize the bundle")?;
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "signed {} {} into {}: publish it with the component from the console",
        bundle.entry.name,
        bundle.entry.sha256.short(),
        args.out.display()
    );
    Ok(())
}

/// Parses a JSON argument into `T`, naming what is wrong.
fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid: {e}"))
}

/// Parses `key=value`; the value is JSON when it parses, else a string.
fn parse_property(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected key=value"))?;
    if key.is_empty() {
        return Err(format!("`{text}`: the key is empty"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    Ok((key.into(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_json_when_they_parse() {
        assert_eq!(
            parse_property("n=3").unwrap(),
            ("n".into(), serde_json::json!(3))
        );
        assert_eq!(
            parse_property("s=hello world").unwrap(),
            ("s".into(), serde_json::json!("hello world"))
        );
        assert_eq!(
            parse_property("o={\"a\":true}").unwrap().1,
            serde_json::json!({"a": true})
        );
        assert!(parse_property("novalue").is_err());
    }
}
