//! The BPE merge loop, with pair counts updated incrementally.
//!
//! State: every distinct word as a sequence of token ids, with its count; `pair_counts`, the
//! number of times each adjacent pair occurs (weighted by word counts); `positions`, for each
//! pair, the words it may occur in; a max-heap of (count, pair) candidates.
//!
//! Each step pops the best candidate. A heap entry can be stale (its pair's count went down
//! since it was pushed): then it is pushed back with the current count (lazy invalidation),
//! which is sound because a pair's count never goes *up* after the pair first appears, except
//! when a merge re-creates an already existing token, and then a fresh entry is pushed. The
//! winning pair is merged only in the words listed for it; every merge reports the neighbour
//! pairs it destroyed and created, and those deltas update `pair_counts` and `positions`. No
//! step ever rescans all words.
//!
//! Tie-breaking (the same as Hugging Face tokenizers' `BpeTrainer`): highest count first;
//! among equal counts, the smallest pair of ids `(left, right)` compared lexicographically.
//! Ids are ranks: the 256 single bytes in GPT-2's order (printable bytes first, see
//! [`gpt2_byte_order`]), then merged tokens in the order they were learned. HF numbers its
//! alphabet by code point of the byte-to-unicode character, which is that same order, so the
//! two trainers break ties identically.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::{Error, Result};

/// The 256 byte values in GPT-2's order: the bytes that `bytes_to_unicode` maps to
/// themselves (`!`..`~`, `¡`..`¬`, `®`..`ÿ`), then the rest in increasing order. GPT-2's
/// vocabulary gives single bytes exactly these ids 0..255.
pub fn gpt2_byte_order() -> [u8; 256] {
    let mut order = [0u8; 256];
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let firsts = (0..=255u8).filter(|&b| printable(b));
    let rest = (0..=255u8).filter(|&b| !printable(b));
    for (slot, b) in order.iter_mut().zip(firsts.chain(rest)) {
        *slot = b;
    }
    order
}

/// What training produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trained {
    /// Token bytes by rank: the 256 single bytes (GPT-2 order), then learned tokens.
    pub tokens: Vec<Vec<u8>>,
    /// The merges in the order learned, as pairs of ranks. Usually one per learned token;
    /// a merge whose result already exists (e.g. `a`+`bc` after `ab`+`c`) adds no token.
    pub merges: Vec<(u32, u32)>,
}

/// A pair of ids packed into one key: lexicographic pair order is numeric key order.
type PairKey = u64;

fn key(a: u32, b: u32) -> PairKey {
    (u64::from(a) << 32) | u64::from(b)
}

fn unkey(k: PairKey) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

