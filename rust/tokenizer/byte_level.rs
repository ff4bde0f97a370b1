//! GPT-2's byte ↔ unicode table: how byte-level BPE files (vocab.json, merges.txt,
//! tokenizer.json) write token bytes as printable characters.
//!
//! Printable Latin-1 bytes stand for themselves; the other 68 bytes are shifted to U+0100 and
//! up, in byte order.

use std::sync::OnceLock;

fn printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character that stands for each byte.
pub fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = ['\0'; 256];
        let mut shifted = 0u32;
        for b in 0..=255u8 {
            t[b as usize] = if printable(b) {
                b as char
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap_or('\0')
            };
        }
        t
    })
}

/// The byte a character stands for, if it is one of the 256.
#[inline]
pub fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 256 && printable(cp as u8) {
        return Some(cp as u8);
    }
    if (256..256 + 68).contains(&cp) {
        // The n-th shifted character stands for the n-th non-printable byte.
        let n = cp - 256;
        return (0..=255u8).filter(|&b| !printable(b)).nth(n as usize);
    }
    None
}

/// Decodes a byte-level token string to its bytes; `None` if a character is not in the table.
pub fn decode_token(token: &str) -> Option<Vec<u8>> {
    token.chars().map(char_to_byte).collect()
}

/// Encodes token bytes as a byte-level string.
pub fn encode_token(bytes: &[u8]) -> String {
    let t = byte_to_char();
    bytes.iter().map(|&b| t[b as usize]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        for b in 0..=255u8 {
            let c = byte_to_char()[b as usize];
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char()[b' ' as usize], 'Ġ');
        assert_eq!(byte_to_char()[b'\n' as usize], 'Ċ');
        assert_eq!(decode_token("Ġhello"), Some(b" hello".to_vec()));
        assert_eq!(encode_token(b" hello\n"), "ĠhelloĊ");
        assert_eq!(decode_token("€"), None);
    }
}
