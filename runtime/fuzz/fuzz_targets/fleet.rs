//! The fleet protocol's bodies, as a hub or a node token could send them: a manifest (as a
//! node reads it, then checks it and every entry's signature) and a node status, sign-in and
//! log batch (as the hub reads them, then checks them and logs them). Never panic.
#![no_main]

use busbar::fleet::protocol::{FleetManifest, LogBatch, NodeStatus, SignIn, verify_entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    if let Ok(m) = serde_json::from_slice::<FleetManifest>(data) {
        let _ = m.check();
        for s in &m.services {
            let _ = s.check();
            let _ = verify_entry(&key, s);
            let _ = s.sha256.short();
        }
    }
    if let Ok(s) = serde_json::from_slice::<NodeStatus>(data) {
        if s.check().is_ok() {
            for e in &s.events {
                let _ = (e.sha256.short(), busbar::fleet::bounds::escape_line(&e.detail));
            }
        }
    }
    if let Ok(s) = serde_json::from_slice::<SignIn>(data) {
        let _ = s.check();
    }
    if let Ok(b) = serde_json::from_slice::<LogBatch>(data) {
        if b.check().is_ok() {
            for l in &b.lines {
                let _ = busbar::fleet::bounds::escape_line(l);
            }
        }
    }
});