/// A heap candidate: ordered by count, then by the *smaller* pair.
#[derive(Debug, PartialEq, Eq)]
struct Candidate {
    count: i64,
    pair: PairKey,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.count
            .cmp(&other.count)
            .then_with(|| other.pair.cmp(&self.pair))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Learns merges from `words` (distinct pretokens with counts) until there are `vocab_size`
/// tokens (256 bytes included), no pair is left, or the best pair occurs fewer than
/// `min_frequency` times.
pub fn train<'w>(
    words: impl IntoIterator<Item = (&'w [u8], u64)>,
    vocab_size: usize,
    min_frequency: u64,
) -> Result<Trained> {
    if vocab_size < 256 {
        return Err(Error::Value(format!(
            "vocab_size: {vocab_size} is less than the 256 single-byte tokens"
        )));
    }
    let order = gpt2_byte_order();
    let mut rank_of_byte = [0u32; 256];
    for (rank, &b) in order.iter().enumerate() {
        rank_of_byte[usize::from(b)] = rank as u32;
    }
    let mut tokens: Vec<Vec<u8>> = order.iter().map(|&b| vec![b]).collect();
    let mut token_ids: FxHashMap<Vec<u8>, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();

    let mut seqs: Vec<Vec<u32>> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    for (w, c) in words {
        if w.len() >= 2 && c > 0 {
            seqs.push(w.iter().map(|&b| rank_of_byte[usize::from(b)]).collect());
            counts.push(i64::try_from(c).unwrap_or(i64::MAX));
        }
    }

    let mut pair_counts: FxHashMap<PairKey, i64> = FxHashMap::default();
    let mut positions: FxHashMap<PairKey, Vec<u32>> = FxHashMap::default();
    for (w, seq) in seqs.iter().enumerate() {
        for win in seq.windows(2) {
            let k = key(win[0], win[1]);
            *pair_counts.entry(k).or_insert(0) += counts[w];
            let pos = positions.entry(k).or_default();
            if pos.last() != Some(&(w as u32)) {
                pos.push(w as u32);
            }
        }
    }
    let mut heap: BinaryHeap<Candidate> = pair_counts
        .iter()
        .map(|(&pair, &count)| Candidate { count, pair })
        .collect();

    let threshold = i64::try_from(min_frequency.max(1)).unwrap_or(i64::MAX);
    let mut merges = Vec::new();
    let mut created: FxHashSet<PairKey> = FxHashSet::default();
    while tokens.len() < vocab_size {
        let Some(top) = heap.pop() else { break };
        let current = pair_counts.get(&top.pair).copied().unwrap_or(0);
        if current != top.count {
            if current > 0 {
                heap.push(Candidate {
                    count: current,
                    pair: top.pair,
                });
            }
            continue;
        }
        if current < threshold {
            break;
        }
        let (a, b) = unkey(top.pair);
        let mut bytes = tokens[a as usize].clone();
        bytes.extend_from_slice(&tokens[b as usize]);
        let new_id = match token_ids.get(&bytes) {
            Some(&id) => id,
            None => {
                let id = tokens.len() as u32;
                token_ids.insert(bytes.clone(), id);
                tokens.push(bytes);
                id
            }
        };
        merges.push((a, b));

        let mut words_here = positions.remove(&top.pair).unwrap_or_default();
        words_here.sort_unstable();
        words_here.dedup();
        created.clear();
        for &w in &words_here {
            let weight = counts[w as usize];
            merge_word(&mut seqs[w as usize], a, b, new_id, |pair, delta| {
                *pair_counts.entry(pair).or_insert(0) += delta * weight;
                if delta > 0 {
                    positions.entry(pair).or_default().push(w);
                    created.insert(pair);
                }
            });
        }
        // Every occurrence of the pair is gone now (merged, or destroyed by an overlapping
        // merge as in "aaa"), whatever residue the deltas left in its count.
        pair_counts.remove(&top.pair);
        for &pair in &created {
            if let Some(&count) = pair_counts.get(&pair) {
                if count > 0 {
                    heap.push(Candidate { count, pair });
                }
            }
        }
    }
    Ok(Trained { tokens, merges })
}

/// Replaces each occurrence of `a b` in `seq` (left to right, not overlapping) by `new`,
/// reporting each neighbour pair destroyed (-1) or created (+1). The merged pair itself is
/// not reported: the caller drops its count.
fn merge_word(seq: &mut Vec<u32>, a: u32, b: u32, new: u32, mut report: impl FnMut(PairKey, i64)) {
    let n = seq.len();
    let mut read = 0;
    let mut write = 0;
    while read < n {
        if read + 1 < n && seq[read] == a && seq[read + 1] == b {
            if write > 0 {
                let prev = seq[write - 1];
                report(key(prev, a), -1);
                report(key(prev, new), 1);
            }
            if read + 2 < n {
                let next = seq[read + 2];
                report(key(b, next), -1);
                report(key(new, next), 1);
            }
            seq[write] = new;
            read += 2;
        } else {
            seq[write] = seq[read];
            read += 1;
        }
        write += 1;
    }
    seq.truncate(write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recounts everything at each step: the obviously correct version of [`train`].
    fn naive(words: &[(&[u8], u64)], vocab_size: usize) -> Trained {
        let order = gpt2_byte_order();
        let mut tokens: Vec<Vec<u8>> = order.iter().map(|&b| vec![b]).collect();
        let rank = |b: u8| order.iter().position(|&x| x == b).unwrap() as u32;
        let mut seqs: Vec<(Vec<u32>, u64)> = words
            .iter()
            .map(|(w, c)| (w.iter().map(|&b| rank(b)).collect(), *c))
            .collect();
        let mut merges = Vec::new();
        while tokens.len() < vocab_size {
            let mut pc: std::collections::BTreeMap<(u32, u32), u64> = Default::default();
            for (s, c) in &seqs {
                for w in s.windows(2) {
                    *pc.entry((w[0], w[1])).or_insert(0) += c;
                }
            }
            let Some((&(a, b), _)) = pc.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
            else {
                break;
            };
            let bytes = [tokens[a as usize].clone(), tokens[b as usize].clone()].concat();
            let id = match tokens.iter().position(|t| *t == bytes) {
                Some(i) => i as u32,
                None => {
                    tokens.push(bytes);
                    tokens.len() as u32 - 1
                }
            };
            merges.push((a, b));
            for (s, _) in &mut seqs {
                merge_word(s, a, b, id, |_, _| {});
            }
        }
        Trained { tokens, merges }
    }

    #[test]
    fn byte_order_is_gpt2() {
        let order = gpt2_byte_order();
        assert_eq!(order[0], b'!');
        assert_eq!(order[93], b'~');
        assert_eq!(order[188], 0);
        assert_eq!(order[255], 0xAD);
        let mut sorted = order.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..=255).collect::<Vec<u8>>());
    }

