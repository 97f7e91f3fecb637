//! Compiled components on disk, keyed by the component's sha256 and the engine's
//! compatibility fingerprint, written atomically (temp file, fsync, rename).

#![allow(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept; `None` compiles every time.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    fingerprint: String,
}

impl CompileCache {
    /// A cache in `dir` (created if missing) for artifacts of `engine`.
    /// A folder that cannot be created (a full or read-only disk) means no cache, logged:
    /// the node still starts, compiling what it runs.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.filter(|dir| match std::fs::create_dir_all(dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e,
                    "cannot create the compile cache; compiling every component at start");
                false
            }
        });
        Ok(Self {
            dir,
            fingerprint: fingerprint(engine),
        })
    }

    /// The engine fingerprint artifacts are keyed by.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.cwasm", self.fingerprint)))
    }

    /// The compiled form of `bytes` (whose sha256 is `digest`), from the cache when there,
    /// else compiled and stored. A cache that cannot be read or written only costs time.
    pub fn component(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> anyhow::Result<(Component, bool)> {
        let path = self.path(digest);
        if let Some(path) = path.as_deref().filter(|p| p.exists()) {
            // SAFETY: files in the cache directory are written only by `store` below, from
            // `Component::serialize` of this same engine configuration (the fingerprint is in
            // the name); the cache directory is the node's own data.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached artifact")
                }
            }
        }
        let component = compile(engine, bytes)?;
        if let Some(path) = path
            && let Err(e) = store(&component, &path)
        {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "could not cache compiled component");
        }
        Ok((component, false))
    }
}

/// Compiles a component (the `compiler` feature).
#[cfg(feature = "compiler")]
fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    Ok(Component::new(engine, bytes)?)
}

/// Without a compiler nothing can be compiled: the loader says so before it gets here.
#[cfg(not(feature = "compiler"))]
fn compile(_engine: &Engine, _bytes: &[u8]) -> anyhow::Result<Component> {
    anyhow::bail!("this busbar was built without a compiler")
}

fn store(component: &Component, path: &Path) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    let dir = path.parent().context("cache path has no parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    Ok(())
}

/// A short, stable name for the engine's compilation settings (target, features, tunables,
/// host CPU features) and this busbar version: artifacts with another fingerprint are never
/// loaded.
#[cfg(feature = "compiler")]
pub fn fingerprint(engine: &Engine) -> String {
    use std::hash::{DefaultHasher, Hash as _, Hasher as _};
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Without a compiler the cache is never written; what an older full build left there is
/// not read either.
#[cfg(not(feature = "compiler"))]
pub fn fingerprint(_engine: &Engine) -> String {
    "no-compiler".to_owned()
}
