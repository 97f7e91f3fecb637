//! Records the target triple, so a node can tell which precompiled artifacts are for it.

fn main() {
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=BUSBAR_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
