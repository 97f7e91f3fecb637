//! Loading a service's component: read, check its digest, compile (or take the cached
//! artifact), and check that it implements the `busbar:service` world.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::bindings::{Service, ServicePre};
use crate::cache::CompileCache;
use crate::host::HostState;
use crate::precompiled::Attempt;
use busbar_base::digest::Fingerprint;

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
        "component {path} is not a busbar service (world busbar:service/service@0.1.1): {reason}"
    )]
    WrongWorld { path: PathBuf, reason: String },
    /// The component imports an interface services are not granted.
    #[error(
        "component {path} imports `{import}`, which busbar does not grant to services (they \
         may import busbar:service, wasi:cli, wasi:io, wasi:clocks, wasi:filesystem and \
         wasi:random; the network is reached through the bus and Com)"
    )]
    Ungranted { path: PathBuf, import: String },
    /// This busbar has no compiler and no artifact of the component fits this node.
    #[error(
        "component {path}: this busbar runs only precompiled components (it was built without \
         a compiler) and no artifact of it fits this node (target {target}, engine fingerprint \
         {fingerprint}). Make one on a machine with the full busbar: `busbar compile --target \
         {target} --config <this node's config> {path} -o <file>.cwasm` and list it in the \
         service's `precompiled`; or publish the component through the hub, whose `busbar hub \
         publish` compiles it for the engines its nodes announce"
    )]
    NoCompiler {
        path: PathBuf,
        target: String,
        fingerprint: String,
    },
}

/// Where a service's code comes from: the component, its expected digest, and artifacts
/// compiled ahead of time that may spare the node compiling it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentSource {
    /// The `.wasm` component.
    pub path: PathBuf,
    /// Expected sha256 (hex) of the component file.
    pub sha256: Option<String>,
    /// Artifacts from `busbar compile`, for this node's target or others.
    pub precompiled: Vec<PathBuf>,
}

impl ComponentSource {
    /// Where the code of a manifest's service comes from.
    pub fn of(entry: &crate::manifest::ServiceEntry) -> Self {
        Self {
            path: entry.component.clone(),
            sha256: entry.sha256.clone(),
            precompiled: entry.precompiled.clone(),
        }
    }

    /// Just a component file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
}

/// How the compiled code of a loaded component was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled from the `.wasm` now.
    Compiled,
    /// Taken from the node's compile cache.
    Cache,
    /// Taken from this artifact of `busbar compile`.
    Precompiled(PathBuf),
    /// Already loaded on this node (for another service, or an earlier instance of this
    /// one): the compiled code is shared.
    Shared,
}

impl Origin {
    /// One word for it: `compiled`, `cached`, `precompiled` or `shared`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Compiled => "compiled",
            Origin::Cache => "cached",
            Origin::Precompiled(_) => "precompiled",
            Origin::Shared => "shared",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Compiled => f.write_str("compiled"),
            Origin::Cache => f.write_str("cached"),
            Origin::Precompiled(p) => write!(f, "precompiled {}", p.display()),
            Origin::Shared => f.write_str("already in memory"),
        }
    }
}

/// A component ready to instantiate.
pub struct LoadedComponent {
    pre: ServicePre<HostState>,
    digest: String,
    origin: Origin,
    /// Where the code first came from, even when this load shared it.
    code: &'static str,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("digest", &self.digest)
            .field("origin", &self.origin)
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

    /// Whether the compiled code came from the disk cache.
    pub fn from_cache(&self) -> bool {
        self.origin == Origin::Cache
    }

    /// How the compiled code was obtained.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Where the code first came from on this node: `precompiled`, `compiled` or `cached`
    /// (a shared load says where the first one got it).
    pub fn code(&self) -> &'static str {
        self.code
    }
}

/// Loads components for one engine. Cheap to clone.
#[derive(Clone)]
pub struct Loader {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: CompileCache,
    /// Compiled components by sha256: services running the same component share its code,
    /// and concurrent loads of one component compile it once.
    in_memory: Arc<Mutex<HashMap<String, Slot>>>,
    /// The engine's fingerprint, when known: artifacts made for another are not used.
    fingerprint: Option<Fingerprint>,
}

