//! [`Encoding`]: a vocabulary, its merge rules, a pretokenizer and special tokens; encodes
//! text to ids and decodes ids to bytes.

use std::sync::Mutex;

use aho_corasick::{AhoCorasick, MatchKind};
use rustc_hash::{FxHashMap, FxHashSet};

use super::bpe::Merger;
use super::pretokenize::Pretokenizer;
use crate::error::{Error, Result};

/// `lens` value of tokens decoded through the general path.
const SLOW: u8 = u8::MAX;

/// Merged short pieces (packed bytes → count, ids of at most 7 tokens) for one encode call.
type PieceCache = FxHashMap<u128, (u8, [u32; 7])>;

/// A merge cache that several encode calls on one thread share (a batch worker keeps one).
/// Taken from its encoding's pool with [`Encoding::lease_cache`] and given back with
/// [`Encoding::return_cache`]: only valid with the encoding that filled it.
#[derive(Default)]
pub struct MergeCache(PieceCache);

/// Entries a cache keeps: bounds the memory a text of endless distinct pieces can take
/// (about 4 MB).
const CACHE_LIMIT: usize = 1 << 16;

/// Caches an encoding keeps between calls: one per thread that encodes at once, up to this.
const POOLED_CACHES: usize = 8;

/// Up to 15 bytes and their count in one integer (the count keeps "a" and "a\0" apart).
#[inline(always)]
fn pack(b: &[u8]) -> Option<u128> {
    if b.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..b.len()].copy_from_slice(b);
    buf[15] = b.len() as u8;
    Some(u128::from_le_bytes(buf))
}

/// [`pack`] of `piece`, a subslice of `text`, read with one 16-byte load from `text` where
/// 16 bytes remain. Copying the piece into a buffer and loading that back as one integer
/// stalled on store forwarding: 19 % of the time of encoding English.
#[inline(always)]
fn pack_in(text: &[u8], piece: &[u8]) -> Option<u128> {
    let len = piece.len();
    if len > 15 {
        return None;
    }
    let off = (piece.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    // In range only if `piece` lies inside `text`: then these are its very bytes.
    let window = off
        .checked_add(16)
        .filter(|_| off + len <= text.len())
        .and_then(|end| text.get(off..end));
    match window.and_then(|w| <[u8; 16]>::try_from(w).ok()) {
        Some(w) => {
            let mask = (1u128 << (8 * len)) - 1;
            Some((u128::from_le_bytes(w) & mask) | ((len as u128) << 120))
        }
        None => pack(piece),
    }
}

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
    /// The short tokens (≤ 15 bytes) among `whole`, keyed by their packed bytes: most pieces of
    /// real text are one short token, and an integer key costs one probe, no pointer chase.
    short: FxHashMap<u128, u32>,
    merger: Merger,
    pre: Pretokenizer,
    /// Every id's bytes, specials included: `bytes[offsets[id]..offsets[id + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    /// Whether an id exists (ids may have holes, as cl100k_base does).
    present: Vec<bool>,
    /// Each id's bytes in a fixed 16-byte slot, with its length (`SLOW` when longer or
    /// absent): decoding copies whole slots, two stores per token, no per-token memcpy call.
    slots: Vec<[u8; 16]>,
    lens: Vec<u8>,
    specials: FxHashMap<String, u32>,
    /// All special tokens, overlapping matches (for the "disallowed" check).
    specials_any: Option<AhoCorasick>,
    /// All special tokens, leftmost-longest (for splitting with every special allowed).
    specials_split: Option<AhoCorasick>,
    /// Merge caches kept between calls, so that a call finds the pieces earlier calls merged
    /// (a fresh cache per call cost 2.7-4 % of encoding 4 MB of English, and short texts
    /// went without one).
    caches: Mutex<Vec<PieceCache>>,
}

/// Tables are indexed by id, so a vocabulary may leave at most this many ids unused below its
/// largest (cl100k_base leaves 15): a stray id near 2^32 must be an error, not a 64 GiB table.
pub const MAX_UNUSED_IDS: usize = 1 << 20;

