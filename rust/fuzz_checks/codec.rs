//! Encode, decode and the incremental decoder, on small fixed vocabularies built here: every
//! byte, merges that build words, runs, UTF-8 fragments and a 17-byte token, a token BPE
//! cannot reach, a hole in the ids and two special tokens; under tiktoken ranks and under
//! Hugging Face merges, with each built-in split pattern and a custom regex.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::reference::{check_encoding, RefRules};
use super::Input;
use crate::error::Error;
use crate::tokenizer::stream::Utf8Stream;
use crate::tokenizer::{Encoding, Rules};

const PATTERNS: [&str; 4] = [
    "gpt2",
    "cl100k_base",
    "o200k_base",
    // A custom pattern covers the fancy-regex path (it matches every character).
    r"[a-z]+| ?[^a-z]",
];

/// The merges, as (left, right) byte strings, in priority order.
fn merges() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = [
        ("a", "a"),
        ("aa", "aa"),
        ("aaaa", "aaaa"),
        ("t", "h"),
        ("th", "e"),
        (" ", "the"),
        ("i", "n"),
        (" ", "a"),
        ("e", "r"),
        (" ", "t"),
        ("\n", "\n"),
        (" ", " "),
        ("  ", "  "),
        ("0", "1"),
        ("01", "2"),
        ("'", "s"),
        ("x", "x"),
        ("xx", "xx"),
        ("xxxx", "xxxx"),
        ("xxxxxxxx", "xxxxxxxx"),
        ("xxxxxxxxxxxxxxxx", "x"),
        ("<", "|"),
    ]
    .iter()
    .map(|(l, r)| (l.as_bytes().to_vec(), r.as_bytes().to_vec()))
    .collect();
    // UTF-8 fragments: 世 = e4 b8 96, é = c3 a9, 😀 = f0 9f 98 80.
    for (l, r) in [
        (&b"\xe4"[..], &b"\xb8"[..]),
        (b"\xe4\xb8", b"\x96"),
        (b"\xc3", b"\xa9"),
        (b"h", b"\xc3\xa9"),
        (b"\xf0", b"\x9f"),
        (b"\x98", b"\x80"),
        (b"\xf0\x9f", b"\x98\x80"),
    ] {
        out.push((l.to_vec(), r.to_vec()));
    }
    out
}

/// One fixed vocabulary: `(encoding, reference rules)`.
fn build(ranks: bool, pattern: &str) -> (Encoding, RefRules) {
    let mut tokens: Vec<(Vec<u8>, u32)> = (0..=255u8).map(|b| (vec![b], u32::from(b))).collect();
    let mut ids: HashMap<Vec<u8>, u32> = tokens.iter().cloned().collect();
    let mut rules = Vec::new();
    let mut ref_rules = HashMap::new();
    for (i, (l, r)) in merges().into_iter().enumerate() {
        let joined = [l.as_slice(), r.as_slice()].concat();
        let next = tokens.len() as u32;
        let id = *ids.entry(joined.clone()).or_insert(next);
        if id == next {
            tokens.push((joined, id));
        }
        rules.push((ids[&l], ids[&r], id));
        ref_rules.entry((l, r)).or_insert(i);
    }
    // In the vocabulary, but no merge builds it (Hugging Face never emits it whole).
    tokens.push((b"abc".to_vec(), tokens.len() as u32));
    // A hole of 3 ids, then the specials.
    let base = tokens.len() as u32 + 3;
    let specials = vec![
        ("<|endoftext|>".to_string(), base),
        ("<|fim|>".to_string(), base + 1),
    ];
    let (rules, reference) = if ranks {
        (Rules::Ranks, RefRules::Ranks)
    } else {
        (Rules::Merges(rules), RefRules::Merges(ref_rules))
    };
    let enc = Encoding::new(tokens, rules, specials, pattern, "fuzz vocabulary")
        .expect("the fixed vocabulary builds");
    (enc, reference)
}

