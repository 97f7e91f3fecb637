//! The fleet dir's layout and how files in it are written.
//!
//! ```text
//! hub.toml
//! blobs/<sha256>.wasm, blobs/<sha256>.sig   (components, signed)
//! blobs/<sha256>.cwasm                     (precompiled artifacts, signed in the manifests)
//! manifests/all.json, manifests/tag-<tag>.json, manifests/node-<id>.json
//! nodes/<id>.json
//! logs/<id>.log
//! ```

use std::path::{Path, PathBuf};

/// The sub-directories of a fleet dir.
pub const SUBDIRS: &[&str] = &["blobs", "manifests", "nodes", "logs"];

/// Where things are in one fleet dir.
#[derive(Debug, Clone)]
pub struct FleetDir {
    root: PathBuf,
}

impl FleetDir {
    /// The fleet dir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/<sha256>.wasm`.
    pub fn blob(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{sha256}.wasm"))
    }

    /// `blobs/<sha256>.cwasm`: a precompiled artifact.
    pub fn artifact(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{sha256}.cwasm"))
    }

    /// `blobs/<sha256>.sig`.
    pub fn signature(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{sha256}.sig"))
    }

    /// `manifests/<file>.json` for a manifest file stem (`all`, `tag-lab`, `node-gw1`).
    pub fn manifest(&self, stem: &str) -> PathBuf {
        self.root.join("manifests").join(format!("{stem}.json"))
    }

    /// `manifests/`.
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// `nodes/<id>.json`.
    pub fn node(&self, id: &str) -> PathBuf {
        self.root.join("nodes").join(format!("{id}.json"))
    }

    /// `logs/<id>.log`.
    pub fn log(&self, id: &str) -> PathBuf {
        self.root.join("logs").join(format!("{id}.log"))
    }

    /// Creates the sub-directories that are missing.
    pub fn create_subdirs(&self) -> std::io::Result<()> {
        for sub in SUBDIRS {
            std::fs::create_dir_all(self.root.join(sub))?;
        }
        Ok(())
    }
}

pub use busbar_base::files::write_atomic;

/// Serializes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads JSON from `path`; `None` when there is no such file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: bad JSON: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}
