//! Reading a file someone else may have put there (a component, an artifact, a manifest, a
//! config) without trusting it: only a regular file (a FIFO would block forever, a device
//! like `/dev/zero` never ends), and no more than a bound, checked before reading and while
//! reading (the file may grow in between).

use std::io::Read as _;
use std::path::Path;

/// Largest component or precompiled artifact a node reads from its disk.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// Largest manifest or node config a node reads.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads `path` whole if it is a regular file of at most `max` bytes. The error says which
/// of those it is not (the caller adds the file's name).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file (a folder, a FIFO, a socket or a device)",
        ));
    }
    let too_large = |n: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it has {n} bytes, more than the {max} this file may have"),
        )
    };
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_bounded(&file, 5).unwrap(), b"12345");
        let e = read_bounded(&file, 4).unwrap_err().to_string();
        assert!(e.contains("5 bytes, more than the 4"), "{e}");
        let e = read_bounded(dir.path(), 4).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        if Path::new("/dev/zero").exists() {
            let e = read_bounded(Path::new("/dev/zero"), 4)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
    }
}
