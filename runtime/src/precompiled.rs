//! Components compiled ahead of time for another machine (`busbar compile --target`), e.g. on
//! the hub for a fleet of ARM boards.
//!
//! An artifact is a wasmtime `.cwasm` behind a one-line JSON header naming the component it
//! was compiled from (sha256), the target it is for and the busbar version that made it:
//!
//! ```text
//! busbar-precompiled
//! {"format":1,"sha256":"…","target":"aarch64-unknown-linux-gnu","busbar":"0.1.0","fingerprint":"…"}
//! <cwasm bytes>
//! ```
//!
//! A node uses an artifact only if it was made from the exact component the manifest names,
//! for the node's own target and engine fingerprint ([`crate::engine::EngineConfig::fingerprint`]),
//! and wasmtime accepts it for the node's engine (same wasmtime, compatible settings and CPU
//! features). Otherwise it says why in the log and compiles the component itself, or, built
//! without a compiler, refuses the component.

#![allow(unsafe_code)]

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use busbar_base::digest::Fingerprint;
use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8] = b"busbar-precompiled\n";
const FORMAT: u32 = 1;

/// The target triple this busbar was built for, e.g. `aarch64-unknown-linux-gnu`.
pub const HOST_TARGET: &str = env!("BUSBAR_TARGET");

/// What an artifact says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Layout version of the file.
    pub format: u32,
    /// sha256 (hex) of the component it was compiled from.
    pub sha256: String,
    /// The target triple it runs on.
    pub target: String,
    /// The busbar version that compiled it.
    pub busbar: String,
    /// The engine fingerprint it was compiled for (artifacts of older busbars have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
}

/// The wasmtime compilation target for a node's triple: 32-bit ARM nodes run the Pulley
/// interpreter (Cranelift has no 32-bit ARM backend), everything else native code.
pub fn engine_target(triple: &str) -> &str {
    if triple.starts_with("armv7") || triple.starts_with("arm-") {
        "pulley32"
    } else {
        triple
    }
}

/// Compiles `wasm` with `engine` (already configured for `target`, whose fingerprint is
/// `fingerprint`) into an artifact: header and compiled code.
pub fn compile(
    engine: &Engine,
    wasm: &[u8],
    target: &str,
    fingerprint: &Fingerprint,
) -> anyhow::Result<(Header, Vec<u8>)> {
    use sha2::Digest as _;
    let header = Header {
        format: FORMAT,
        sha256: hex::encode(sha2::Sha256::digest(wasm)),
        target: target.to_owned(),
        busbar: env!("CARGO_PKG_VERSION").to_owned(),
        fingerprint: Some(fingerprint.clone()),
    };
    let cwasm = precompile(engine, wasm)?;
    let mut out = MAGIC.to_vec();
    serde_json::to_writer(&mut out, &header)?;
    out.push(b'\n');
    out.extend_from_slice(&cwasm);
    Ok((header, out))
}

#[cfg(feature = "compiler")]
fn precompile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    engine
        .precompile_component(wasm)
        .map_err(anyhow::Error::from)
        .context("compiling the component")
}

#[cfg(not(feature = "compiler"))]
fn precompile(_engine: &Engine, _wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    anyhow::bail!(
        "this busbar was built without a compiler (the gateway build): compile on a machine \
         with the full build"
    )
}

/// Compiles `wasm` into an artifact ([`compile`]) and writes it to `out` atomically.
pub fn write(
    engine: &Engine,
    wasm: &[u8],
    target: &str,
    fingerprint: &Fingerprint,
    out: &Path,
) -> anyhow::Result<Header> {
    let (header, bytes) = compile(engine, wasm, target, fingerprint)?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(header)
}

/// Reads an artifact's header and the offset of its compiled code.
pub fn read_header(bytes: &[u8]) -> anyhow::Result<(Header, usize)> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .context("not a busbar precompiled artifact (made by `busbar compile`)")?;
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .context("the artifact's header is cut short")?;
    let header: Header =
        serde_json::from_slice(&rest[..end]).context("the artifact's header is not valid")?;
    anyhow::ensure!(
        header.format == FORMAT,
        "artifact format {} is not supported (this busbar reads format {FORMAT})",
        header.format
    );
    Ok((header, MAGIC.len() + end + 1))
}

/// What came of trying one artifact.
#[derive(Debug)]
pub enum Attempt {
    /// It is for another target: not an error, a fleet lists one per target.
    OtherTarget(String),
    /// It was used.
    Loaded(Component),
}

/// Loads the artifact at `path` for the component whose sha256 is `digest`, if it fits an
/// engine with `fingerprint` (when known). An error says why it does not (the caller then
/// compiles the component).
pub fn load(
    engine: &Engine,
    path: &Path,
    digest: &str,
    fingerprint: Option<&Fingerprint>,
) -> anyhow::Result<Attempt> {
    let bytes =
        busbar_base::read_file::read_bounded(path, busbar_base::read_file::MAX_COMPONENT_BYTES)
            .context("cannot read it")?;
    let (header, start) = read_header(&bytes)?;
    if header.target != HOST_TARGET {
        return Ok(Attempt::OtherTarget(header.target));
    }
    anyhow::ensure!(
        header.sha256 == digest,
        "it was compiled from another component (sha256 {}, the component has {digest})",
        header.sha256
    );
    if let (Some(made), Some(ours)) = (&header.fingerprint, fingerprint) {
        anyhow::ensure!(
            made == ours,
            "it was compiled for engine fingerprint {made}, but this node's engine has {ours} \
             (another busbar or wasmtime version, or other [engine] settings: \
             max_memory_mib, consume_fuel, pooling)"
        );
    }
    // SAFETY: the artifact is named by the manifest, which the node trusts as much as the
    // components it runs (see `ServiceEntry::precompiled`); wasmtime checks that it was
    // produced by this wasmtime version with settings and CPU features this engine supports.
    let component = unsafe { Component::deserialize(engine, &bytes[start..]) }
        .map_err(anyhow::Error::from)
        .context("this node's engine does not accept it")?;
    Ok(Attempt::Loaded(component))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_bad_files_are_named() {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(br#"{"format":1,"sha256":"ab","target":"t","busbar":"0.1.0"}"#);
        file.extend_from_slice(b"\nCODE");
        let (h, start) = read_header(&file).unwrap();
        assert_eq!((h.sha256.as_str(), h.target.as_str()), ("ab", "t"));
        assert_eq!(&file[start..], b"CODE");

        let e = read_header(b"\0asm....").unwrap_err();
        assert!(e.to_string().contains("busbar compile"), "{e}");
        let e = read_header(&file[..MAGIC.len() + 5]).unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
    }

    #[test]
    fn thirty_two_bit_arm_runs_pulley() {
        assert_eq!(engine_target("armv7-unknown-linux-gnueabihf"), "pulley32");
        assert_eq!(
            engine_target("aarch64-unknown-linux-gnu"),
            "aarch64-unknown-linux-gnu"
        );
    }
}
