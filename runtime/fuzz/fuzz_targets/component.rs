//! Component loading: any bytes as a component file (digest, precompiled-header check,
//! compilation, the import check, linking to the service world) give a component or an
//! error naming the file, never a panic.
#![no_main]

use std::sync::OnceLock;

use busbar::component::{ComponentSource, Loader};
use libfuzzer_sys::fuzz_target;

fn loader() -> &'static Loader {
    static LOADER: OnceLock<Loader> = OnceLock::new();
    LOADER.get_or_init(|| {
        let config = busbar::engine::EngineConfig {
            pooling: false,
            ..Default::default()
        };
        let engine = config.build().expect("engine");
        let cache = busbar::cache::CompileCache::new(&engine, None).expect("no disk cache");
        Loader::new(engine, cache).expect("loader")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = busbar::precompiled::read_header(data);
    let _ = loader().load_bytes(&ComponentSource::file("fuzz.wasm"), data);
});