    #[test]
    fn matches_naive_recount() {
        let words: Vec<(&[u8], u64)> = vec![
            (b"aaaa", 3),
            (b"abab", 2),
            (b" the", 9),
            (b"then", 4),
            (b"aaabbb", 1),
            (b"hello", 5),
            (b" hello", 2),
            (b"abcabc", 3),
            (b"bcab", 2),
        ];
        for vocab in [256, 257, 260, 270, 300] {
            let fast = train(words.iter().copied(), vocab, 0).unwrap();
            assert_eq!(fast, naive(&words, vocab), "vocab {vocab}");
        }
    }

    /// Random words over a 3-letter alphabet: many ties and overlapping runs ("aaaa"), where
    /// incremental updates go wrong first.
    #[test]
    fn matches_naive_recount_on_random_words() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        };
        for _ in 0..300 {
            let owned: Vec<(Vec<u8>, u64)> = (0..1 + next(12))
                .map(|_| {
                    let len = 1 + next(9) as usize;
                    let word = (0..len).map(|_| b"abc"[next(3) as usize]).collect();
                    (word, 1 + next(5))
                })
                .collect();
            let words: Vec<(&[u8], u64)> = owned.iter().map(|(w, c)| (&w[..], *c)).collect();
            let fast = train(words.iter().copied(), 256 + 30, 0).unwrap();
            let slow = naive(&words, 256 + 30);
            assert_eq!(fast, slow, "words {owned:?}");
        }
    }

    #[test]
    fn overlapping_pairs() {
        let mut seq = vec![1, 1, 1, 1, 1];
        let mut deltas = Vec::new();
        merge_word(&mut seq, 1, 1, 9, |p, d| deltas.push((unkey(p), d)));
        assert_eq!(seq, [9, 9, 1]);
        assert_eq!(
            deltas,
            [
                ((1, 1), -1),
                ((9, 1), 1),
                ((9, 1), -1),
                ((9, 9), 1),
                ((1, 1), -1),
                ((9, 1), 1)
            ]
        );
    }

    #[test]
    fn min_frequency_stops_early() {
        let words: Vec<(&[u8], u64)> = vec![(b"ab", 5), (b"cd", 1)];
        let t = train(words.iter().copied(), 1000, 2).unwrap();
        assert_eq!(t.tokens.len(), 257);
        assert_eq!(t.tokens[256], b"ab");
    }

    #[test]
    fn too_small_vocab_is_an_error() {
        assert!(matches!(
            train(std::iter::empty(), 255, 0),
            Err(Error::Value(_))
        ));
    }
}
