//! [`Encoding`]: a vocabulary, its merge rules, a pretokenizer and special tokens; encodes
//! text to ids and decodes ids to bytes.

use aho_corasick::{AhoCorasick, MatchKind};
use rustc_hash::{FxHashMap, FxHashSet};

use super::bpe::Merger;
use super::pretokenize::Pretokenizer;
use crate::error::{Error, Result};

/// Which special tokens `encode` turns into their ids.
#[derive(Clone, Debug)]
pub enum Allowed {
    /// Every special token.
    All,
    /// Only these (by text).
    Some(FxHashSet<String>),
}

/// A complete byte-level BPE encoding.
#[derive(Debug)]
pub struct Encoding {
    /// Ordinary token bytes → id.
    encoder: FxHashMap<Vec<u8>, u32>,
    /// Ids whose bytes BPE provably merges to that id: the whole-piece shortcut is exact for them.
    whole: Vec<bool>,
    merger: Merger,
    pre: Pretokenizer,
    /// Every id's bytes, specials included: `bytes[offsets[id]..offsets[id + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    /// Whether an id exists (ids may have holes, as cl100k_base does).
    present: Vec<bool>,
    specials: FxHashMap<String, u32>,
    /// All special tokens, overlapping matches (for the "disallowed" check).
    specials_any: Option<AhoCorasick>,
    /// All special tokens, leftmost-longest (for splitting with every special allowed).
    specials_split: Option<AhoCorasick>,
}

/// How the merge rules were given.
pub enum Rules {
    /// tiktoken ranks: any split of a token into two tokens merges, by the token's rank.
    Ranks,
    /// Listed merges (left id, right id, merged id) in priority order (Hugging Face).
    Merges(Vec<(u32, u32, u32)>),
}