/// Checks that no id in `ids` (name, id) lies more than [`MAX_UNUSED_IDS`] beyond `count`, the
/// number of tokens.
pub fn check_ids_dense(
    ids: impl IntoIterator<Item = (String, u32)>,
    count: usize,
    source: &str,
) -> Result<()> {
    for (name, id) in ids {
        if id as usize >= count.saturating_add(MAX_UNUSED_IDS) {
            return Err(Error::Format(format!(
                "{source}: id {id} of {name:?} is far beyond the {count} tokens (ids must be \
                 nearly dense: at most {MAX_UNUSED_IDS} unused)"
            )));
        }
    }
    Ok(())
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
        check_ids_dense(
            tokens
                .iter()
                .map(|(b, id)| (String::from_utf8_lossy(b).into_owned(), *id)),
            tokens.len() + specials.len(),
            source,
        )?;
        check_ids_dense(
            specials.iter().cloned(),
            tokens.len() + specials.len(),
            source,
        )?;
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
        let short = tokens
            .iter()
            .filter(|(_, id)| whole.get(*id as usize) == Some(&true))
            .filter_map(|(b, id)| pack(b).map(|k| (k, *id)))
            .collect();
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
            caches: Mutex::new(Vec::new()),
            specials_any: build(MatchKind::Standard)?,
            specials_split: build(MatchKind::LeftmostLongest)?,
            encoder,
            whole,
            short,
            merger,
            pre,
            bytes,
            offsets,
            slots: by_id
                .iter()
                .map(|b| {
                    let mut slot = [0u8; 16];
                    if let Some(b) = b.filter(|b| b.len() <= 16) {
                        slot[..b.len()].copy_from_slice(b);
                    }
                    slot
                })
                .collect(),
            lens: by_id
                .iter()
                .map(|b| match b {
                    Some(b) if b.len() <= 16 => b.len() as u8,
                    _ => SLOW,
                })
                .collect(),
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

    /// Appends the ids of one piece. `cache` remembers the merges of short multi-token pieces
    /// (text repeats its words; merging costs a dozen probes). `packed`: [`pack`] of `piece`.
    #[inline]
    fn encode_piece(
        &self,
        piece: &[u8],
        packed: Option<u128>,
        out: &mut Vec<u32>,
        cache: &mut PieceCache,
        limit: usize,
    ) {
        if let Some(k) = packed {
            if let Some(&id) = self.short.get(&k) {
                out.push(id);
                return;
            }
            if let Some(&(n, ids)) = cache.get(&k) {
                out.extend_from_slice(&ids[..n as usize]);
                return;
            }
            let start = out.len();
            self.merger.merge(piece, out);
            if cache.len() < limit && out.len() - start <= 7 {
                let mut ids = [0u32; 7];
                let got = &out[start..];
                ids[..got.len()].copy_from_slice(got);
                cache.insert(k, (got.len() as u8, ids));
            }
            return;
        }
        if let Some(&id) = self.encoder.get(piece) {
            if self.whole.get(id as usize) == Some(&true) {
                out.push(id);
                return;
            }
        }
        self.merger.merge(piece, out);
    }

    /// A merge cache from this encoding's pool (empty if none is free).
    pub fn lease_cache(&self) -> MergeCache {
        MergeCache(
            self.caches
                .lock()
                .ok()
                .and_then(|mut pool| pool.pop())
                .unwrap_or_default(),
        )
    }

    /// Gives back a cache from [`Self::lease_cache`] (the pool keeps [`POOLED_CACHES`]).
    pub fn return_cache(&self, cache: MergeCache) {
        if let Ok(mut pool) = self.caches.lock() {
            if pool.len() < POOLED_CACHES {
                pool.push(cache.0);
            }
        }
    }

    /// Runs `f` with a cache from the pool, given back after.
    fn with_cache<T>(&self, f: impl FnOnce(&mut MergeCache) -> T) -> T {
        let mut cache = self.lease_cache();
        let out = f(&mut cache);
        self.return_cache(cache);
        out
    }

    /// Encodes `text` with no special-token handling (special texts become ordinary tokens).
    pub fn encode_ordinary(&self, text: &str) -> Result<Vec<u32>> {
        self.with_cache(|cache| self.encode_ordinary_cached(text, cache))
    }

    /// [`Self::encode_ordinary`] with a cache the caller keeps across calls (a batch worker).
    pub fn encode_ordinary_cached(&self, text: &str, cache: &mut MergeCache) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_ordinary_into(text, &mut out, &mut cache.0, CACHE_LIMIT)?;
        Ok(out)
    }

    fn encode_ordinary_into(
        &self,
        text: &str,
        out: &mut Vec<u32>,
        cache: &mut PieceCache,
        limit: usize,
    ) -> Result<()> {
        self.pre.for_each_piece(text, |piece| {
            let packed = pack_in(text.as_bytes(), piece.as_bytes());
            self.encode_piece(piece.as_bytes(), packed, out, cache, limit)
        })
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
        self.with_cache(|cache| self.encode_cached(text, allowed, cache))
    }

    /// [`Self::encode`] with a cache the caller keeps across calls (a batch worker).
    pub fn encode_cached(
        &self,
        text: &str,
        allowed: &Allowed,
        cache: &mut MergeCache,
    ) -> Result<Vec<u32>> {
        self.encode_with(text, allowed, &mut cache.0, CACHE_LIMIT)
    }

    fn encode_with(
        &self,
        text: &str,
        allowed: &Allowed,
        cache: &mut PieceCache,
        limit: usize,
    ) -> Result<Vec<u32>> {
        let ordinary = |cache: &mut PieceCache| {
            let mut out = Vec::with_capacity(text.len() / 4 + 1);
            self.encode_ordinary_into(text, &mut out, cache, limit)
                .map(|()| out)
        };
        let subset;
        let ac = match allowed {
            Allowed::Some(set) if set.is_empty() => return ordinary(cache),
            Allowed::All => match &self.specials_split {
                Some(ac) => ac,
                None => return ordinary(cache),
            },
            Allowed::Some(set) => {
                let texts: Vec<&str> = set
                    .iter()
                    .map(String::as_str)
                    .filter(|s| self.specials.contains_key(*s))
                    .collect();
                if texts.is_empty() {
                    return ordinary(cache);
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
            self.encode_ordinary_into(&text[pos..m.start()], &mut out, cache, limit)?;
            if let Some(&id) = self.specials.get(&text[m.start()..m.end()]) {
                out.push(id);
            }
            pos = m.end();
        }
        self.encode_ordinary_into(&text[pos..], &mut out, cache, limit)?;
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
        // First pass: the exact length (and every id checked), so the copy never reallocates.
        let mut total = 0usize;
        for &id in ids {
            total += match self.lens.get(id as usize) {
                Some(&n) if n != SLOW => n as usize,
                _ => self.token_bytes(id)?.len(),
            };
        }
        // 16 spare bytes let every short token be copied as a whole slot.
        let mut out = vec![0u8; total + 16];
        let mut pos = 0usize;
        for &id in ids {
            let i = id as usize;
            match (self.lens.get(i), self.slots.get(i)) {
                (Some(&n), Some(slot)) if n != SLOW => {
                    if let Some(dst) = out.get_mut(pos..pos + 16) {
                        dst.copy_from_slice(slot);
                    }
                    pos += n as usize;
                }
                _ => {
                    let b = self.token_bytes(id)?;
                    if let Some(dst) = out.get_mut(pos..pos + b.len()) {
                        dst.copy_from_slice(b);
                    }
                    pos += b.len();
                }
            }
        }
        out.truncate(total);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// All bytes, "ab" (256), "abc" (257), " a" (258), and a special token at 300.
    fn toy() -> Encoding {
        let mut tokens: Vec<(Vec<u8>, u32)> = (0..=255u8).map(|b| (vec![b], b as u32)).collect();
        tokens.push((b"ab".to_vec(), 256));
        tokens.push((b"abc".to_vec(), 257));
        tokens.push((b" a".to_vec(), 258));
        let specials = vec![("<|end|>".to_string(), 300)];
        Encoding::new(tokens, Rules::Ranks, specials, "gpt2", "toy").unwrap()
    }

    #[test]
    fn packing_a_piece_in_place_equals_packing_a_copy() {
        let text: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) | 1).collect();
        for start in 0..=text.len() {
            for len in 0..=18 {
                let Some(piece) = text.get(start..start + len) else {
                    continue;
                };
                assert_eq!(pack_in(&text, piece), pack(piece), "{start} {len}");
                // A piece that is not inside the text goes through the copy.
                let copy = piece.to_vec();
                assert_eq!(pack_in(&text, &copy), pack(piece), "copy {start} {len}");
                // Nor inside a text that ends before it.
                assert_eq!(pack_in(&text[..start], piece), pack(piece));
            }
        }
    }

    #[test]
    fn warm_caches_give_the_ids_of_no_cache() {
        let e = toy();
        // The reference merges every piece: a cache of limit 0 never holds one.
        let uncached = |t: &str, allowed: Option<&Allowed>| {
            let mut none = PieceCache::default();
            match allowed {
                None => {
                    let mut out = Vec::new();
                    e.encode_ordinary_into(t, &mut out, &mut none, 0).unwrap();
                    out
                }
                Some(a) => e.encode_with(t, a, &mut none, 0).unwrap(),
            }
        };
        let mut cache = MergeCache::default();
        let texts = [
            "abc ab ".repeat(700),
            "ab<|end|>c abcab ".repeat(300),
            " a ab abc".to_string(),
        ];
        // Twice: the second round finds the pool's and `cache`'s entries from the first.
        for _ in 0..2 {
            for t in &texts {
                let want = uncached(t, None);
                assert_eq!(e.encode_ordinary_cached(t, &mut cache).unwrap(), want);
                assert_eq!(e.encode_ordinary(t).unwrap(), want);
                let want = uncached(t, Some(&Allowed::All));
                assert_eq!(e.encode_cached(t, &Allowed::All, &mut cache).unwrap(), want);
                assert_eq!(e.encode(t, &Allowed::All).unwrap(), want);
            }
        }
        assert!(!cache.0.is_empty());
    }

    #[test]
    fn the_cache_pool_is_bounded_and_reused() {
        let e = toy();
        e.encode_ordinary(&"abc ab ".repeat(10)).unwrap();
        let warm = e.lease_cache();
        assert!(!warm.0.is_empty(), "a call gives its cache back, filled");
        let leased: Vec<MergeCache> = (0..2 * POOLED_CACHES).map(|_| e.lease_cache()).collect();
        for c in leased.into_iter().chain([warm]) {
            e.return_cache(c);
        }
        assert_eq!(e.caches.lock().map(|p| p.len()).unwrap_or(0), POOLED_CACHES);
    }

    #[test]
    fn encodes_with_ranks_and_specials() {
        let e = toy();
        assert_eq!(e.n_vocab(), 301);
        // " ab": "ab" (256) outranks " a" (258).
        assert_eq!(e.encode_ordinary("abc ab").unwrap(), vec![257, 32, 256]);
        assert_eq!(e.encode_ordinary(" ac").unwrap(), vec![258, 99]);
        let text = "ab<|end|>c";
        assert_eq!(e.encode(text, &Allowed::All).unwrap(), vec![256, 300, 99]);
        let none = Allowed::Some(FxHashSet::default());
        assert_eq!(
            e.encode(text, &none).unwrap(),
            e.encode_ordinary(text).unwrap()
        );
        assert_eq!(
            e.find_disallowed(text, &Allowed::All).as_deref(),
            Some("<|end|>")
        );
        assert_eq!(e.find_disallowed("plain", &Allowed::All), None);
        assert_eq!(e.decode_bytes(&[257, 300]).unwrap(), b"abc<|end|>");
        assert!(matches!(e.decode_bytes(&[299]), Err(Error::Key(_))));
        assert!(matches!(e.decode_bytes(&[u32::MAX]), Err(Error::Key(_))));
        assert_eq!(e.encode_single_token(b"<|end|>").unwrap(), 300);
        assert!(matches!(e.encode_single_token(b"zz"), Err(Error::Key(_))));
    }

    #[test]
    fn decode_handles_long_tokens_and_round_trips() {
        let mut tokens: Vec<(Vec<u8>, u32)> = (0..=255u8).map(|b| (vec![b], b as u32)).collect();
        let long = "x".repeat(40).into_bytes();
        tokens.push((long.clone(), 256));
        let e = Encoding::new(tokens, Rules::Ranks, vec![], "gpt2", "t").unwrap();
        let ids = [120, 256, 10, 256];
        let want = [&b"x"[..], &long, b"\n", &long].concat();
        assert_eq!(e.decode_bytes(&ids).unwrap(), want);
        assert_eq!(e.decode_bytes(&[]).unwrap(), b"");
    }

    #[test]
    fn bad_vocabularies_are_errors_not_panics() {
        let bytes: Vec<(Vec<u8>, u32)> = (0..=255u8).map(|b| (vec![b], b as u32)).collect();
        let mut dup_id = bytes.clone();
        dup_id.push((b"ab".to_vec(), 5));
        let mut dup_tok = bytes.clone();
        dup_tok.push((b"a".to_vec(), 999));
        let missing: Vec<_> = bytes[1..].to_vec();
        for (tokens, specials) in [
            (dup_id, vec![]),
            (dup_tok, vec![]),
            (missing, vec![]),
            (bytes.clone(), vec![("x".to_string(), 3)]),
            (
                bytes.clone(),
                vec![("x".to_string(), 300), ("x".to_string(), 301)],
            ),
        ] {
            let r = Encoding::new(tokens, Rules::Ranks, specials, "gpt2", "t");
            assert!(matches!(r, Err(Error::Format(_))), "{r:?}");
        }
        let r = Encoding::new(bytes, Rules::Ranks, vec![], "(", "t");
        assert!(matches!(r, Err(Error::Value(_))));
    }

    #[test]
    fn hf_merges_only_merge_listed_pairs() {
        // "abc" is in the vocabulary but only (a, b) is a merge: HF never produces "abc", so
        // the whole-piece shortcut must not either.
        let mut tokens: Vec<(Vec<u8>, u32)> = (0..=255u8).map(|b| (vec![b], b as u32)).collect();
        tokens.push((b"ab".to_vec(), 256));
        tokens.push((b"abc".to_vec(), 257));
        let e = Encoding::new(
            tokens,
            Rules::Merges(vec![(97, 98, 256)]),
            vec![],
            "gpt2",
            "t",
        )
        .unwrap();
        assert_eq!(e.encode_ordinary("abc").unwrap(), vec![256, 99]);
    }
}
