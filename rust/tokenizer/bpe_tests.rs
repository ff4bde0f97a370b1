//! Tests of the merge: every path against the naive rescan-and-merge loop.

use super::*;

/// The obvious reference: rescan every pair, merge the lowest, repeat (rules straight from
/// the map, not through the filter and the dense table).
fn naive(m: &Merger, piece: &[u8]) -> Vec<u32> {
    let mut ids: Vec<u32> = piece.iter().map(|&b| m.byte_ids[b as usize]).collect();
    let rule = |a: u32, b: u32| m.pairs.get(&key(a, b)).copied();
    loop {
        let best = (0..ids.len().saturating_sub(1))
            .filter_map(|i| rule(ids[i], ids[i + 1]).map(|(p, t)| (p, i, t)))
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

/// The next value of a seed (a 64-bit LCG): the tests' reproducible randomness.
fn step(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed
}

/// Asserts that the queue, and the slots where the piece fits them, give the naive merge.
fn assert_paths_match_naive(m: &Merger, piece: &[u8]) {
    let want = naive(m, piece);
    let mut long = Vec::new();
    m.merge_long(piece, &mut long);
    assert_eq!(long, want, "{piece:?}");
    if piece.len() <= SHORT {
        let mut short = Vec::new();
        m.merge_short(piece, &mut short);
        assert_eq!(short, want, "{piece:?}");
    }
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
        assert_paths_match_naive(&m, &ab_piece(step(&mut seed), len, 61, 1));
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
    for len in [
        2usize, 3, 9, 17, 40, 63, 64, 65, 100, 200, 255, 256, 257, 1000, 4000,
    ] {
        for _ in 0..20 {
            assert_paths_match_naive(&m, &ab_piece(step(&mut seed), len, 53, 3));
        }
    }
}

#[test]
fn rule_lookup_agrees_with_a_plain_map() {
    // Rules between ids below 256 (the dense table) and above (the filter, then the map),
    // and many pairs without a rule, some of which the filter lets through.
    let mut seed = 7u64;
    let mut rand = |n: u64| (step(&mut seed) >> 33) % n;
    let mut rules = Vec::new();
    for i in 0..20_000u32 {
        let bound = if i % 4 == 0 { 256 } else { 300_000 };
        rules.push((rand(bound) as u32, rand(bound) as u32, i, 1_000_000 + i));
    }
    let m = Merger::new(identity_bytes(), rules.iter().copied());
    let mut want = std::collections::HashMap::new();
    for &(a, b, p, t) in &rules {
        want.entry((a, b)).or_insert((p, t));
    }
    assert_eq!(m.len(), want.len());
    for &(a, b, _, _) in &rules {
        assert_eq!(m.rule(a, b), want.get(&(a, b)).copied(), "rule ({a}, {b})");
    }
    let mut misses = 0;
    for _ in 0..200_000 {
        let bound = if rand(2) == 0 { 256 } else { 300_000 };
        let (a, b) = (rand(bound) as u32, rand(bound) as u32);
        assert_eq!(m.rule(a, b), want.get(&(a, b)).copied(), "pair ({a}, {b})");
        misses += usize::from(!want.contains_key(&(a, b)));
    }
    assert!(misses > 150_000);
    assert_eq!(m.rule(u32::MAX, u32::MAX), None);
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
