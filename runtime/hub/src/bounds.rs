//! How much of each other's bodies the hub and a node accept. Every size an outside party
//! controls is bounded here, and a body past a bound is refused with an error naming the
//! field and the bound (the README lists them under "Security model").

use std::collections::HashSet;

use super::protocol::{FleetManifest, FleetService, LogBatch, NodeStatus, SignIn};
use busbar_base::digest::shown;

/// Largest manifest a node reads from its hub, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Most services in one manifest.
pub const MAX_SERVICES: usize = 256;
/// Largest sign-in body the hub reads.
pub const MAX_SIGN_IN_BYTES: usize = 16 << 10;
/// Largest status body the hub reads.
pub const MAX_STATUS_BYTES: usize = 2 << 20;
/// Most services one status may list.
pub const MAX_STATUS_SERVICES: usize = 1024;
/// Most events one status may carry (a node keeps at most this many unsent).
pub const MAX_EVENTS_PER_STATUS: usize = 100;
/// Longest event detail, in characters (a node cuts longer ones).
pub const MAX_DETAIL_CHARS: usize = 2048;
/// Largest log batch body the hub reads.
pub const MAX_LOG_BATCH_BYTES: usize = 1 << 20;
/// Most lines in one log batch.
pub const MAX_LOG_LINES: usize = 500;
/// Longest forwarded log line, in characters (a node cuts longer ones).
pub const MAX_LOG_LINE_CHARS: usize = 8192;
/// Largest `[engine] max_memory_mib` a node may announce (a linear memory of 4 GiB).
pub const MAX_ENGINE_MEMORY_MIB: u32 = 4096;
/// Most precompiled artifacts per service entry (one per target and engine).
pub const MAX_ARTIFACTS: usize = 16;
/// Largest precompiled artifact, in bytes (a componentize-py service compiles to ~40 MB).
pub const MAX_ARTIFACT_BYTES: u64 = 128 << 20;
/// Longest name, state, host name, target or version string in a body.
const MAX_WORD_CHARS: usize = 255;

/// `text` cut to at most `max` characters (on a character boundary).
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", text.get(..at).unwrap_or_default()),
        None => text.to_owned(),
    }
}

fn word(field: &str, text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_WORD_CHARS {
        return Err(format!(
            "{field}: longer than {MAX_WORD_CHARS} characters (`{}`)",
            shown(text)
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{field}: holds control characters (`{}`)",
            shown(text)
        ));
    }
    Ok(())
}

fn at_most<T>(field: &str, items: &[T], max: usize) -> Result<(), String> {
    if items.len() > max {
        return Err(format!("{field}: {} items, at most {max}", items.len()));
    }
    Ok(())
}

impl FleetService {
    /// Checks the entry's name and limits, as every manifest path does
    /// (`busbar::manifest::Manifest::validate`), and its artifacts; errors start with the
    /// field.
    pub fn check(&self) -> Result<(), String> {
        busbar_base::names::check_name(&self.name).map_err(|e| format!("name: {e}"))?;
        self.limits.validate().map_err(|e| format!("limits.{e}"))?;
        busbar_base::grants::check_topics(&self.grants.topics, &self.subscribe)?;
        busbar_base::grants::check_destinations(&self.grants.destinations)?;
        at_most("artifacts", &self.artifacts, MAX_ARTIFACTS)?;
        let mut seen = HashSet::new();
        for (i, a) in self.artifacts.iter().enumerate() {
            check_target(&a.target).map_err(|e| format!("artifacts[{i}].target: {e}"))?;
            if a.size > MAX_ARTIFACT_BYTES {
                return Err(format!(
                    "artifacts[{i}].size: {} bytes, more than the {MAX_ARTIFACT_BYTES} an \
                     artifact may have",
                    a.size
                ));
            }
            if !seen.insert((a.target.as_str(), &a.fingerprint)) {
                return Err(format!(
                    "artifacts[{i}]: a second artifact for target {} and engine {}",
                    a.target, a.fingerprint
                ));
            }
        }
        Ok(())
    }
}

/// Checks a target triple: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
pub fn check_target(target: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&target.len())
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a target triple (1 to 64 letters, digits, `-`, `_`, `.`)",
            shown(target)
        ))
    }
}

impl FleetManifest {
    /// Checks the manifest's size in services and that names are unique; entries are checked
    /// one by one ([`FleetService::check`]) so that one bad entry costs only that service.
    pub fn check(&self) -> Result<(), String> {
        at_most("services", &self.services, MAX_SERVICES)?;
        let mut seen = HashSet::new();
        for s in &self.services {
            if !seen.insert(s.name.as_str()) {
                return Err(format!("services: `{}` is listed twice", shown(&s.name)));
            }
        }
        Ok(())
    }
}

impl SignIn {
    /// Checks every field's size.
    pub fn check(&self) -> Result<(), String> {
        word("node_id", &self.node_id)?;
        word("hostname", &self.hostname)?;
        check_target(&self.target).map_err(|e| format!("target: {e}"))?;
        if let Some(engine) = &self.engine
            && !(1..=MAX_ENGINE_MEMORY_MIB).contains(&engine.max_memory_mib)
        {
            return Err(format!(
                "engine.max_memory_mib: {} is not within 1..={MAX_ENGINE_MEMORY_MIB}",
                engine.max_memory_mib
            ));
        }
        word("runtime_version", &self.runtime_version)?;
        at_most("macs", &self.macs, 64)?;
        self.macs.iter().try_for_each(|m| word("macs[]", m))
    }
}