/// One component's compiled code, filled by the first load.
/// With where the code first came from ([`Origin::kind`]).
type Slot = Arc<Mutex<Option<(Component, &'static str)>>>;

impl Loader {
    /// A loader whose instances get the busbar imports and a default-deny WASI.
    pub fn new(engine: Engine, cache: CompileCache) -> anyhow::Result<Self> {
        let mut linker = Linker::new(&engine);
        Service::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        crate::host::gate_socket_creation(&mut linker)?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            cache,
            in_memory: Arc::default(),
            fingerprint: None,
        })
    }

    /// The same loader, using only artifacts compiled for engine `fingerprint` (the node's,
    /// [`crate::engine::EngineConfig::fingerprint`]).
    pub fn with_fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component; compiling runs on a blocking thread.
    pub async fn load(&self, source: &ComponentSource) -> Result<Arc<LoadedComponent>, LoadError> {
        let this = self.clone();
        let source = source.clone();
        tokio::task::spawn_blocking(move || this.load_blocking(&source))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Loads a component on the current thread: checks its digest, then takes the first
    /// precompiled artifact that fits this node, else the cached or freshly compiled code.
    pub fn load_blocking(
        &self,
        source: &ComponentSource,
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let path = source.path.as_path();
        let bytes =
            busbar_base::read_file::read_bounded(path, busbar_base::read_file::MAX_COMPONENT_BYTES)
                .map_err(|source| LoadError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
        self.load_bytes(source, &bytes)
    }

    /// Like [`Loader::load_blocking`], with the component's bytes already read (from
    /// `source.path`, which errors name).
    pub fn load_bytes(
        &self,
        source: &ComponentSource,
        bytes: &[u8],
    ) -> Result<Arc<LoadedComponent>, LoadError> {
        let path = source.path.as_path();
        let sha256 = source.sha256.as_deref().map(str::to_ascii_lowercase);
        let sha256 = sha256.as_deref();
        let digest = hex::encode(Sha256::digest(bytes));
        if let Some(expected) = sha256
            && expected != digest
        {
            return Err(LoadError::Digest {
                path: path.to_path_buf(),
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        let slot = busbar_base::sync::lock(&self.in_memory)
            .entry(digest.clone())
            .or_default()
            .clone();
        let mut held = busbar_base::sync::lock(&slot);
        let (component, origin) = if let Some((c, _)) = &*held {
            (c.clone(), Origin::Shared)
        } else if let Some(found) = self.precompiled(source, &digest) {
            found
        } else if !crate::engine::HAS_COMPILER {
            return Err(LoadError::NoCompiler {
                path: path.to_path_buf(),
                target: crate::precompiled::HOST_TARGET.to_owned(),
                fingerprint: self
                    .fingerprint
                    .as_ref()
                    .map_or_else(|| "unknown".to_owned(), ToString::to_string),
            });
        } else {
            let (component, from_cache) = self
                .cache
                .component(&self.engine, &digest, bytes)
                .map_err(|e| LoadError::Invalid {
                    path: path.to_path_buf(),
                    reason: format!("{e:#}"),
                })?;
            let origin = if from_cache {
                Origin::Cache
            } else {
                Origin::Compiled
            };
            (component, origin)
        };
        let code = match &*held {
            Some((_, code)) => code,
            None => origin.kind(),
        };
        if held.is_none() {
            *held = Some((component.clone(), code));
        }
        drop(held);
        if let Some(import) = crate::grants::ungranted_import(&component, &self.engine) {
            return Err(LoadError::Ungranted {
                path: path.to_path_buf(),
                import,
            });
        }
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
            origin,
            code,
        }))
    }

    /// The first of the source's precompiled artifacts that fits this node; says in the log
    /// why each one for this target does not.
    fn precompiled(
        &self,
        source: &ComponentSource,
        digest: &str,
    ) -> Option<(wasmtime::component::Component, Origin)> {
        for artifact in &source.precompiled {
            match crate::precompiled::load(
                &self.engine,
                artifact,
                digest,
                self.fingerprint.as_ref(),
            ) {
                Ok(Attempt::Loaded(c)) => {
                    tracing::info!(artifact = %artifact.display(), "using the precompiled artifact");
                    return Some((c, Origin::Precompiled(artifact.clone())));
                }
                Ok(Attempt::OtherTarget(t)) => {
                    tracing::debug!(artifact = %artifact.display(), target = %t, "precompiled for another target");
                }
                Err(e) if crate::engine::HAS_COMPILER => tracing::warn!(
                    artifact = %artifact.display(),
                    component = %source.path.display(),
                    "precompiled artifact not used ({e:#}); compiling the component instead"
                ),
                Err(e) => tracing::error!(
                    artifact = %artifact.display(),
                    component = %source.path.display(),
                    "precompiled artifact not used: {e:#}"
                ),
            }
        }
        None
    }
}
