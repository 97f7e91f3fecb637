//! Loading a service's component: read, check its digest, compile (or take the cached
//! artifact), and check that it implements the `busbar:service` world.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::{Service, ServicePre};
use crate::cache::CompileCache;
use crate::host::HostState;

/// Why a component could not be loaded. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file's sha256 is not the one the manifest names.
    #[error("component {path} has sha256 {actual}, but the manifest expects {expected}")]
    Digest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// The file is not a valid WebAssembly component.
    #[error("component {path} is not a valid WebAssembly component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The component does not fit the `busbar:service/service` world.
    #[error(
        "component {path} is not a busbar service (world busbar:service/service@0.1.0): {reason}"
    )]
    WrongWorld { path: PathBuf, reason: String },
}

/// A component ready to instantiate.
pub struct LoadedComponent {
    pre: ServicePre<HostState>,
    digest: String,
    from_cache: bool,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("digest", &self.digest)
            .field("from_cache", &self.from_cache)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl LoadedComponent {
    /// The pre-linked component.
    pub fn pre(&self) -> &ServicePre<HostState> {
        &self.pre
    }

    /// The engine it was compiled for.
    pub fn engine(&self) -> &Engine {
        self.pre.engine()
    }

    /// sha256 of the component file, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether the compiled artifact came from the disk cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
}

/// Loads components for one engine. Cheap to clone.
#[derive(Clone)]
pub struct Loader {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: CompileCache,
}

impl Loader {
    /// A loader whose instances get the busbar imports and a default-deny WASI.
    pub fn new(engine: Engine, cache: CompileCache) -> anyhow::Result<Self> {
        let mut linker = Linker::new(&engine);
        Service::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            cache,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads the component at `path`; compiling runs on a blocking thread.
    pub async fn load(
        &self,
        path: &Path,
        sha256: Option<&str>,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let this = self.clone();
        let path = path.to_path_buf();
        let expected = sha256.map(str::to_ascii_lowercase);
        tokio::task::spawn_blocking(move || this.load_blocking(&path, expected.as_deref()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Loads the component at `path` on the current thread.
    pub fn load_blocking(
        &self,
        path: &Path,
        sha256: Option<&str>,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = sha256
            && expected != digest
        {
            return Err(LoadError::Digest {
                path: path.to_path_buf(),
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        let (component, from_cache) = self
            .cache
            .component(&self.engine, &digest, &bytes)
            .map_err(|e| LoadError::Invalid {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = ServicePre::new(pre).map_err(wrong_world)?;
        Ok(Arc::new(LoadedComponent {
            pre,
            digest,
            from_cache,
        }))
    }
}
