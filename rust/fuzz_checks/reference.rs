//! Slow, obviously correct references for the tokenizer, and the invariants every loaded or
//! built [`Encoding`] must satisfy.

use std::collections::HashMap;
use std::sync::OnceLock;

use rustc_hash::FxHashSet;

use crate::error::Error;
use crate::tokenizer::pretokenize::{reference_regex, Pretokenizer, Scheme};
use crate::tokenizer::{Allowed, Encoding};

/// How the reference merges a piece.
pub(crate) enum RefRules {
    /// tiktoken: a piece that is a token is that token; otherwise merge the adjacent pair
    /// whose concatenation has the lowest rank, leftmost first, until none is a token.
    Ranks,
    /// Hugging Face: merge the adjacent pair listed first in `merges.txt`, leftmost first.
    Merges(HashMap<(Vec<u8>, Vec<u8>), usize>),
}

/// The reference BPE of one piece: quadratic, allocation-heavy, obviously right.
pub(crate) fn ref_merge(enc: &Encoding, rules: &RefRules, piece: &[u8]) -> Vec<u32> {
    let vocab = enc.mergeable_ranks();
    if let (RefRules::Ranks, Some(&id)) = (rules, vocab.get(piece)) {
        return vec![id];
    }
    let mut parts: Vec<Vec<u8>> = piece.iter().map(|&b| vec![b]).collect();
    loop {
        let mut best: Option<(usize, usize)> = None; // (priority, position)
        for i in 0..parts.len().saturating_sub(1) {
            let prio = match rules {
                RefRules::Ranks => {
                    let joined = [parts[i].as_slice(), parts[i + 1].as_slice()].concat();
                    vocab.get(&joined).map(|&r| r as usize)
                }
                RefRules::Merges(m) => m.get(&(parts[i].clone(), parts[i + 1].clone())).copied(),
            };
            if let Some(p) = prio {
                if best.is_none_or(|(bp, _)| p < bp) {
                    best = Some((p, i));
                }
            }
        }
        let Some((_, i)) = best else { break };
        let right = parts.remove(i + 1);
        parts[i].extend_from_slice(&right);
    }
    parts
        .iter()
        .map(|p| match vocab.get(p) {
            Some(&id) => id,
            None => panic!("reference merge made {p:?}, which is not a token"),
        })
        .collect()
}

/// The pieces of `text` under the real split regex (fancy-regex), for the built-in patterns;
/// `None` for a custom pattern (it already runs through fancy-regex) or when the regex engine
/// gives up (backtrack limit).
pub(crate) fn ref_pieces<'t>(enc: &Encoding, text: &'t str) -> Option<Vec<&'t str>> {
    static REGEXES: OnceLock<Vec<(Scheme, fancy_regex::Regex)>> = OnceLock::new();
    let scheme = Scheme::from_name_or_pattern(enc.pattern())?;
    let all = REGEXES.get_or_init(|| {
        [Scheme::Gpt2, Scheme::Cl100k, Scheme::O200k]
            .into_iter()
            .map(|s| (s, reference_regex(s).expect("reference regex compiles")))
            .collect()
    });
    let re = &all.iter().find(|(s, _)| *s == scheme)?.1;
    re.find_iter(text)
        .map(|m| m.ok().map(|m| m.as_str()))
        .collect()
}

