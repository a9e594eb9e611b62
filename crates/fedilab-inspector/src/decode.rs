//! Content-decoding for display: gzip, deflate and Brotli bodies are
//! inflated, bounded by a limit so that a compression bomb cannot take the
//! inspector's memory. Records always keep the bytes as received.

use std::borrow::Cow;
use std::io::Read as _;

/// At most this many decoded bytes are produced for display or analysis.
pub const MAX_DECODED_BYTES: usize = 8 * 1024 * 1024;

/// A body after content-decoding.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The decoded bytes (borrowed when no decoding was needed).
    pub bytes: Cow<'a, [u8]>,
    /// The decoder stopped at the limit.
    pub truncated: bool,
    /// Set when the encoding was unknown or the data corrupt; `bytes` then
    /// holds what could be decoded (or the raw bytes for unknown encodings).
    pub error: Option<String>,
}

/// Decodes `raw` according to a `Content-Encoding` value (`gzip`, `br`,
/// `deflate`, `identity`, or a comma-separated chain of them).
pub fn decode<'a>(raw: &'a [u8], content_encoding: Option<&str>, limit: usize) -> Decoded<'a> {
    let mut out = Decoded {
        bytes: Cow::Borrowed(raw),
        truncated: false,
        error: None,
    };
    let Some(ce) = content_encoding else {
        return out;
    };
    // Encodings apply in order, so undo them in reverse.
    for coding in ce.rsplit(',').map(|c| c.trim().to_ascii_lowercase()) {
        let input: &[u8] = &out.bytes;
        let mut buf = Vec::new();
        let limit64 = limit as u64 + 1;
        let result = match coding.as_str() {
            "" | "identity" => continue,
            "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(input)
                .take(limit64)
                .read_to_end(&mut buf),
            "deflate" => {
                let r = flate2::read::ZlibDecoder::new(input)
                    .take(limit64)
                    .read_to_end(&mut buf);
                if r.is_err() {
                    buf.clear();
                    flate2::read::DeflateDecoder::new(input)
                        .take(limit64)
                        .read_to_end(&mut buf)
                } else {
                    r
                }
            }
            "br" => brotli::Decompressor::new(input, 4096)
                .take(limit64)
                .read_to_end(&mut buf),
            other => {
                out.error = Some(format!("unknown content-encoding {other:?}"));
                return out;
            }
        };
        if let Err(e) = result {
            out.error = Some(format!("cannot decode {coding}: {e}"));
        }
        if buf.len() > limit {
            buf.truncate(limit);
            out.truncated = true;
        }
        out.bytes = Cow::Owned(buf);
        if out.error.is_some() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn gzip_and_brotli_round_trip() {
        let text = b"{\"type\":\"Create\"}".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let d = decode(&gz, Some("gzip"), MAX_DECODED_BYTES);
        assert_eq!(&*d.bytes, &text[..]);
        assert!(d.error.is_none() && !d.truncated);

        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(&text).expect("br");
        }
        let d = decode(&br, Some("br"), MAX_DECODED_BYTES);
        assert_eq!(&*d.bytes, &text[..]);
    }

    #[test]
    fn bombs_stop_at_the_limit() {
        let zeros = vec![0u8; 1024 * 1024];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let d = decode(&gz, Some("gzip"), 1000);
        assert_eq!(d.bytes.len(), 1000);
        assert!(d.truncated);
    }

    #[test]
    fn unknown_and_corrupt_are_reported() {
        assert!(decode(b"x", Some("zstd"), 10).error.is_some());
        assert!(decode(b"not gzip", Some("gzip"), 10).error.is_some());
        assert_eq!(&*decode(b"plain", None, 10).bytes, b"plain");
    }
}
