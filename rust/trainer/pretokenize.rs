//! Splitting training text into pretokens ("words"): the units a BPE merge never crosses.
//!
//! Text is first cut at special tokens (which are never learned as merges), then each
//! ordinary segment is split by the pretokenization regex, exactly as the encoder will split
//! it at inference time. Long texts are also cut into chunks for parallel counting, but only
//! at places where the regex is known to split anyway (see [`chunk_boundaries`]).

use fancy_regex::Regex;

use crate::error::{Error, Result};

/// GPT-2's split pattern, as in OpenAI's `encoder.py` and HF tokenizers' `ByteLevel`.
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// tiktoken's spelling of the same pattern (`r50k_base`, `p50k_base`): same splits, faster.
pub const R50K_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";
/// tiktoken's `cl100k_base` pattern.
pub const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
/// tiktoken's `o200k_base` pattern.
pub const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// The regex for a pattern name (`gpt2`, `r50k_base`, `p50k_base`, `cl100k_base`,
/// `o200k_base`); anything else is taken to be a regex itself.
pub fn resolve_pattern(name_or_regex: &str) -> &str {
    match name_or_regex {
        "gpt2" | "r50k_base" | "p50k_base" => GPT2_PATTERN,
        "cl100k_base" => CL100K_PATTERN,
        "o200k_base" => O200K_PATTERN,
        other => other,
    }
}

/// Cuts text at special tokens, then into pretokens.
#[derive(Debug)]
pub struct Pretokenizer {
    regex: Regex,
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
        let regex_src = resolve_pattern(pattern);
        if regex_src.is_empty() {
            return Err(Error::Value("pattern: must not be empty".into()));
        }
        let regex = Regex::new(regex_src)
            .map_err(|e| Error::Value(format!("pattern: invalid regex {regex_src:?}: {e}")))?;
        let specials =
            if special_tokens.is_empty() {
                None
            } else {
                let mut sorted: Vec<&String> = special_tokens.iter().collect();
                sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
                if sorted.iter().any(|s| s.is_empty()) {
                    return Err(Error::Value("special_tokens: empty string".into()));
                }
                let alternation = sorted
                    .iter()
                    .map(|s| fancy_regex::escape(s))
                    .collect::<Vec<_>>()
                    .join("|");
                Some(Regex::new(&alternation).map_err(|e| {
                    Error::Value(format!("special_tokens: cannot build matcher: {e}"))
                })?)
            };
        let chunkable =
            [GPT2_PATTERN, R50K_PATTERN, CL100K_PATTERN, O200K_PATTERN].contains(&regex_src);
        Ok(Pretokenizer {
            regex,
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
                    let m = m.map_err(regex_error)?;
                    ordinary.push(&text[start..m.start()]);
                    start = m.end();
                }
                ordinary.push(&text[start..]);
            }
        }
        let mut out = Vec::with_capacity(ordinary.len());
        for segment in ordinary.into_iter().filter(|s| !s.is_empty()) {
            if self.chunkable && segment.len() > chunk_size {
                let mut start = 0;
                for end in chunk_boundaries(segment, chunk_size) {
                    out.push(&segment[start..end]);
                    start = end;
                }
                out.push(&segment[start..]);
            } else {
                out.push(segment);
            }
        }
        Ok(out)
    }

    /// Calls `f` with each pretoken of `segment` (a piece returned by [`Self::segments`]).
    pub fn for_each_piece<'t>(&self, segment: &'t str, mut f: impl FnMut(&'t str)) -> Result<()> {
        for m in self.regex.find_iter(segment) {
            let m = m.map_err(regex_error)?;
            if !m.as_str().is_empty() {
                f(m.as_str());
            }
        }
        Ok(())
    }
}

fn regex_error(e: fancy_regex::Error) -> Error {
    Error::Value(format!("pretokenizer regex failed on the input: {e}"))
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
