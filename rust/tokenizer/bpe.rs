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
//! - Long pieces (a megabyte of one character) use a heap of candidate pairs over a linked list
//!   of symbols: O(n log n), never quadratic.

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
        // Heap entries are (priority << 32 | left position), smallest first: the position
        // breaks ties leftmost. An entry is stale when the pair now at that position has another
        // priority; an entry with the current priority is valid whatever pushed it, since the
        // pair it names is then the smallest one left.
        let pair = |ids: &[u32], next: &[u32], l: u32| -> Option<(u32, u32, u32)> {
            let r = *next.get(l as usize)?;
            let (a, b) = (*ids.get(l as usize)?, *ids.get(r as usize)?);
            self.rule(a, b).map(|(p, m)| (p, m, r))
        };
        // Heapify the first pairs at once (linear) rather than pushing them one by one.
        let first: Vec<Reverse<u64>> = (0..n32)
            .filter_map(|l| {
                pair(&ids, &next, l).map(|(p, _, _)| Reverse(((p as u64) << 32) | l as u64))
            })
            .collect();
        let mut heap = BinaryHeap::from(first);
        while let Some(Reverse(entry)) = heap.pop() {
            let (p, l) = ((entry >> 32) as u32, entry as u32);
            if ids.get(l as usize) == Some(&DEAD) {
                continue;
            }
            let Some((cur, m, r)) = pair(&ids, &next, l) else {
                continue;
            };
            if cur != p {
                continue;
            }
            ids[l as usize] = m;
            ids[r as usize] = DEAD;
            let rn = next[r as usize];
            next[l as usize] = rn;
            if rn != NONE {
                prev[rn as usize] = l;
            }
            if let Some((p2, _, _)) = pair(&ids, &next, l) {
                heap.push(Reverse(((p2 as u64) << 32) | l as u64));
            }
            let lp = prev[l as usize];
            if lp != NONE {
                if let Some((p2, _, _)) = pair(&ids, &next, lp) {
                    heap.push(Reverse(((p2 as u64) << 32) | lp as u64));
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

    fn toy() -> Merger {
        let mut byte_ids = [0u32; 256];
        for (i, slot) in byte_ids.iter_mut().enumerate() {
            *slot = i as u32;
        }
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
            let piece: Vec<u8> = (0..len)
                .map(|i| {
                    if (seed >> (i % 61)) & 1 == 0 {
                        b'a'
                    } else {
                        b'b'
                    }
                })
                .collect();
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
    fn a_megabyte_of_one_byte_is_fast() {
        let m = toy();
        let t = std::time::Instant::now();
        let mut out = Vec::new();
        m.merge(&vec![b'a'; 1 << 20], &mut out);
        assert_eq!(out.len(), (1 << 20) / 8);
        assert!(t.elapsed().as_secs() < 5);
    }
}