impl NodeStatus {
    /// Checks the number of services and events and every string's size.
    pub fn check(&self) -> Result<(), String> {
        at_most("services", &self.services, MAX_STATUS_SERVICES)?;
        at_most("events", &self.events, MAX_EVENTS_PER_STATUS)?;
        for (i, s) in self.services.iter().enumerate() {
            word(&format!("services[{i}].name"), &s.name)?;
            word(&format!("services[{i}].state"), &s.state)?;
        }
        for (i, e) in self.events.iter().enumerate() {
            word(&format!("events[{i}].service"), &e.service)?;
            if i64::try_from(e.at_ms).is_err() {
                return Err(format!(
                    "events[{i}].at_ms: {} is not a time (ms since 1970)",
                    e.at_ms
                ));
            }
            if e.detail.chars().count() > MAX_DETAIL_CHARS {
                return Err(format!(
                    "events[{i}].detail: longer than {MAX_DETAIL_CHARS} characters"
                ));
            }
        }
        Ok(())
    }
}

impl LogBatch {
    /// Checks the number of lines and their length.
    pub fn check(&self) -> Result<(), String> {
        at_most("lines", &self.lines, MAX_LOG_LINES)?;
        match self
            .lines
            .iter()
            .position(|l| l.chars().count() > MAX_LOG_LINE_CHARS)
        {
            Some(i) => Err(format!(
                "lines[{i}]: longer than {MAX_LOG_LINE_CHARS} characters"
            )),
            None => Ok(()),
        }
    }
}

/// `line` as one line of a log file: control characters (newlines included) escaped, so a
/// forwarded line can never forge another.
pub fn escape_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{EventKind, NodeEvent, test_service};

    #[test]
    fn artifacts_and_announced_engines_are_bounded() {
        use crate::protocol::{Artifact, NodeEngine, SignIn};
        use busbar_base::digest::{Fingerprint, Sha256};
        let artifact = |target: &str, n: u32| Artifact {
            target: target.into(),
            fingerprint: Fingerprint::of(&n.to_string()),
            sha256: Sha256::of(&n.to_be_bytes()),
            size: 1,
            signature: String::new(),
        };
        let mut svc = test_service("s", 'a');
        svc.artifacts = (0..MAX_ARTIFACTS as u32)
            .map(|n| artifact("aarch64-unknown-linux-gnu", n))
            .collect();
        svc.check().unwrap();
        svc.artifacts.push(artifact("x", 99));
        assert!(svc.check().unwrap_err().starts_with("artifacts:"));
        svc.artifacts = vec![artifact("t", 1), artifact("t", 1)];
        assert!(svc.check().unwrap_err().contains("a second artifact"));
        svc.artifacts = vec![artifact("../etc", 1)];
        assert!(svc.check().unwrap_err().contains("artifacts[0].target"));
        svc.artifacts = vec![Artifact {
            size: MAX_ARTIFACT_BYTES + 1,
            ..artifact("t", 1)
        }];
        assert!(svc.check().unwrap_err().contains("artifacts[0].size"));

        let mut sign_in = SignIn {
            node_id: "gw".into(),
            hostname: "h".into(),
            target: "aarch64-unknown-linux-gnu".into(),
            runtime_version: "0.1.0".into(),
            macs: vec![],
            engine: Some(NodeEngine {
                fingerprint: Fingerprint::of("e"),
                max_memory_mib: 16,
                consume_fuel: false,
                pooling: true,
                compiler: false,
            }),
        };
        sign_in.check().unwrap();
        if let Some(e) = &mut sign_in.engine {
            e.max_memory_mib = 0;
        }
        assert!(
            sign_in
                .check()
                .unwrap_err()
                .contains("engine.max_memory_mib")
        );
        sign_in.target = "no spaces allowed".into();
        assert!(sign_in.check().unwrap_err().starts_with("target:"));
    }

    #[test]
    fn cut_keeps_character_boundaries() {
        assert_eq!(cut("héllo", 2), "hé…");
        assert_eq!(cut("ok", 5), "ok");
    }

    #[test]
    fn log_lines_cannot_forge_lines() {
        assert_eq!(escape_line("a\nINFO forged\r"), "a\\nINFO forged\\r");
        assert_eq!(escape_line("plain ü"), "plain ü");
    }

    #[test]
    fn oversized_bodies_are_refused_naming_the_field() {
        let event = NodeEvent {
            at_ms: 1,
            service: "s".into(),
            kind: EventKind::Swapped,
            sha256: test_service("s", 'a').sha256,
            detail: "x".repeat(MAX_DETAIL_CHARS + 1),
        };
        let status = NodeStatus {
            services: vec![],
            events: vec![event],
        };
        assert!(status.check().unwrap_err().contains("events[0].detail"));
        let batch = LogBatch {
            lines: vec!["x".into(); MAX_LOG_LINES + 1],
        };
        assert!(batch.check().unwrap_err().contains("lines: 501 items"));
        let mut svc = test_service("s", 'a');
        svc.limits.mailbox = 1 << 61;
        assert!(svc.check().unwrap_err().starts_with("limits.mailbox: "));
        let m = FleetManifest {
            services: vec![test_service("s", 'a'), test_service("s", 'b')],
            ..Default::default()
        };
        assert!(m.check().unwrap_err().contains("listed twice"));
    }
}
