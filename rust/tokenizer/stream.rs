//! Incremental decoding for streaming: bytes in, text out, one complete character at a time.

/// Turns a stream of token bytes into text. A character is emitted once all its bytes have
/// arrived; bytes that can never form a character become U+FFFD (as `errors="replace"` does),
/// so no byte is ever dropped or held back past [`Utf8Stream::flush`].
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the text whose characters are now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        // Invalid whatever follows: replace and go on.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = bad.get(n..).unwrap_or_default();
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
        out
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: whatever is held back, with U+FFFD for incomplete characters.
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_only_complete_characters() {
        let text = "héllo 世界 😀!";
        let bytes = text.as_bytes();
        for step in 1..=5 {
            let mut s = Utf8Stream::new();
            let mut out = String::new();
            for chunk in bytes.chunks(step) {
                let part = s.push(chunk);
                assert!(!part.contains('\u{FFFD}'));
                out.push_str(&part);
            }
            out.push_str(&s.flush());
            assert_eq!(out, text);
        }
    }

    #[test]
    fn invalid_bytes_become_replacements_like_python() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(b"a\xffb\xe4"), "a\u{FFFD}b");
        assert_eq!(s.pending(), b"\xe4");
        assert_eq!(s.push(b"\xb8"), "");
        assert_eq!(s.push(b"x"), "\u{FFFD}x");
        assert_eq!(s.push(b"\xf0\x9f"), "");
        assert_eq!(s.flush(), "\u{FFFD}");
        assert_eq!(s.flush(), "");
    }
}
