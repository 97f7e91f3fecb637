//! Records the target triple, so a node can tell which precompiled artifacts are for it, and
//! the wasmtime version from the workspace's Cargo.lock, which names the engine in its
//! fingerprint (an artifact loads only into the wasmtime that made it).

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=BUSBAR_TARGET={target}");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let lock = std::path::Path::new(&manifest_dir).join("../Cargo.lock");
    let version = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| wasmtime_version(&text))
        .unwrap_or_else(|| {
            println!(
                "cargo:warning=no wasmtime in {}: engine fingerprints will not name its version",
                lock.display()
            );
            "unknown".to_owned()
        });
    println!("cargo:rustc-env=BUSBAR_WASMTIME_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", lock.display());
}

/// The version of the `wasmtime` package in Cargo.lock text.
fn wasmtime_version(lock: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasmtime\"" {
            let next = lines.next()?.trim();
            let version = next.strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(version.to_owned());
        }
    }
    None
}
