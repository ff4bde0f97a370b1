//! Pretokenization: cutting text into the pieces that BPE then merges.
//!
//! Each known split pattern (GPT-2/r50k, cl100k_base, o200k_base) has a hand-written scanner
//! that returns exactly the matches fancy-regex finds for the pattern, alternative by
//! alternative, without a backtracking engine: each alternative is a few greedy runs over
//! character classes, and the places where the regex would backtrack (`\s+(?!\S)`,
//! `\s*[\r\n]`, o200k's two letter runs) are settled by remembering the one position the
//! backtracking would stop at. Every alternative is linear in the piece it returns, so the
//! whole scan is linear in the text.
//!
//! Any other pattern runs through fancy-regex (the slow reference path, also used by tests).

use super::chars::{Classifier, Cls};
use crate::error::{Error, Result};

/// tiktoken's r50k/GPT-2 pattern (equivalent to GPT-2's original, but faster in a regex engine).
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";
/// GPT-2's pattern as published with the model (and used by Hugging Face tokenizers).
pub const GPT2_ORIGINAL_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// tiktoken's cl100k_base pattern.
pub const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";
/// tiktoken's o200k_base pattern.
pub const O200K_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// Which scanner cuts the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// GPT-2, r50k_base and p50k_base.
    Gpt2,
    /// cl100k_base.
    Cl100k,
    /// o200k_base.
    O200k,
}

impl Scheme {
    /// The regex this scheme implements.
    pub fn pattern(self) -> &'static str {
        match self {
            Scheme::Gpt2 => GPT2_PATTERN,
            Scheme::Cl100k => CL100K_PATTERN,
            Scheme::O200k => O200K_PATTERN,
        }
    }

    /// The scheme for a pattern name (`"gpt2"`, `"r50k_base"`, `"cl100k_base"`...) or for one
    /// of the known regexes written out; `None` for any other regex.
    pub fn from_name_or_pattern(s: &str) -> Option<Scheme> {
        match s {
            "gpt2"
            | "r50k"
            | "r50k_base"
            | "p50k_base"
            | "p50k_edit"
            | GPT2_PATTERN
            | GPT2_ORIGINAL_PATTERN => Some(Scheme::Gpt2),
            "cl100k" | "cl100k_base" | CL100K_PATTERN => Some(Scheme::Cl100k),
            "o200k" | "o200k_base" | O200K_PATTERN => Some(Scheme::O200k),
            _ => None,
        }
    }
}

/// A pretokenizer: a hand-written scanner for a known pattern, or fancy-regex for others.
#[derive(Clone, Debug)]
pub enum Pretokenizer {
    /// One of the known patterns, scanned by hand.
    Scanner(Scheme),
    /// Any other pattern (tiktoken semantics: text between matches is dropped).
    Regex(Box<fancy_regex::Regex>),
}

impl Pretokenizer {
    /// The pretokenizer for a pattern name or regex; a regex that fails to compile is a
    /// `ValueError` naming it.
    pub fn new(name_or_pattern: &str) -> Result<Self> {
        if let Some(s) = Scheme::from_name_or_pattern(name_or_pattern) {
            return Ok(Pretokenizer::Scanner(s));
        }
        fancy_regex::Regex::new(name_or_pattern)
            .map(|r| Pretokenizer::Regex(Box::new(r)))
            .map_err(|e| Error::Value(format!("invalid split pattern {name_or_pattern:?}: {e}")))
    }

    /// The regex string this pretokenizer implements.
    pub fn pattern(&self) -> &str {
        match self {
            Pretokenizer::Scanner(s) => s.pattern(),
            Pretokenizer::Regex(r) => r.as_str(),
        }
    }

    /// Calls `f` with each piece of `text`, in order.
    pub fn for_each_piece<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) -> Result<()> {
        match self {
            Pretokenizer::Scanner(scheme) => {
                let scan = Scanner::new(text);
                let mut pos = 0;
                while pos < text.len() {
                    let end = match scheme {
                        Scheme::Gpt2 => scan.gpt2(pos),
                        Scheme::Cl100k => scan.cl100k(pos),
                        Scheme::O200k => scan.o200k(pos),
                    };
                    // Every alternative set above matches at least one character; the max()
                    // only guards the loop against a bug turning into a hang.
                    let end = end.max(pos + 1);
                    if let Some(piece) = text.get(pos..end) {
                        f(piece);
                    }
                    pos = end;
                }
                Ok(())
            }
            Pretokenizer::Regex(re) => {
                for m in re.find_iter(text) {
                    let m = m.map_err(|e| Error::Value(format!("split pattern failed: {e}")))?;
                    f(m.as_str());
                }
                Ok(())
            }
        }
    }

    /// The pieces of `text` as a vector (convenient for tests and small inputs).
    pub fn pieces<'t>(&self, text: &'t str) -> Result<Vec<&'t str>> {
        let mut out = Vec::new();
        self.for_each_piece(text, |p| out.push(p))?;
        Ok(out)
    }
}

