//! Setting up a fleet dir on the hub's machine, without a running hub: the signing key pair
//! (`busbar hub keygen`), the dir and its admin token (`init`), and its nodes (`add-node`,
//! `revoke-node`, `set-debug`), each edit of `hub.toml` under its lock.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::config::{HubConfig, NodeEntry, check_id, fresh_token, token_sha256};
use super::files::FleetDir;
use crate::protocol;

/// Creates `path` with `contents`, readable by the owner only; refuses an existing file.
fn create_new(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} already exists: not overwriting it", path.display())
        } else {
            anyhow::anyhow!("cannot create {}: {e}", path.display())
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The public key file next to a secret key file: `FILE.pub`.
fn public_key_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// `busbar hub keygen --out FILE`.
pub(crate) fn keygen(out: &Path) -> anyhow::Result<()> {
    let public_path = public_key_path(out);
    for p in [out, public_path.as_path()] {
        anyhow::ensure!(
            !p.exists(),
            "{} already exists: not overwriting it",
            p.display()
        );
    }
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public = hex::encode(key.verifying_key().to_bytes());
    create_new(out, &format!("{}\n", hex::encode(key.to_bytes())), true)?;
    create_new(&public_path, &format!("{public}\n"), false)?;
    println!("public key: {public}");
    println!(
        "secret key written to {} (keep it off the hub), public key to {}",
        out.display(),
        public_path.display()
    );
    Ok(())
}

/// `busbar hub init --dir DIR --public-key FILE.pub`.
pub(crate) fn init(dir: &Path, public_key: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(public_key)
        .with_context(|| format!("cannot read public key {}", public_key.display()))?;
    let key = protocol::parse_public_key(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", public_key.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let token = fresh_token();
    let config = HubConfig::new(token_sha256(&token), hex::encode(key.to_bytes()));
    let text = toml::to_string(&config).context("cannot serialize hub.toml")?;
    create_new(&dir.join(super::config::HUB_TOML), &text, true)?;
    FleetDir::new(dir)
        .create_subdirs()
        .with_context(|| format!("cannot create the dirs of {}", dir.display()))?;
    println!("admin token: {token}");
    println!(
        "fleet dir {} ready (the token is stored only hashed: keep it)",
        dir.display()
    );
    Ok(())
}

/// `busbar hub add-node --dir DIR ID [--tag T]...`.
pub(crate) fn add_node(dir: &Path, id: &str, tags: Vec<String>) -> anyhow::Result<()> {
    check_id(id).map_err(|e| anyhow::anyhow!("node id: {e}"))?;
    for t in &tags {
        check_id(t).map_err(|e| anyhow::anyhow!("--tag: {e}"))?;
    }
    let token = fresh_token();
    HubConfig::edit(dir, |config| {
        // A revoked node may come back, with a new token (and its tags unless given).
        let tags = match config.nodes.get(id) {
            Some(old) if old.revoked => {
                if tags.is_empty() {
                    old.tags.clone()
                } else {
                    tags
                }
            }
            Some(_) => anyhow::bail!(
                "hub.toml already has node `{id}` (revoke it first to give it a new token, \
                 or pick another id)"
            ),
            None => tags,
        };
        config.nodes.insert(
            id.into(),
            NodeEntry {
                token_sha256: token_sha256(&token),
                tags,
                debug: false,
                revoked: false,
            },
        );
        Ok(())
    })?;
    println!("node token: {token}");
    Ok(())
}

/// Changes node `id` of `hub.toml` with `change`.
pub(crate) fn edit_node(
    dir: &Path,
    id: &str,
    change: impl FnOnce(&mut NodeEntry),
) -> anyhow::Result<()> {
    HubConfig::edit(dir, |config| {
        change(config.node_mut(id)?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_init_and_node_edits_make_a_valid_hub_toml() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("fleet.key");
        keygen(&key).unwrap();
        assert!(
            keygen(&key)
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        let secret = std::fs::read_to_string(&key).unwrap();
        let public = std::fs::read_to_string(public_key_path(&key)).unwrap();
        assert_eq!(
            protocol::parse_secret_key(&secret).unwrap().verifying_key(),
            protocol::parse_public_key(&public).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let dir = tmp.path().join("fleet");
        init(&dir, &public_key_path(&key)).unwrap();
        assert!(init(&dir, &public_key_path(&key)).is_err());
        assert!(dir.join("blobs").is_dir() && dir.join("logs").is_dir());
        add_node(&dir, "gw1", vec!["lab".into()]).unwrap();
        assert!(
            add_node(&dir, "gw1", vec![])
                .unwrap_err()
                .to_string()
                .contains("already")
        );
        assert!(add_node(&dir, "bad id", vec![]).is_err());
        edit_node(&dir, "gw1", |n| n.debug = true).unwrap();
        edit_node(&dir, "gw1", |n| n.revoked = true).unwrap();
        assert!(edit_node(&dir, "gw9", |_| ()).is_err());
        let config = HubConfig::load(&dir).unwrap();
        let gw1 = &config.nodes["gw1"];
        assert!(gw1.debug && gw1.revoked && gw1.tags == ["lab"]);
        // A revoked node comes back with a new token and its tags.
        let old_token = gw1.token_sha256.clone();
        add_node(&dir, "gw1", vec![]).unwrap();
        let config = HubConfig::load(&dir).unwrap();
        let gw1 = &config.nodes["gw1"];
        assert!(!gw1.revoked && gw1.tags == ["lab"] && gw1.token_sha256 != old_token);
    }
}