/// The 8 fixed encodings (ranks or merges × 4 patterns), built once.
fn encodings() -> &'static [(Encoding, RefRules)] {
    static ALL: OnceLock<Vec<(Encoding, RefRules)>> = OnceLock::new();
    ALL.get_or_init(|| {
        [true, false]
            .into_iter()
            .flat_map(|ranks| PATTERNS.iter().map(move |p| build(ranks, p)))
            .collect()
    })
}

/// Encodes arbitrary bytes as text and decodes arbitrary ids. The first byte picks the
/// encoding; the rest is the text (lossily made UTF-8) and, read as u16s, the ids.
pub fn check_codec(data: &[u8]) {
    let mut input = Input::new(data);
    let (enc, rules) = &encodings()[usize::from(input.u8()) % 8];
    let rest = input.rest();
    let text = String::from_utf8_lossy(rest);
    check_encoding(enc, rules, &[&text]);
    let n = enc.n_vocab() as u32;
    let ids: Vec<u32> = rest
        .chunks(2)
        .map(|c| u32::from(c[0]) | u32::from(*c.get(1).unwrap_or(&0)) << 8)
        .map(|v| v % (n + 4))
        .collect();
    let want: Option<Vec<u8>> = ids
        .iter()
        .map(|&i| enc.token_bytes(i).ok())
        .collect::<Option<Vec<&[u8]>>>()
        .map(|parts| parts.concat());
    match (enc.decode_bytes(&ids), want) {
        (Ok(got), Some(want)) => assert_eq!(got, want, "decode_bytes of {ids:?}"),
        (Err(Error::Key(_)), None) => {}
        (got, want) => panic!("decode_bytes({ids:?}) = {got:?}, want {want:?}"),
    }
}

/// Streams arbitrary ids, split anywhere, through [`Utf8Stream`]. The first byte picks the
/// encoding; then records of (u16 id, flags): flag bit 0 ends a chunk after the id. A chunk
/// with an unknown id fails as a whole (a `KeyError` in Python) and feeds nothing.
pub fn check_incremental(data: &[u8]) {
    let mut input = Input::new(data);
    let (enc, _) = &encodings()[usize::from(input.u8()) % 8];
    let n = enc.n_vocab() as u32;
    let mut chunks: Vec<Vec<u32>> = vec![Vec::new()];
    while !input.is_empty() {
        let id = u32::from(input.u16()) % (n + 3);
        let flags = input.u8();
        chunks.last_mut().expect("non-empty").push(id);
        if flags & 1 == 1 {
            chunks.push(Vec::new());
        }
    }
    let mut stream = Utf8Stream::new();
    let mut fed = Vec::new();
    let mut emitted = String::new();
    for chunk in &chunks {
        let bytes = match enc.decode_bytes(chunk) {
            Ok(b) => b,
            Err(Error::Key(_)) => {
                assert!(chunk.iter().any(|&i| enc.token_bytes(i).is_err()));
                continue;
            }
            Err(e) => panic!("decode_bytes: unexpected error {e:?}"),
        };
        fed.extend_from_slice(&bytes);
        emitted.push_str(&stream.push(&bytes));
        // What is emitted is final: a prefix of the one-shot decode of everything fed...
        let so_far = String::from_utf8_lossy(&fed);
        assert!(so_far.starts_with(&emitted), "emitted text is not final");
        // ...and only an incomplete character is held back.
        let pending = stream.pending();
        assert!(pending.len() <= 3, "holds back {pending:?}");
        if let Err(e) = std::str::from_utf8(pending) {
            assert!(
                e.valid_up_to() == 0 && e.error_len().is_none(),
                "{pending:?}"
            );
        } else {
            assert!(pending.is_empty(), "holds back complete text {pending:?}");
        }
        assert_eq!(
            format!("{emitted}{}", String::from_utf8_lossy(pending)),
            so_far,
            "bytes dropped"
        );
    }
    emitted.push_str(&stream.flush());
    assert_eq!(emitted, String::from_utf8_lossy(&fed), "stream != one-shot");
    assert!(stream.pending().is_empty() && stream.flush().is_empty());
}
