//! The BPE trainer on small arbitrary corpora: word counts equal the real regex's, the
//! incremental merge loop equals a full recount at every step, chunking never changes the
//! pieces, and the result builds a tokenizer that round-trips the corpus.

use std::collections::{BTreeMap, HashMap};

use super::reference::ref_pieces;
use super::Input;
use crate::error::Error;
use crate::tokenizer::pretokenize::Pretokenizer as Splitter;
use crate::tokenizer::{Allowed, Encoding, Rules};
use crate::trainer::pretokenize::chunk_boundaries;
use crate::trainer::{gpt2_byte_order, BpeTrainer, Trained};

const PATTERNS: [&str; 4] = ["gpt2", "cl100k_base", "o200k_base", r"\p{L}+|\S|\s+"];
const SPECIAL: &str = "<|endoftext|>";

/// Merges each non-overlapping `a b` (left to right) into `new`.
fn merge_seq(seq: &mut Vec<u32>, a: u32, b: u32, new: u32) {
    let mut out = Vec::with_capacity(seq.len());
    let mut i = 0;
    while i < seq.len() {
        if i + 1 < seq.len() && seq[i] == a && seq[i + 1] == b {
            out.push(new);
            i += 2;
        } else {
            out.push(seq[i]);
            i += 1;
        }
    }
    *seq = out;
}

/// Training by recounting every pair at every step: the obviously correct version.
fn naive(words: &[(Vec<u8>, u64)], vocab_size: usize, min_frequency: u64) -> Trained {
    let order = gpt2_byte_order();
    let mut rank = [0u32; 256];
    for (r, &b) in order.iter().enumerate() {
        rank[usize::from(b)] = r as u32;
    }
    let mut tokens: Vec<Vec<u8>> = order.iter().map(|&b| vec![b]).collect();
    let mut seqs: Vec<(Vec<u32>, u64)> = words
        .iter()
        .map(|(w, c)| (w.iter().map(|&b| rank[usize::from(b)]).collect(), *c))
        .collect();
    let mut merges = Vec::new();
    while tokens.len() < vocab_size {
        let mut counts: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for (s, c) in &seqs {
            for w in s.windows(2) {
                *counts.entry((w[0], w[1])).or_insert(0) += c;
            }
        }
        // Highest count; among equal counts the smallest pair.
        let best = counts.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)));
        let Some((&(a, b), &count)) = best else { break };
        if count < min_frequency.max(1) {
            break;
        }
        let joined = [tokens[a as usize].as_slice(), &tokens[b as usize]].concat();
        let id = match tokens.iter().position(|t| *t == joined) {
            Some(i) => i as u32,
            None => {
                tokens.push(joined);
                tokens.len() as u32 - 1
            }
        };
        merges.push((a, b));
        for (s, _) in &mut seqs {
            merge_seq(s, a, b, id);
        }
    }
    Trained { tokens, merges }
}

