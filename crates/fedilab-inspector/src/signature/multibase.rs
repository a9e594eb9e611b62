//! Multibase base58btc (`z…`) decoding and Multikey Ed25519 public keys
//! (`z6Mk…`: multicodec `0xed 0x01` then 32 bytes), as FEP-8b32 and the
//! Controlled Identifiers spec write them. Pure; decodes only (the inspector
//! never signs).
//!
//! Small on purpose (about 40 lines of arithmetic) rather than a crate: the
//! inspector needs decoding of short strings only, and the tests below hold
//! it against published vectors.

/// The Bitcoin base58 alphabet.
const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Decodes base58 (Bitcoin alphabet). `None` for a character outside it.
pub fn base58_decode(text: &str) -> Option<Vec<u8>> {
    let lookup = |c: u8| ALPHABET.iter().position(|&a| a == c);
    // Big-endian bytes of the number, least significant last; grown as
    // needed (base58 text of n chars is at most n bytes).
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len());
    for &c in text.as_bytes() {
        let mut carry = u32::try_from(lookup(c)?).ok()?;
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = text.bytes().take_while(|&c| c == b'1').count();
    let mut out = vec![0u8; zeros];
    out.extend_from_slice(&bytes);
    Some(out)
}

/// Decodes a multibase string in base58btc (`z` prefix), the only base
/// FEP-8b32 uses. `None` for other bases or bad characters.
pub fn multibase_decode(text: &str) -> Option<Vec<u8>> {
    base58_decode(text.strip_prefix('z')?)
}

/// The Ed25519 public key in a Multikey `publicKeyMultibase` (`z6Mk…`).
///
/// # Errors
/// Why the value is not an Ed25519 Multikey.
pub fn ed25519_multikey(text: &str) -> Result<[u8; 32], String> {
    let bytes = multibase_decode(text.trim())
        .ok_or_else(|| format!("{text:?} is not multibase base58btc (z…)"))?;
    match bytes.as_slice() {
        [0xed, 0x01, key @ ..] => <[u8; 32]>::try_from(key)
            .map_err(|_| format!("the Ed25519 key in {text:?} is {} bytes, not 32", key.len())),
        [a, b, ..] => Err(format!(
            "multicodec 0x{a:02x}{b:02x} is not ed25519-pub (0xed01)"
        )),
        _ => Err(format!("{text:?} is too short for a Multikey")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base58_decodes_known_values() {
        assert_eq!(base58_decode(""), Some(vec![]));
        assert_eq!(base58_decode("1"), Some(vec![0]));
        assert_eq!(base58_decode("11"), Some(vec![0, 0]));
        assert_eq!(base58_decode("2g"), Some(b"a".to_vec()));
        // "Hello World!" from the base58 draft (draft-msporny-base58).
        assert_eq!(
            base58_decode("2NEpo7TZRRrLZSi2U"),
            Some(b"Hello World!".to_vec())
        );
        assert_eq!(
            base58_decode("11233QC4"),
            Some(vec![0, 0, 0x28, 0x7f, 0xb4, 0xcd])
        );
        assert_eq!(base58_decode("0OIl"), None);
    }

    #[test]
    fn multikeys_decode_to_ed25519_keys() {
        // FEP-8b32's test actor key.
        let key =
            ed25519_multikey("z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2").expect("multikey");
        assert_eq!(key.len(), 32);
        assert!(ed25519_multikey("u7QE").is_err());
        assert!(ed25519_multikey("z2g").is_err());
    }
}