impl Encoding {
    /// Builds an encoding. `tokens`: ordinary token bytes and ids; every single byte must be
    /// one. `specials`: special token texts and ids. `source` names the origin in errors.
    pub fn new(
        tokens: Vec<(Vec<u8>, u32)>,
        rules: Rules,
        specials: Vec<(String, u32)>,
        pattern: &str,
        source: &str,
    ) -> Result<Self> {
        let pre = Pretokenizer::new(pattern)?;
        let mut encoder: FxHashMap<Vec<u8>, u32> = FxHashMap::default();
        encoder.reserve(tokens.len());
        let n_vocab = tokens
            .iter()
            .map(|t| t.1)
            .chain(specials.iter().map(|s| s.1))
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut by_id: Vec<Option<&[u8]>> = vec![None; n_vocab];
        for (b, id) in &tokens {
            if let Some(prev) = by_id.get(*id as usize).copied().flatten() {
                return Err(Error::Format(format!(
                    "{source}: id {id} is given to both {prev:?} and {b:?}"
                )));
            }
            if let Some(old) = encoder.insert(b.clone(), *id) {
                return Err(Error::Format(format!(
                    "{source}: token {b:?} has two ids, {old} and {id}"
                )));
            }
            if let Some(slot) = by_id.get_mut(*id as usize) {
                *slot = Some(b.as_slice());
            }
        }
        let mut special_map = FxHashMap::default();
        for (s, id) in &specials {
            if by_id.get(*id as usize).copied().flatten().is_some() {
                return Err(Error::Format(format!(
                    "{source}: special token {s:?} reuses id {id} of an ordinary token"
                )));
            }
            if special_map.insert(s.clone(), *id).is_some() {
                return Err(Error::Format(format!(
                    "{source}: special token {s:?} given twice"
                )));
            }
            if let Some(slot) = by_id.get_mut(*id as usize) {
                *slot = Some(s.as_bytes());
            }
        }
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n_vocab + 1);
        let mut present = Vec::with_capacity(n_vocab);
        offsets.push(0u32);
        for b in &by_id {
            bytes.extend_from_slice(b.unwrap_or(&[]));
            offsets.push(bytes.len() as u32);
            present.push(b.is_some());
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *encoder.get(&[b as u8][..]).ok_or_else(|| {
                Error::Format(format!("{source}: no token for the single byte 0x{b:02x}"))
            })?;
        }
        let (merger, shortcut_exact) = match rules {
            Rules::Ranks => {
                let mut rules = Vec::new();
                for (b, id) in &tokens {
                    for cut in 1..b.len() {
                        if let (Some(&l), Some(&r)) =
                            (encoder.get(&b[..cut]), encoder.get(&b[cut..]))
                        {
                            rules.push((l, r, *id, *id));
                        }
                    }
                }
                // Stable sort by rank keeps "first rule wins" meaningful for equal pairs.
                (Merger::new(byte_ids, rules), true)
            }
            Rules::Merges(list) => (
                Merger::new(
                    byte_ids,
                    list.into_iter()
                        .enumerate()
                        .map(|(i, (l, r, m))| (l, r, i as u32, m)),
                ),
                false,
            ),
        };
        let mut whole = vec![shortcut_exact; n_vocab];
        if !shortcut_exact {
            // Hugging Face only merges listed pairs: a vocabulary entry is returned whole only
            // if merging its bytes really yields it.
            let mut out = Vec::new();
            for (b, id) in &tokens {
                out.clear();
                merger.merge(b, &mut out);
                if let Some(w) = whole.get_mut(*id as usize) {
                    *w = out.as_slice() == [*id];
                }
            }
        }
        let texts: Vec<&str> = specials.iter().map(|s| s.0.as_str()).collect();
        let build = |kind: MatchKind| -> Result<Option<AhoCorasick>> {
            if texts.is_empty() {
                return Ok(None);
            }
            AhoCorasick::builder()
                .match_kind(kind)
                .build(&texts)
                .map(Some)
                .map_err(|e| Error::Value(format!("{source}: special tokens: {e}")))
        };
        Ok(Encoding {
            specials_any: build(MatchKind::Standard)?,
            specials_split: build(MatchKind::LeftmostLongest)?,
            encoder,
            whole,
            merger,
            pre,
            bytes,
            offsets,
            present,
            specials: special_map,
        })
    }

    /// One more than the largest id.
    pub fn n_vocab(&self) -> usize {
        self.present.len()
    }

    /// The split pattern.
    pub fn pattern(&self) -> &str {
        self.pre.pattern()
    }

    /// Special token texts → ids.
    pub fn specials(&self) -> &FxHashMap<String, u32> {
        &self.specials
    }

    /// Ordinary token bytes → ids (tiktoken's `mergeable_ranks`).
    pub fn mergeable_ranks(&self) -> &FxHashMap<Vec<u8>, u32> {
        &self.encoder
    }

    /// The pretokenizer.
    pub fn pretokenizer(&self) -> &Pretokenizer {
        &self.pre
    }

    /// Appends the ids of one piece.
    #[inline]
    fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if let Some(&id) = self.encoder.get(piece) {
            if self.whole.get(id as usize) == Some(&true) {
                out.push(id);
                return;
            }
        }
        self.merger.merge(piece, out);
    }

    /// Encodes `text` with no special-token handling (special texts become ordinary tokens).
    pub fn encode_ordinary(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_ordinary_into(text, &mut out)?;
        Ok(out)
    }

    fn encode_ordinary_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        self.pre
            .for_each_piece(text, |piece| self.encode_piece(piece.as_bytes(), out))
    }

    /// The first special token in `text` that is not allowed, if any.
    pub fn find_disallowed(&self, text: &str, disallowed: &Allowed) -> Option<String> {
        let ac = self.specials_any.as_ref()?;
        ac.find_overlapping_iter(text)
            .map(|m| &text[m.start()..m.end()])
            .find(|s| match disallowed {
                Allowed::All => true,
                Allowed::Some(set) => set.contains(*s),
            })
            .map(str::to_string)
    }

    /// Encodes `text`, turning the allowed special tokens into their ids and everything else
    /// into ordinary tokens (the caller checks for disallowed ones first).
    pub fn encode(&self, text: &str, allowed: &Allowed) -> Result<Vec<u32>> {
        let subset;
        let ac = match allowed {
            Allowed::Some(set) if set.is_empty() => return self.encode_ordinary(text),
            Allowed::All => match &self.specials_split {
                Some(ac) => ac,
                None => return self.encode_ordinary(text),
            },
            Allowed::Some(set) => {
                let texts: Vec<&str> = set
                    .iter()
                    .map(String::as_str)
                    .filter(|s| self.specials.contains_key(*s))
                    .collect();
                if texts.is_empty() {
                    return self.encode_ordinary(text);
                }
                subset = AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&texts)
                    .map_err(|e| Error::Value(format!("allowed_special: {e}")))?;
                &subset
            }
        };
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        let mut pos = 0;
        for m in ac.find_iter(text) {
            self.encode_ordinary_into(&text[pos..m.start()], &mut out)?;
            if let Some(&id) = self.specials.get(&text[m.start()..m.end()]) {
                out.push(id);
            }
            pos = m.end();
        }
        self.encode_ordinary_into(&text[pos..], &mut out)?;
        Ok(out)
    }

    /// The bytes of one token (specials included); `KeyError` for an unknown id.
    #[inline]
    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        let i = id as usize;
        if self.present.get(i) != Some(&true) {
            return Err(Error::Key(format!("unknown token id {id}")));
        }
        let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        self.bytes
            .get(a..b)
            .ok_or_else(|| Error::Key(format!("unknown token id {id}")))
    }

    /// The concatenated bytes of `ids`.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(out)
    }

    /// The id of one token given its exact bytes (ordinary or special); `KeyError` otherwise.
    pub fn encode_single_token(&self, bytes: &[u8]) -> Result<u32> {
        if let Some(&id) = self.encoder.get(bytes) {
            return Ok(id);
        }
        if let Some(&id) = std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| self.specials.get(s))
        {
            return Ok(id);
        }
        Err(Error::Key(format!("no single token for {bytes:?}")))
    }
}
