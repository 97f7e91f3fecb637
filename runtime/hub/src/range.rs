//! The `Range` header of a blob download: `bytes=N-` (resume) or `bytes=N-M`.

/// The bytes of a blob a request asks for, end inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

impl ByteRange {
    /// How many bytes it covers.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Whether it covers nothing (never: a range holds at least its first byte).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` header value for a blob of `size` bytes.
    pub fn content_range(&self, size: u64) -> String {
        format!("bytes {}-{}/{size}", self.start, self.end)
    }
}

/// Parses a `Range` header against a blob of `size` bytes. `Ok(None)`: the whole blob.
/// `Err`: a range the hub does not serve or that lies beyond the blob, in words.
pub fn parse(header: Option<&str>, size: u64) -> Result<Option<ByteRange>, String> {
    let Some(header) = header else {
        return Ok(None);
    };
    let unsupported =
        || format!("unsupported Range `{header}`: the hub serves `bytes=N-` or `bytes=N-M`");
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(unsupported)?;
    let (start, end) = spec.split_once('-').ok_or_else(unsupported)?;
    let start: u64 = start.trim().parse().map_err(|_| unsupported())?;
    let end: Option<u64> = match end.trim() {
        "" => None,
        e => Some(e.parse().map_err(|_| unsupported())?),
    };
    if start >= size {
        return Err(format!(
            "Range `{header}` starts beyond the blob's {size} bytes"
        ));
    }
    let last = size - 1;
    let end = end.map_or(last, |e| e.min(last));
    if end < start {
        return Err(format!("Range `{header}` ends before it starts"));
    }
    Ok(Some(ByteRange { start, end }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_and_bounded_ranges_parse() {
        assert_eq!(parse(None, 10), Ok(None));
        let r = parse(Some("bytes=4-"), 10).unwrap().unwrap();
        assert_eq!((r.start, r.end, r.len()), (4, 9, 6));
        assert_eq!(r.content_range(10), "bytes 4-9/10");
        let r = parse(Some("bytes=0-3"), 10).unwrap().unwrap();
        assert_eq!((r.start, r.end), (0, 3));
        let r = parse(Some("bytes=2-99"), 10).unwrap().unwrap();
        assert_eq!(r.end, 9);
    }

    #[test]
    fn other_ranges_are_refused_in_words() {
        assert!(parse(Some("bytes=10-"), 10).unwrap_err().contains("beyond"));
        assert!(
            parse(Some("bytes=-5"), 10)
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(parse(Some("bytes=1-2,4-5"), 10).is_err());
        assert!(parse(Some("items=1-"), 10).is_err());
        assert!(
            parse(Some("bytes=5-2"), 10)
                .unwrap_err()
                .contains("ends before")
        );
    }
}
