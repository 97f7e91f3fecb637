//! Manifest parsing, TOML and JSON: any text gives a manifest or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for json in [false, true] {
        let _ = busbar::manifest::Manifest::parse(text, json, "<fuzz>", Path::new("/nonexistent"));
    }
});
