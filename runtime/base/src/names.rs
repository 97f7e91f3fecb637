//! Service names: what a manifest may call a service.

/// Names the node keeps for its internal services.
/// (`admin` is the source of what the admin API sends.)
pub const RESERVED_NAMES: &[&str] = &[
    "com",
    "logger",
    "busbar",
    "orchestrator",
    "hub",
    "admin",
    "topics",
    "fabric",
];

/// Checks a service name: 1 to 64 lowercase letters, digits, `-`, `_`, `.`, starting with a
/// letter or a digit, and not one of [`RESERVED_NAMES`].
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("`{name}` must be 1 to 64 characters long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    {
        return Err(format!(
            "`{name}` may hold only lowercase letters, digits, `-`, `_` and `.`"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("`{name}` must start with a letter or a digit"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "`{name}` is reserved for the node's internal services"
        ));
    }
    Ok(())
}

/// Checks a node id, a group name or a tag: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("`{id}` must be 1 to 64 characters long"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!(
            "`{id}` may hold only letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}
