//! Splitting training text into pretokens ("words"): the units a BPE merge never crosses.
//!
//! Text is first cut at special tokens (which are never learned as merges), then each
//! ordinary segment is split by the tokenizer's own pretokenizer, exactly as the encoder will
//! split it at inference time. Long texts are also cut into chunks for parallel counting, but
//! only at places where the pattern is known to split anyway (see [`chunk_boundaries`]).

use fancy_regex::Regex;

use crate::error::{Error, Result};
use crate::tokenizer::pretokenize::Pretokenizer as Splitter;

/// Cuts text at special tokens, then into pretokens.
#[derive(Debug)]
pub struct Pretokenizer {
    /// The tokenizer's pretokenizer: hand-written linear scanners for the built-in patterns
    /// (`gpt2`, `cl100k_base`, `o200k_base`...), fancy-regex for any other.
    splitter: Splitter,
    /// Alternation of the escaped special tokens, longest first (so the longest wins).
    specials: Option<Regex>,
    /// Whether the pattern is one of the built-in ones, for which [`chunk_boundaries`] is
    /// proven safe. A user's regex could match across any boundary we pick.
    chunkable: bool,
}

impl Pretokenizer {
    /// A pretokenizer for `pattern` (a name or a regex) that keeps `special_tokens` out of
    /// the counts.
    pub fn new(pattern: &str, special_tokens: &[String]) -> Result<Self> {
        if pattern.is_empty() {
            return Err(Error::Value("pattern: must not be empty".into()));
        }
        let splitter = Splitter::new(pattern).map_err(|e| match e {
            Error::Value(msg) => Error::Value(format!("pattern: {msg}")),
            other => other,
        })?;
        if special_tokens.iter().any(|s| s.is_empty()) {
            return Err(Error::Value("special_tokens: empty string".into()));
        }
        let specials = if special_tokens.is_empty() {
            None
        } else {
            let mut sorted: Vec<&String> = special_tokens.iter().collect();
            sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
            let alternation = sorted
                .iter()
                .map(|s| fancy_regex::escape(s))
                .collect::<Vec<_>>()
                .join("|");
            let matcher = Regex::new(&alternation)
                .map_err(|e| Error::Value(format!("special_tokens: cannot build matcher: {e}")))?;
            Some(matcher)
        };
        let chunkable = matches!(splitter, Splitter::Scanner(_));
        Ok(Pretokenizer {
            splitter,
            specials,
            chunkable,
        })
    }

    /// The ordinary (non-special) segments of `text`, each also cut into chunks of about
    /// `chunk_size` bytes where that cannot change the pretokens.
    pub fn segments<'t>(&self, text: &'t str, chunk_size: usize) -> Result<Vec<&'t str>> {
        let mut ordinary = Vec::new();
        match &self.specials {
            None => ordinary.push(text),
            Some(specials) => {
                let mut start = 0;
                for m in specials.find_iter(text) {
                    let m = m.map_err(|e| {
                        Error::Value(format!("special token matcher failed on the input: {e}"))
                    })?;
                    ordinary.extend(text.get(start..m.start()));
                    start = m.end();
                }
                ordinary.extend(text.get(start..));
            }
        }
        let mut out = Vec::with_capacity(ordinary.len());
        for segment in ordinary.into_iter().filter(|s| !s.is_empty()) {
            if self.chunkable && segment.len() > chunk_size {
                let mut start = 0;
                for end in chunk_boundaries(segment, chunk_size) {
                    out.extend(segment.get(start..end));
                    start = end;
                }
                out.extend(segment.get(start..));
            } else {
                out.push(segment);
            }
        }
        Ok(out)
    }

    /// Calls `f` with each pretoken of `segment` (a piece returned by [`Self::segments`]).
    pub fn for_each_piece<'t>(&self, segment: &'t str, mut f: impl FnMut(&'t str)) -> Result<()> {
        self.splitter.for_each_piece(segment, |piece| {
            // A user's regex may match the empty string; an empty word has nothing to merge.
            if !piece.is_empty() {
                f(piece);
            }
        })
    }
}

/// Byte offsets, about `chunk_size` apart, at which `text` may be cut without changing how a
/// built-in pattern splits it.
///
/// A cut at `p` is taken only where `text[p-1]` is a lone `\n` between two alphanumeric
/// characters ("word\nWord"). In all four built-in patterns no match can run from a letter or
/// digit through a newline into a following letter or digit, and the newline's own match is
/// the same whether it is followed by that character or by the end of the text (`\s+` vs
/// `\s+(?!\S)` / `\s++$` / `\s*[\r\n]` all give just "\n"). So the pieces of each chunk are
/// exactly the pieces of the whole. Text with no such place is simply not cut.
pub fn chunk_boundaries(text: &str, chunk_size: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut cuts = Vec::new();
    let mut target = chunk_size.max(1);
    while target < bytes.len() {
        let found = memchr_newline_from(bytes, target).and_then(|mut nl| loop {
            if is_safe_cut(text, nl + 1) {
                break Some(nl + 1);
            }
            nl = memchr_newline_from(bytes, nl + 1)?;
        });
        match found {
            Some(cut) => {
                cuts.push(cut);
                target = cut + chunk_size.max(1);
            }
            None => break,
        }
    }
    cuts
}

fn memchr_newline_from(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| from + i)
}

/// Whether `text` can be cut at `p`, where `text[p-1]` is `\n` (see [`chunk_boundaries`]).
fn is_safe_cut(text: &str, p: usize) -> bool {
    let (Some(before), Some(after)) = (text.get(..p - 1), text.get(p..)) else {
        return false;
    };
    let prev = before.chars().next_back();
    let next = after.chars().next();
    matches!((prev, next), (Some(a), Some(b)) if a.is_alphanumeric() && b.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(pre: &Pretokenizer, text: &str, chunk: usize) -> Vec<String> {
        let mut out = Vec::new();
        for seg in pre.segments(text, chunk).unwrap() {
            pre.for_each_piece(seg, |p| out.push(p.to_string()))
                .unwrap();
        }
        out
    }

    #[test]
    fn gpt2_splits() {
        let pre = Pretokenizer::new("gpt2", &[]).unwrap();
        assert_eq!(
            pieces(&pre, "Hello world's  end\n\n", 1 << 20),
            ["Hello", " world", "'s", " ", " end", "\n\n"]
        );
    }

    #[test]
    fn specials_are_cut_out() {
        let pre = Pretokenizer::new("gpt2", &["<|endoftext|>".to_string()]).unwrap();
        assert_eq!(
            pieces(&pre, "a<|endoftext|>b <|endoftext|>", 1 << 20),
            ["a", "b", " "]
        );
    }

    #[test]
    fn chunking_never_changes_pieces() {
        let text = "The cat  \n sat.\nOn the mat\n\nDone \nAgain 12\n34 x\n/y\nok\n ".repeat(50);
        for pattern in ["gpt2", "r50k_base", "cl100k_base", "o200k_base"] {
            let pre = Pretokenizer::new(pattern, &[]).unwrap();
            let whole = pieces(&pre, &text, usize::MAX);
            for chunk in [1, 7, 64, 1000] {
                assert_eq!(pieces(&pre, &text, chunk), whole, "{pattern} chunk {chunk}");
            }
        }
    }

    #[test]
    fn bad_pattern_is_a_value_error() {
        assert!(matches!(
            Pretokenizer::new("(unclosed", &[]),
            Err(Error::Value(_))
        ));
        assert!(matches!(Pretokenizer::new("", &[]), Err(Error::Value(_))));
    }
}
