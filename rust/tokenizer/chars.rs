//! Character classes for the pretokenizers, as one byte per code point.
//!
//! The split patterns only ask a handful of questions about a character (is it a letter, which
//! kind of letter, a mark, a number, white space). We answer them from a two-level table built
//! once from `regex-syntax`'s Unicode tables: the very tables that fancy-regex (and so
//! tiktoken) consult, so the hand-written scanner and the reference regexes cannot disagree
//! about a code point.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// The class of one code point. Letters are split the way the o200k pattern needs them:
/// `[\p{Lu}\p{Lt}]` (upper), `\p{Ll}` (lower), `[\p{Lm}\p{Lo}]` (other, in both of o200k's
/// letter sets). `\s` and the letter/number/mark categories are disjoint, so one value suffices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cls {
    /// Anything else: punctuation, symbols, controls that are not `\s`, unassigned.
    Other = 0,
    /// `\p{Lu}` or `\p{Lt}`.
    Upper = 1,
    /// `\p{Ll}`.
    Lower = 2,
    /// `\p{Lm}` or `\p{Lo}`.
    LetterOther = 3,
    /// `\p{M}`.
    Mark = 4,
    /// `\p{N}`.
    Number = 5,
    /// `\s` (Unicode White_Space).
    Space = 6,
}

impl Cls {
    /// `\p{L}`.
    #[inline]
    pub fn is_letter(self) -> bool {
        matches!(self, Cls::Upper | Cls::Lower | Cls::LetterOther)
    }

    /// `[^\s\p{L}\p{N}]`: what the patterns call punctuation (marks included).
    #[inline]
    pub fn is_punct(self) -> bool {
        matches!(self, Cls::Other | Cls::Mark)
    }
}

const BLOCK: usize = 256;
const N_BLOCKS: usize = 0x11_0000 / BLOCK;

struct Table {
    /// Block index for each 256-code-point block; identical blocks are stored once.
    index: Vec<u16>,
    blocks: Vec<[u8; BLOCK]>,
}

fn ranges(class: &str) -> Vec<(u32, u32)> {
    // The class strings are fixed literals of this module; a parse failure would be a bug in
    // this file, caught by the unit tests, so falling back to "no ranges" is never reached.
    let Ok(hir) = regex_syntax::Parser::new().parse(class) else {
        return Vec::new();
    };
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        _ => Vec::new(),
    }
}

fn build() -> Table {
    let mut flat = vec![Cls::Other as u8; 0x11_0000];
    // Later entries win; the sets are disjoint anyway.
    for (class, cls) in [
        (r"[\p{Lu}\p{Lt}]", Cls::Upper),
        (r"\p{Ll}", Cls::Lower),
        (r"[\p{Lm}\p{Lo}]", Cls::LetterOther),
        (r"\p{M}", Cls::Mark),
        (r"\p{N}", Cls::Number),
        (r"\s", Cls::Space),
    ] {
        for (lo, hi) in ranges(class) {
            for cp in lo..=hi {
                if let Some(slot) = flat.get_mut(cp as usize) {
                    *slot = cls as u8;
                }
            }
        }
    }
    let mut index = Vec::with_capacity(N_BLOCKS);
    let mut blocks: Vec<[u8; BLOCK]> = Vec::new();
    for chunk in flat.chunks_exact(BLOCK) {
        let mut block = [0u8; BLOCK];
        block.copy_from_slice(chunk);
        let at = match blocks.iter().position(|b| *b == block) {
            Some(i) => i,
            None => {
                blocks.push(block);
                blocks.len() - 1
            }
        };
        index.push(at as u16);
    }
    Table { index, blocks }
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// Classes of the 128 ASCII characters, the hot path of English text.
fn ascii_table() -> &'static [Cls; 128] {
    static ASCII: OnceLock<[Cls; 128]> = OnceLock::new();
    ASCII.get_or_init(|| {
        let mut t = [Cls::Other; 128];
        for (i, slot) in t.iter_mut().enumerate() {
            *slot = slow_class(i as u32);
        }
        t
    })
}

fn from_u8(v: u8) -> Cls {
    match v {
        1 => Cls::Upper,
        2 => Cls::Lower,
        3 => Cls::LetterOther,
        4 => Cls::Mark,
        5 => Cls::Number,
        6 => Cls::Space,
        _ => Cls::Other,
    }
}

fn slow_class(cp: u32) -> Cls {
    let t = table();
    let block = t.index.get((cp as usize) / BLOCK).copied().unwrap_or(0);
    let v = t
        .blocks
        .get(block as usize)
        .map(|b| b[(cp as usize) % BLOCK])
        .unwrap_or(0);
    from_u8(v)
}

/// The class of `c`.
#[inline]
pub fn class(c: char) -> Cls {
    let cp = c as u32;
    if cp < 128 {
        ascii_table()[cp as usize]
    } else {
        slow_class(cp)
    }
}

/// A lookup handle that keeps the table references at hand in tight loops.
#[derive(Clone, Copy)]
pub struct Classifier {
    ascii: &'static [Cls; 128],
    table: &'static Table,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Classifier {
    /// Builds the tables on first use (a few milliseconds, once per process).
    pub fn new() -> Self {
        Classifier {
            ascii: ascii_table(),
            table: table(),
        }
    }

    /// The class of `c`.
    #[inline(always)]
    pub fn class(&self, c: char) -> Cls {
        let cp = c as usize;
        if cp < 128 {
            self.ascii[cp]
        } else {
            let block = self.table.index.get(cp / BLOCK).copied().unwrap_or(0);
            let v = self
                .table
                .blocks
                .get(block as usize)
                .map(|b| b[cp % BLOCK])
                .unwrap_or(0);
            from_u8(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_known_characters() {
        assert_eq!(class('A'), Cls::Upper);
        assert_eq!(class('ǅ'), Cls::Upper); // Lt
        assert_eq!(class('a'), Cls::Lower);
        assert_eq!(class('中'), Cls::LetterOther);
        assert_eq!(class('ʰ'), Cls::LetterOther); // Lm
        assert_eq!(class('\u{0301}'), Cls::Mark);
        assert_eq!(class('7'), Cls::Number);
        assert_eq!(class('Ⅻ'), Cls::Number); // Nl
        assert_eq!(class('\u{a0}'), Cls::Space);
        assert_eq!(class('\u{3000}'), Cls::Space);
        assert_eq!(class('\u{85}'), Cls::Space);
        assert_eq!(class('!'), Cls::Other);
        assert_eq!(class('😀'), Cls::Other);
        assert_eq!(class('\u{10FFFF}'), Cls::Other);
    }

    #[test]
    fn table_agrees_with_regex_on_every_code_point() {
        let checks: [(&str, fn(Cls) -> bool); 4] = [
            (r"\A\p{L}\z", |c| c.is_letter()),
            (r"\A\p{N}\z", |c| c == Cls::Number),
            (r"\A\s\z", |c| c == Cls::Space),
            (r"\A\p{M}\z", |c| c == Cls::Mark),
        ];
        for (pat, f) in checks {
            let re = fancy_regex::Regex::new(pat).unwrap();
            // Every 31st code point keeps the test quick while crossing every block.
            for cp in (0..0x11_0000u32).step_by(31) {
                if let Some(c) = char::from_u32(cp) {
                    let mut buf = [0u8; 4];
                    let s = c.encode_utf8(&mut buf);
                    assert_eq!(re.is_match(s).unwrap(), f(class(c)), "{pat} U+{cp:04X}");
                }
            }
        }
    }
}