/// The reference pretokenizer for `scheme`: fancy-regex running the real pattern.
pub fn reference_regex(scheme: Scheme) -> Result<fancy_regex::Regex> {
    fancy_regex::Regex::new(scheme.pattern())
        .map_err(|e| Error::Value(format!("reference pattern: {e}")))
}

/// Where a pattern's line-break alternative for white space sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Newline {
    /// None (GPT-2).
    No,
    /// After `\s++$` (cl100k).
    AfterEnd,
    /// First (o200k).
    BeforeEnd,
}

/// The scanner state: the text and the class table.
struct Scanner<'t> {
    s: &'t str,
    b: &'t [u8],
    cls: Classifier,
}

impl<'t> Scanner<'t> {
    fn new(s: &'t str) -> Self {
        Scanner {
            s,
            b: s.as_bytes(),
            cls: Classifier::new(),
        }
    }

    /// The character at byte `pos` and its length in bytes.
    #[inline(always)]
    fn at(&self, pos: usize) -> Option<(char, usize)> {
        let b0 = *self.b.get(pos)?;
        if b0 < 0x80 {
            return Some((b0 as char, 1));
        }
        let c = self.s.get(pos..)?.chars().next()?;
        Some((c, c.len_utf8()))
    }

    #[inline(always)]
    fn class_at(&self, pos: usize) -> Option<(Cls, usize)> {
        let b0 = *self.b.get(pos)?;
        if b0 < 0x80 {
            return Some((self.cls.class(b0 as char), 1));
        }
        let (c, n) = self.at(pos)?;
        Some((self.cls.class(c), n))
    }

    /// The end of the maximal run from `pos` of characters whose class passes `keep`.
    #[inline(always)]
    fn run(&self, mut pos: usize, keep: impl Fn(Cls) -> bool) -> usize {
        while let Some((c, n)) = self.class_at(pos) {
            if !keep(c) {
                break;
            }
            pos += n;
        }
        pos
    }

    /// Settles the white-space alternatives shared by all three patterns, for a run of `\s`
    /// starting at `pos`: `\s++$` (or `\s+(?!\S)` at the end), then, when `newline` is set,
    /// `\s*[\r\n]` (the run up to its last line break), then `\s+(?!\S)` (the run less its last
    /// character, which stays to prefix the next word), then a single `\s` (or `\s+`: the same
    /// thing there).
    fn whitespace(&self, pos: usize, newline: Newline) -> usize {
        let mut end = pos;
        let mut last_start = pos;
        let mut chars = 0usize;
        let mut after_newline = None;
        while let Some((c, n)) = self.at(end) {
            if self.cls.class(c) != Cls::Space {
                break;
            }
            if c == '\r' || c == '\n' {
                after_newline = Some(end + n);
            }
            last_start = end;
            end += n;
            chars += 1;
        }
        // cl100k tries `\s++$` before `\s*[\r\n]`; o200k has no `\s++$` and tries its
        // `\s*[\r\n]+` first; GPT-2 has no line-break alternative.
        let at_end = end >= self.b.len();
        match (newline, after_newline) {
            (Newline::AfterEnd, Some(e)) if !at_end => return e,
            (Newline::BeforeEnd, Some(e)) => return e,
            _ if at_end => return end,
            _ => {}
        }
        if chars >= 2 {
            last_start
        } else {
            end
        }
    }

    /// `'(?:[sdmt]|ll|ve|re)` (or case-insensitively, where `(?i)` folds `s` with `ſ`): the end of
    /// the contraction at `pos`, if there is one.
    #[inline]
    fn contraction(&self, pos: usize, ignore_case: bool) -> Option<usize> {
        if self.b.get(pos) != Some(&b'\'') {
            return None;
        }
        let (c1, n1) = self.at(pos + 1)?;
        let fold = |c: char| -> char {
            if !ignore_case {
                c
            } else if c == 'ſ' {
                's'
            } else {
                c.to_ascii_lowercase()
            }
        };
        let c1 = fold(c1);
        if matches!(c1, 's' | 'd' | 'm' | 't') {
            return Some(pos + 1 + n1);
        }
        let (c2, n2) = self.at(pos + 1 + n1)?;
        let c2 = fold(c2);
        match (c1, c2) {
            ('l', 'l') | ('v', 'e') | ('r', 'e') => Some(pos + 1 + n1 + n2),
            _ => None,
        }
    }

    /// One piece of the GPT-2/r50k pattern starting at `pos`.
    fn gpt2(&self, pos: usize) -> usize {
        if let Some(end) = self.contraction(pos, false) {
            return end;
        }
        let q = if self.b.get(pos) == Some(&b' ') {
            pos + 1
        } else {
            pos
        };
        if let Some((c, n)) = self.class_at(q) {
            if c.is_letter() {
                return self.run(q + n, Cls::is_letter);
            }
            if c == Cls::Number {
                return self.run(q + n, |c| c == Cls::Number);
            }
            if c.is_punct() {
                return self.run(q + n, Cls::is_punct);
            }
        }
        self.whitespace(pos, Newline::No)
    }

