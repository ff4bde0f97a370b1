//! The BPE merge: a piece's bytes to token ids, merging adjacent pairs in rank order.
//!
//! Merge rules are a map from a pair of adjacent token ids to (priority, merged id). Built from
//! `merges.txt` lines (Hugging Face semantics: only listed pairs merge, in line order) or from
//! tiktoken ranks (every split of a token into two tokens is a rule, prioritised by the token's
//! rank: exactly tiktoken's "merge the pair whose concatenation has the lowest rank").
//!
//! Performance notes:
//! - Most pieces of real text are one token: a single hash lookup of the whole piece answers
//!   them (only when the vocabulary guarantees that BPE would give that token anyway).
//! - Pieces up to 256 bytes merge in fixed slots, rescanning for the minimum with a vector
//!   min; rule lookups go through a bit filter and a dense table for ids below 256 before
//!   the hash map.
//! - Long pieces (a megabyte of one character) use a priority queue of candidate pairs over a
//!   linked list of symbols: O(n log n), never quadratic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// Pieces up to this many bytes merge in fixed slots (`merge_slots`), rescanning for the
/// lowest pair: a vector min beats the queue's bookkeeping up to a few hundred bytes
/// (Japanese, with 45 % of its bytes in pieces of 65-256 bytes, 13.7 -> 18.3 MB/s with
/// o200k_base when this went from 64 to 256).
const SHORT: usize = 256;

/// Pieces up to this many bytes use smaller slots: less to initialise per piece.
const SMALL: usize = 64;

/// Merge rules and the byte → token table.
#[derive(Clone, Debug)]
pub struct Merger {
    /// The token of each single byte.
    byte_ids: [u32; 256],
    /// (left id, right id) → (priority, merged id).
    pairs: FxHashMap<u64, (u32, u32)>,
    /// One bit per hash of a pair, set for every rule. Most pairs a merge asks about have no
    /// rule (about 70 % in Chinese), and this answers them from a table that fits in L2
    /// instead of probing `pairs` (8.5 MB for o200k_base's 446k rules: a cache miss a probe).
    filter: Vec<u64>,
    /// `64 - log2(bits in filter)`: the top bits of a hash index the filter.
    filter_shift: u32,
    /// The rules of every pair of ids below 256, `priority << 32 | merged` (`u64::MAX`: none),
    /// indexed by `left * 256 + right`: the single bytes are ids 0-255 in GPT-2's and
    /// tiktoken's vocabularies, and merging a piece starts with its bytes (~40 % of the
    /// lookups in Chinese).
    low: Vec<u64>,
}

/// The priority queue of [`Merger::merge_long`]: (priority, position) pairs, smallest first.
///
/// A bucket of positions per priority, and a heap of the priorities alone. Why not one heap
/// of pairs: a megabyte of one character makes millions of pairs of a few priorities, and a
/// heap of millions costs a cache miss per level per push and pop (110 ms of a 140 ms merge).
/// Here a bucket is sorted once when its turn comes and then read in order.
///
/// A merge at priority p mostly creates pairs of higher priorities (a merged token ranks
/// after its parts), which wait in their buckets. Pairs of priority <= p (tiktoken's rule
/// "every split of a token is a merge" allows them) go to a small heap, `urgent`, that is
/// merged with the current bucket by (priority, position).
#[derive(Default)]
struct Buckets {
    waiting: FxHashMap<u32, Vec<u32>>,
    priorities: BinaryHeap<Reverse<u32>>,
    current: Vec<u32>,
    current_prio: u32,
    at: usize,
    urgent: BinaryHeap<Reverse<u64>>,
    /// Emptied buckets, reused.
    spare: Vec<Vec<u32>>,
}

impl Buckets {
    fn push(&mut self, p: u32, pos: u32) {
        // `current` is empty only before the first bucket is taken.
        if p <= self.current_prio && !self.current.is_empty() {
            self.urgent
                .push(Reverse((u64::from(p) << 32) | u64::from(pos)));
            return;
        }
        let bucket = self.waiting.entry(p).or_insert_with(|| {
            self.priorities.push(Reverse(p));
            self.spare.pop().unwrap_or_default()
        });
        bucket.push(pos);
    }

    fn pop(&mut self) -> Option<(u32, u32)> {
        loop {
            let from_current = self
                .current
                .get(self.at)
                .map(|&pos| (u64::from(self.current_prio) << 32) | u64::from(pos));
            let entry = match (from_current, self.urgent.peek()) {
                (Some(a), Some(&Reverse(b))) if b < a => self.urgent.pop().map(|Reverse(e)| e),
                (Some(a), _) => {
                    self.at += 1;
                    Some(a)
                }
                (None, Some(_)) => self.urgent.pop().map(|Reverse(e)| e),
                (None, None) => {
                    // The next priority's bucket, sorted (pushes from several merges can
                    // interleave; a bucket filled in order is sorted in one pass).
                    let Reverse(p) = self.priorities.pop()?;
                    let mut bucket = self.waiting.remove(&p).unwrap_or_default();
                    bucket.sort_unstable();
                    let mut old = std::mem::replace(&mut self.current, bucket);
                    old.clear();
                    self.spare.push(old);
                    self.current_prio = p;
                    self.at = 0;
                    continue;
                }
            };
            return entry.map(|e| ((e >> 32) as u32, e as u32));
        }
    }
}