/// Layout: mode (bits 0-1 pattern, bit 2 special token), vocab size, min frequency, chunk
/// size, then the texts separated by NUL bytes.
pub fn check_trainer(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let pattern = PATTERNS[usize::from(mode & 3)];
    let specials: Vec<String> = if mode & 4 != 0 {
        vec![SPECIAL.to_string()]
    } else {
        Vec::new()
    };
    let vocab_size = 250 + usize::from(input.u16()) % 300;
    let min_frequency = u64::from(input.u8() % 4);
    let chunk = 1 + usize::from(input.u8() % 64);
    let texts: Vec<String> = input
        .rest()
        .split(|&b| b == 0)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    let mut trainer = BpeTrainer::new(pattern, &specials).expect("built-in settings");
    let custom = mode & 3 == 3;
    match trainer.feed_texts(&texts) {
        Ok(()) => {}
        Err(Error::Value(_)) if custom => return, // fancy-regex's backtrack limit
        Err(e) => panic!("feed_texts failed: {e}"),
    }
    let split = Splitter::new(pattern).expect("pattern compiles");
    let enc_ref = Encoding::new(
        (0..=255u8).map(|b| (vec![b], u32::from(b))).collect(),
        Rules::Ranks,
        Vec::new(),
        pattern,
        "bytes",
    )
    .expect("byte vocabulary");
    let mut want: HashMap<String, u64> = HashMap::new();
    for text in &texts {
        let segments: Vec<&str> = if specials.is_empty() {
            vec![text.as_str()]
        } else {
            text.split(SPECIAL).collect()
        };
        for seg in segments {
            let pieces = if custom {
                split.pieces(seg).ok()
            } else {
                ref_pieces(&enc_ref, seg)
            };
            let Some(pieces) = pieces else { return };
            for p in pieces.into_iter().filter(|p| !p.is_empty()) {
                *want.entry(p.to_string()).or_insert(0) += 1;
            }
            if !custom {
                check_chunks(&split, seg, chunk);
            }
        }
    }
    let got: HashMap<String, u64> = trainer
        .word_counts()
        .iter()
        .map(|(w, c)| (w.to_string(), c))
        .collect();
    assert_eq!(got, want, "word counts differ from the reference split");
    let trained = match trainer.train(vocab_size, min_frequency) {
        Ok(t) => t,
        Err(Error::Value(_)) if vocab_size < 256 => return,
        Err(e) => panic!("train({vocab_size}) failed: {e}"),
    };
    assert!(vocab_size >= 256, "vocab_size {vocab_size} accepted");
    let mut words: Vec<(Vec<u8>, u64)> = got.into_iter().map(|(w, c)| (w.into(), c)).collect();
    words.sort();
    assert_eq!(
        trained,
        naive(&words, vocab_size, min_frequency),
        "!= recount"
    );
    check_trained(&trained, vocab_size, pattern, &texts, custom);
}

/// Cutting a text where the trainer may cut it does not change its pieces.
fn check_chunks(split: &Splitter, text: &str, chunk: usize) {
    let whole = split.pieces(text).expect("built-in split");
    let mut start = 0;
    let mut parts = Vec::new();
    for end in chunk_boundaries(text, chunk)
        .into_iter()
        .chain([text.len()])
    {
        assert!(end > start || text.is_empty(), "empty chunk at {end}");
        parts.extend(split.pieces(&text[start..end]).expect("built-in split"));
        start = end;
    }
    assert_eq!(parts, whole, "chunking changed the pieces of {text:?}");
}

/// What a trained table promises, and that it works as a tokenizer.
fn check_trained(t: &Trained, vocab_size: usize, pattern: &str, texts: &[String], custom: bool) {
    let order = gpt2_byte_order();
    assert!(t.tokens.len() <= vocab_size && t.tokens.len() >= 256);
    for (i, &b) in order.iter().enumerate() {
        assert_eq!(t.tokens[i], [b], "byte rank {i}");
    }
    assert!(t.merges.len() >= t.tokens.len() - 256);
    for &(a, b) in &t.merges {
        assert!((a as usize) < t.tokens.len() && (b as usize) < t.tokens.len());
    }
    let ranks: Vec<(Vec<u8>, u32)> = t.tokens.iter().cloned().zip(0..).collect();
    let n = ranks.len() as u32;
    let enc = Encoding::new(
        ranks,
        Rules::Ranks,
        vec![(SPECIAL.to_string(), n)],
        pattern,
        "trained",
    )
    .expect("a trained table builds an encoding");
    for text in texts {
        let Ok(ids) = enc.encode(text, &Allowed::All) else {
            assert!(custom, "encode failed on training text");
            continue;
        };
        if !custom {
            let back = enc.decode_bytes(&ids).expect("decode");
            assert_eq!(
                back,
                text.as_bytes(),
                "trained tokenizer does not round-trip"
            );
        }
    }
}