    /// One piece of the cl100k_base pattern starting at `pos`.
    fn cl100k(&self, pos: usize) -> usize {
        if let Some(end) = self.contraction(pos, true) {
            return end;
        }
        let Some((c0, n0)) = self.at(pos) else {
            return pos;
        };
        let k0 = self.cls.class(c0);
        // [^\r\n\p{L}\p{N}]?+\p{L}++ (the prefix is possessive: no retry without it).
        if k0.is_letter() {
            return self.run(pos + n0, Cls::is_letter);
        }
        let prefix_ok = c0 != '\r' && c0 != '\n' && k0 != Cls::Number;
        if prefix_ok {
            if let Some((k1, n1)) = self.class_at(pos + n0) {
                if k1.is_letter() {
                    return self.run(pos + n0 + n1, Cls::is_letter);
                }
            }
        }
        // \p{N}{1,3}+
        if k0 == Cls::Number {
            let mut end = pos + n0;
            for _ in 0..2 {
                match self.class_at(end) {
                    Some((Cls::Number, n)) => end += n,
                    _ => break,
                }
            }
            return end;
        }
        // ' ?[^\s\p{L}\p{N}]++[\r\n]*+'
        if let Some(end) = self.punct_run(pos, b"\r\n") {
            return end;
        }
        self.whitespace(pos, Newline::AfterEnd)
    }

    /// ` ?[^\s\p{L}\p{N}]+[tail]*` at `pos`.
    #[inline]
    fn punct_run(&self, pos: usize, tail: &[u8]) -> Option<usize> {
        let q = if self.b.get(pos) == Some(&b' ') {
            pos + 1
        } else {
            pos
        };
        let (k, n) = self.class_at(q)?;
        if !k.is_punct() {
            return None;
        }
        let mut end = self.run(q + n, Cls::is_punct);
        while self.b.get(end).is_some_and(|b| tail.contains(b)) {
            end += 1;
        }
        Some(end)
    }

    /// One piece of the o200k_base pattern starting at `pos`.
    fn o200k(&self, pos: usize) -> usize {
        let Some((c0, n0)) = self.at(pos) else {
            return pos;
        };
        let k0 = self.cls.class(c0);
        // The optional prefix [^\r\n\p{L}\p{N}]? is greedy but not possessive: the regex
        // tries each letter alternative with it, then without it.
        let prefix =
            (c0 != '\r' && c0 != '\n' && !k0.is_letter() && k0 != Cls::Number).then_some(pos + n0);
        for word in [Self::o200k_lower_word, Self::o200k_upper_word] {
            for start in prefix.into_iter().chain([pos]) {
                if let Some(end) = word(self, start) {
                    return self.contraction(end, true).unwrap_or(end);
                }
            }
        }
        // \p{N}{1,3}
        if k0 == Cls::Number {
            let mut end = pos + n0;
            for _ in 0..2 {
                match self.class_at(end) {
                    Some((Cls::Number, n)) => end += n,
                    _ => break,
                }
            }
            return end;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
        if let Some(end) = self.punct_run(pos, b"\r\n/") {
            return end;
        }
        self.whitespace(pos, Newline::BeforeEnd)
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` at `pos`, as a backtracking
    /// engine would match it: the first run greedily, then, if no lower-case letter follows,
    /// giving characters back until one the second run accepts (Lm, Lo, M) ends the match.
    fn o200k_lower_word(&self, pos: usize) -> Option<usize> {
        let mut end = pos;
        let mut after_both = None; // end of the last Lm/Lo/M char of the first run
        while let Some((k, n)) = self.class_at(end) {
            match k {
                Cls::Upper => {}
                Cls::LetterOther | Cls::Mark => after_both = Some(end + n),
                _ => break,
            }
            end += n;
        }
        match self.class_at(end) {
            Some((Cls::Lower, n)) => Some(self.run(end + n, |k| {
                matches!(k, Cls::Lower | Cls::LetterOther | Cls::Mark)
            })),
            _ => after_both,
        }
    }

    /// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*` at `pos`.
    fn o200k_upper_word(&self, pos: usize) -> Option<usize> {
        let upper = |k| matches!(k, Cls::Upper | Cls::LetterOther | Cls::Mark);
        let end = self.run(pos, upper);
        if end == pos {
            return None;
        }
        Some(self.run(end, |k| {
            matches!(k, Cls::Lower | Cls::LetterOther | Cls::Mark)
        }))
    }
}

#[cfg(test)]
#[path = "pretokenize_tests.rs"]
mod tests;
