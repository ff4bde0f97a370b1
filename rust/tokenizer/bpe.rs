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
//! - Short pieces merge in a small array, rescanning for the minimum (fast for n ≲ 64).
//! - Long pieces (a megabyte of one character) use a priority queue of candidate pairs over a
//!   linked list of symbols: O(n log n), never quadratic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// Pieces up to this many bytes merge in the simple array loop.
const SHORT: usize = 64;

/// Merge rules and the byte → token table.
#[derive(Clone, Debug)]
pub struct Merger {
    /// The token of each single byte.
    byte_ids: [u32; 256],
    /// (left id, right id) → (priority, merged id).
    pairs: FxHashMap<u64, (u32, u32)>,
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
        Merger { byte_ids, pairs }
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
        self.pairs.get(&key(a, b)).copied()
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
        let n = piece.len();
        let mut ids = [0u32; SHORT];
        // prios[i]: priority of merging ids[i] with ids[i + 1] (u32::MAX: no rule).
        let mut prios = [u32::MAX; SHORT];
        let mut merged = [0u32; SHORT];
        for (slot, &b) in ids.iter_mut().zip(piece) {
            *slot = self.byte_ids[b as usize];
        }
        let mut len = n;
        for i in 0..len.saturating_sub(1) {
            if let Some((p, m)) = self.rule(ids[i], ids[i + 1]) {
                prios[i] = p;
                merged[i] = m;
            }
        }
        while len > 1 {
            // Lowest priority, leftmost on ties.
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &p) in prios[..len - 1].iter().enumerate() {
                if p < best {
                    best = p;
                    at = i;
                }
            }
            if best == u32::MAX {
                break;
            }
            ids[at] = merged[at];
            ids.copy_within(at + 2..len, at + 1);
            prios.copy_within(at + 2..len, at + 1);
            merged.copy_within(at + 2..len, at + 1);
            len -= 1;
            prios[len - 1] = u32::MAX;
            for i in at.checked_sub(1).into_iter().chain([at]) {
                if i + 1 < len {
                    (prios[i], merged[i]) = self.rule(ids[i], ids[i + 1]).unwrap_or((u32::MAX, 0));
                }
            }
        }
        out.extend_from_slice(&ids[..len]);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious reference: rescan every pair, merge the lowest, repeat.
    fn naive(m: &Merger, piece: &[u8]) -> Vec<u32> {
        let mut ids: Vec<u32> = piece.iter().map(|&b| m.byte_ids[b as usize]).collect();
        loop {
            let best = (0..ids.len().saturating_sub(1))
                .filter_map(|i| m.rule(ids[i], ids[i + 1]).map(|(p, t)| (p, i, t)))
                .min();
            match best {
                Some((_, i, t)) => {
                    ids[i] = t;
                    ids.remove(i + 1);
                }
                None => return ids,
            }
        }
    }

    /// A piece of `len` bytes, 'a' where `(seed >> (i % period)) & mask == 0`, else 'b'.
    fn ab_piece(seed: u64, len: usize, period: usize, mask: u64) -> Vec<u8> {
        (0..len)
            .map(|i| {
                if (seed >> (i % period)) & mask == 0 {
                    b'a'
                } else {
                    b'b'
                }
            })
            .collect()
    }

    /// Byte `b` is token `b`.
    fn identity_bytes() -> [u32; 256] {
        std::array::from_fn(|i| i as u32)
    }

    fn toy() -> Merger {
        let byte_ids = identity_bytes();
        // a=97 b=98: aa→256 (0), ab→257 (1), 256+256→258 (2), 257 a→259 (3), b b→260 (4)
        Merger::new(
            byte_ids,
            [
                (97, 97, 0, 256),
                (97, 98, 1, 257),
                (256, 256, 2, 258),
                (257, 97, 3, 259),
                (98, 98, 4, 260),
                (258, 258, 5, 261),
            ],
        )
    }

    #[test]
    fn short_and_long_paths_match_the_naive_merge() {
        let m = toy();
        let mut seed = 12345u64;
        for len in (0..200).chain([500, 1000]) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let piece = ab_piece(seed, len, 61, 1);
            let want = naive(&m, &piece);
            let mut short = Vec::new();
            let mut long = Vec::new();
            if piece.len() <= SHORT {
                m.merge_short(&piece, &mut short);
                assert_eq!(short, want, "{piece:?}");
            }
            m.merge_long(&piece, &mut long);
            assert_eq!(long, want, "{piece:?}");
        }
        let mut out = Vec::new();
        m.merge(b"aaaaaaaa", &mut out);
        assert_eq!(out, vec![261]);
    }

    #[test]
    fn pairs_ranked_before_the_merge_that_made_them_are_merged_next() {
        // tiktoken makes every split of a token a rule with the token's rank: here
        // a + bb -> abb (2) becomes possible only after b + b -> bb (4), and ab + b -> abb
        // shares its rank. The queue must still take the lowest (rank, position) each time:
        // in "bbbb", bb + b (2) made at 0 goes before the b + b (4) at 2.
        let byte_ids = identity_bytes();
        let m = Merger::new(
            byte_ids,
            [
                (97, 97, 0, 256),
                (97, 98, 1, 257),
                (97, 260, 2, 262),
                (257, 98, 2, 262),
                (256, 256, 3, 258),
                (98, 98, 4, 260),
                (262, 262, 1, 263),
                (258, 262, 0, 264),
                (260, 98, 2, 265),
            ],
        );
        let mut seed = 99u64;
        for len in [65usize, 100, 257, 1000, 4000] {
            for _ in 0..20 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let piece = ab_piece(seed, len, 53, 3);
                let mut long = Vec::new();
                m.merge_long(&piece, &mut long);
                assert_eq!(long, naive(&m, &piece), "{piece:?}");
            }
        }
    }

    #[test]
    fn a_megabyte_of_one_byte_is_fast() {
        let m = toy();
        let t = std::time::Instant::now();
        let mut out = Vec::new();
        m.merge(&vec![b'a'; 1 << 20], &mut out);
        assert_eq!(out.len(), (1 << 20) / 8);
        assert!(t.elapsed().as_secs() < 5);
    }
}