/// The filter's hash of a pair key (a multiply: its top bits mix every bit of both ids).
#[inline(always)]
fn filter_hash(k: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[inline(always)]
fn key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

impl Merger {
    /// Rules from the single-byte tokens and a list of (left, right, priority, merged) rules;
    /// the first rule for a pair wins.
    pub fn new(
        byte_ids: [u32; 256],
        rules: impl IntoIterator<Item = (u32, u32, u32, u32)>,
    ) -> Self {
        let mut pairs = FxHashMap::default();
        for (a, b, prio, id) in rules {
            pairs.entry(key(a, b)).or_insert((prio, id));
        }
        // About 8 bits a rule: ~12 % of absent pairs pass (1 - e^(-1/8)).
        let bits = (pairs.len() * 8)
            .next_power_of_two()
            .clamp(1 << 12, 1 << 23);
        let mut filter = vec![0u64; bits / 64];
        let filter_shift = 64 - bits.trailing_zeros();
        for &k in pairs.keys() {
            let h = filter_hash(k) >> filter_shift;
            filter[(h / 64) as usize] |= 1 << (h % 64);
        }
        let mut low = vec![u64::MAX; 1 << 16];
        for (&k, &(p, m)) in &pairs {
            let (a, b) = (k >> 32, k & 0xffff_ffff);
            if a < 256 && b < 256 {
                low[(a * 256 + b) as usize] = (u64::from(p) << 32) | u64::from(m);
            }
        }
        Merger {
            byte_ids,
            pairs,
            filter,
            filter_shift,
            low,
        }
    }

    /// The number of merge rules.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no merge rules.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    #[inline(always)]
    fn rule(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        if (a | b) < 256 {
            let r = self
                .low
                .get((a * 256 + b) as usize)
                .copied()
                .unwrap_or(u64::MAX);
            return (r != u64::MAX).then_some(((r >> 32) as u32, r as u32));
        }
        let k = key(a, b);
        let h = filter_hash(k) >> self.filter_shift;
        let word = self.filter.get((h / 64) as usize).copied().unwrap_or(0);
        if word & (1 << (h % 64)) == 0 {
            return None;
        }
        self.pairs.get(&k).copied()
    }

    /// Appends the tokens of `piece` to `out`, merging from single bytes.
    pub fn merge(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= SHORT {
            self.merge_short(piece, out);
        } else {
            self.merge_long(piece, out);
        }
    }

    fn merge_short(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= SMALL {
            merge_small_dispatch(self, piece, out);
        } else {
            merge_short_dispatch(self, piece, out);
        }
    }

    fn merge_long(&self, piece: &[u8], out: &mut Vec<u32>) {
        // Symbols are a linked list over byte positions; a removed symbol has id DEAD.
        const NONE: u32 = u32::MAX;
        const DEAD: u32 = u32::MAX;
        let n = piece.len();
        let Ok(n32) = u32::try_from(n) else {
            // Pieces over 4 GiB: the simple loop is exact, just slow.
            self.merge_array(piece, out);
            return;
        };
        let mut ids: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<u32> = (1..=n32).map(|i| if i == n32 { NONE } else { i }).collect();
        let mut prev: Vec<u32> = (0..n32).map(|i| i.wrapping_sub(1)).collect();
        // Queue entries are (priority, left position), smallest first: the position breaks
        // ties leftmost. An entry is stale when the pair now at that position has another
        // priority; an entry with the current priority is valid whatever pushed it, since the
        // pair it names is then the smallest one left.
        let pair = |ids: &[u32], next: &[u32], l: u32| -> Option<(u32, u32)> {
            let r = *next.get(l as usize)?;
            let (a, b) = (*ids.get(l as usize)?, *ids.get(r as usize)?);
            self.rule(a, b)
        };
        // The rule of the pair starting at each position, kept current, so that checking a
        // popped entry costs a load instead of a hash probe.
        let mut prio_at = vec![u32::MAX; n];
        let mut merged_at = vec![0u32; n];
        let mut queue = Buckets::default();
        for l in 0..n32 {
            if let Some((p, m)) = pair(&ids, &next, l) {
                prio_at[l as usize] = p;
                merged_at[l as usize] = m;
                queue.push(p, l);
            }
        }
        while let Some((p, l)) = queue.pop() {
            let li = l as usize;
            if prio_at.get(li) != Some(&p) {
                continue; // stale: the pair at l changed (or l was merged away)
            }
            let r = next[li];
            ids[li] = merged_at[li];
            ids[r as usize] = DEAD;
            prio_at[r as usize] = u32::MAX;
            let rn = next[r as usize];
            next[li] = rn;
            if rn != NONE {
                prev[rn as usize] = l;
            }
            for at in [Some(l), Some(prev[li]).filter(|&x| x != NONE)]
                .into_iter()
                .flatten()
            {
                let ai = at as usize;
                match pair(&ids, &next, at) {
                    Some((p2, m2)) => {
                        prio_at[ai] = p2;
                        merged_at[ai] = m2;
                        queue.push(p2, at);
                    }
                    None => prio_at[ai] = u32::MAX,
                }
            }
        }
        out.extend(ids.iter().copied().filter(|&id| id != DEAD));
    }

    /// The plain quadratic loop, for the (theoretical) pieces too long for u32 positions.
    fn merge_array(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut ids: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        loop {
            let best = (0..ids.len().saturating_sub(1))
                .filter_map(|i| self.rule(ids[i], ids[i + 1]).map(|(p, t)| (p, i, t)))
                .min();
            match best {
                Some((_, i, t)) => {
                    ids[i] = t;
                    ids.remove(i + 1);
                }
                None => break,
            }
        }
        out.extend_from_slice(&ids);
    }
}

simd_dispatch! {
    fn merge_small_dispatch / merge_small_avx2 (m: &Merger, piece: &[u8], out: &mut Vec<u32>)
        => merge_slots::<SMALL>
}

simd_dispatch! {
    fn merge_short_dispatch / merge_short_avx2 (m: &Merger, piece: &[u8], out: &mut Vec<u32>)
        => merge_slots::<SHORT>
}

/// [`Merger::merge`] for a piece of at most `N` bytes: rescans every pair for the
/// lowest, as the reference does, but over fixed slots so that the scan is a vector min.
///
/// Symbols stay at the position of their first byte, linked by `next`/`prev`; a merge kills
/// the right symbol instead of shifting the arrays (three memmoves a merge before). `keys[i]`
/// is `priority << 32 | i` for the pair starting at `i`, `u64::MAX` for none, so the smallest
/// key is the lowest priority, leftmost on ties, and a min over whole registers finds it
/// (+7 % on Chinese with o200k_base, where 68 % of the bytes are in pieces of 16-64 bytes).
#[inline(always)]
fn merge_slots<const N: usize>(m: &Merger, piece: &[u8], out: &mut Vec<u32>) {
    const END: u16 = u16::MAX;
    const { assert!(N < END as usize) };
    let n = piece.len().min(N);
    let mut ids = [0u32; N];
    let mut merged = [0u32; N];
    let mut keys = [u64::MAX; N];
    let mut next = [END; N];
    let mut prev = [END; N];
    for (i, &b) in piece[..n].iter().enumerate() {
        ids[i] = m.byte_ids[b as usize];
        // Positions are below N, so they fit in a u16 and never equal END (asserted above).
        next[i] = if i + 1 < n { (i + 1) as u16 } else { END };
        prev[i] = if i > 0 { (i - 1) as u16 } else { END };
    }
    let key_at = |p: u32, i: usize| (u64::from(p) << 32) | i as u64;
    for i in 0..n.saturating_sub(1) {
        if let Some((p, t)) = m.rule(ids[i], ids[i + 1]) {
            keys[i] = key_at(p, i);
            merged[i] = t;
        }
    }
    // Only the first `width` slots can hold a pair; whole groups of 8 keep the min vectorised.
    let width = n.saturating_sub(1).div_ceil(8) * 8;
    loop {
        let best = keys[..width].iter().fold(u64::MAX, |a, &k| a.min(k));
        if best == u64::MAX {
            break;
        }
        let i = (best & 0xffff_ffff) as usize % N;
        let j = next[i] as usize % N;
        ids[i] = merged[i];
        keys[j] = u64::MAX;
        let k = next[j];
        next[i] = k;
        keys[i] = u64::MAX;
        if k != END {
            let k = k as usize % N;
            prev[k] = i as u16;
            if let Some((p, t)) = m.rule(ids[i], ids[k]) {
                keys[i] = key_at(p, i);
                merged[i] = t;
            }
        }
        if prev[i] != END {
            let h = prev[i] as usize % N;
            keys[h] = u64::MAX;
            if let Some((p, t)) = m.rule(ids[h], ids[i]) {
                keys[h] = key_at(p, h);
                merged[h] = t;
            }
        }
    }
    let mut i = if n > 0 { 0 } else { END };
    while i != END {
        out.push(ids[i as usize % N]);
        i = next[i as usize % N];
    }
}

#[cfg(test)]
#[path = "bpe_tests.rs"]
mod tests;