/// Checks everything an encoding promises, on its tables and on `texts`.
pub(crate) fn check_encoding(enc: &Encoding, rules: &RefRules, texts: &[&str]) {
    let vocab = enc.mergeable_ranks();
    let specials = enc.specials();
    let n = enc.n_vocab();
    assert!(n >= 256, "n_vocab {n} below the 256 single bytes");
    for b in 0..=255u8 {
        assert!(vocab.contains_key(&[b][..]), "no token for byte {b}");
    }
    for (bytes, &id) in vocab {
        assert_eq!(enc.token_bytes(id).ok(), Some(bytes.as_slice()), "id {id}");
        assert_eq!(enc.encode_single_token(bytes).ok(), Some(id), "{bytes:?}");
    }
    for (s, &id) in specials {
        assert_eq!(
            enc.token_bytes(id).ok(),
            Some(s.as_bytes()),
            "special {s:?}"
        );
        let single = enc.encode_single_token(s.as_bytes()).ok();
        let ordinary = vocab.get(s.as_bytes()).copied();
        assert_eq!(single, Some(ordinary.unwrap_or(id)), "special {s:?}");
    }
    if n <= 1 << 16 {
        let present = (0..n as u32)
            .filter(|&i| enc.token_bytes(i).is_ok())
            .count();
        assert_eq!(present, vocab.len() + specials.len(), "ids present");
    }
    for bad in [n as u32, u32::MAX] {
        assert!(matches!(enc.decode_bytes(&[0, bad]), Err(Error::Key(_))));
    }
    let custom = matches!(enc.pretokenizer(), Pretokenizer::Regex(_));
    for text in texts {
        check_text(enc, rules, text, custom);
    }
}

fn check_text(enc: &Encoding, rules: &RefRules, text: &str, custom: bool) {
    let pieces = match enc.pretokenizer().pieces(text) {
        Ok(p) => p,
        // A user's regex may hit fancy-regex's backtrack limit: a ValueError, fine.
        Err(Error::Value(_)) if custom => return,
        Err(e) => panic!("built-in pretokenizer failed on {text:?}: {e}"),
    };
    if !custom {
        assert_eq!(pieces.concat(), text, "pieces do not cover the text");
        if let Some(want) = ref_pieces(enc, text) {
            assert_eq!(pieces, want, "scanner != fancy-regex on {text:?}");
        }
    }
    let ids = match enc.encode_ordinary(text) {
        Ok(ids) => ids,
        Err(e) => panic!("encode_ordinary failed after pieces() succeeded: {e}"),
    };
    let mut want = Vec::new();
    for p in &pieces {
        want.extend(ref_merge(enc, rules, p.as_bytes()));
    }
    assert_eq!(ids, want, "encode != reference BPE on {text:?}");
    let decoded = enc.decode_bytes(&ids).expect("decode of encode output");
    assert_eq!(
        decoded,
        pieces.concat().as_bytes(),
        "decode(encode(s)) != s"
    );
    let none = Allowed::Some(FxHashSet::default());
    assert_eq!(enc.encode(text, &none).ok().as_ref(), Some(&ids));
    let contains_special = enc.specials().keys().any(|s| text.contains(s.as_str()));
    assert_eq!(
        enc.find_disallowed(text, &Allowed::All).is_some(),
        contains_special,
        "find_disallowed on {text:?}"
    );
    if let Ok(with_specials) = enc.encode(text, &Allowed::All) {
        let back = enc.decode_bytes(&with_specials).expect("decode");
        if !custom {
            assert_eq!(back, text.as_bytes(), "decode(encode(all specials)) != s");
        }
    } else if !custom {
        panic!("encode with specials failed on {text:?}");
    }
    check_cached(enc, rules, text, custom);
}

/// Texts of 4 KiB and more go through the per-call merge cache: a repeated text must give
/// what the reference gives piece by piece.
fn check_cached(enc: &Encoding, rules: &RefRules, text: &str, custom: bool) {
    if text.is_empty() || custom || text.len() >= 4096 {
        return;
    }
    let big = text.repeat(4096 / text.len() + 1);
    let Ok(pieces) = enc.pretokenizer().pieces(&big) else {
        panic!("pretokenizer failed on a repeated text")
    };
    // The reference is quadratic in a piece: long pieces are covered by check_text already.
    if pieces.iter().any(|p| p.len() > 128) {
        return;
    }
    let mut memo: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut want = Vec::new();
    for p in pieces {
        want.extend_from_slice(
            memo.entry(p)
                .or_insert_with(|| ref_merge(enc, rules, p.as_bytes())),
        );
    }
    assert_eq!(enc.encode_ordinary(&big).ok(), Some(want), "cached encode");
}
