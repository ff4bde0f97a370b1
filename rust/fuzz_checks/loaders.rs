//! The vocabulary loaders: any file content gives an encoding that keeps every promise, or a
//! `Format` error naming the file. Never a panic, never another error kind.

use std::collections::HashMap;
use std::io::Write;

use super::reference::{check_encoding, RefRules};
use super::{scratch_file, split_two, Input};
use crate::error::Error;
use crate::tokenizer::{byte_level, load, Encoding};

/// Text every loaded encoding must encode exactly like the reference.
const SAMPLE: &str = "Hello world, it's 2024!\r\n  héllo 世界 😀 <|endoftext|> don't\n\n\tx  ";

/// The first `max` bytes of `s`, cut back to a character boundary.
fn head(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A loader's error must be a `Format` error that names `file`.
fn assert_names_file(err: &Error, file: &str) {
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Format(_)) && msg.contains(file),
        "loader error should be Format naming {file}: {err:?}"
    );
}

/// Each vocabulary entry's id holds exactly the entry's bytes (ordinary or special).
fn check_vocab_ids(enc: &Encoding, vocab: &serde_json::Map<String, serde_json::Value>) {
    for (k, v) in vocab {
        let id = v.as_u64().and_then(|i| u32::try_from(i).ok());
        let id = id.unwrap_or_else(|| panic!("loaded a vocabulary with id {v} for {k:?}"));
        if let Some(b) = byte_level::decode_token(k) {
            assert_eq!(enc.token_bytes(id).ok(), Some(b.as_slice()), "{k:?}");
        }
    }
}

/// Merge rules keyed by token bytes, first occurrence first.
fn rules_of(pairs: impl Iterator<Item = (String, String)>) -> RefRules {
    let mut rules = HashMap::new();
    for (i, (l, r)) in pairs.enumerate() {
        let key = (
            byte_level::decode_token(&l).expect("loaded merge symbol is byte-level"),
            byte_level::decode_token(&r).expect("loaded merge symbol is byte-level"),
        );
        rules.entry(key).or_insert(i);
    }
    RefRules::Merges(rules)
}

/// `vocab.json` + `merges.txt` (= `encoder.json` + `vocab.bpe`), split at the first NUL.
pub fn check_vocab_merges(data: &[u8]) {
    let (vocab_raw, merges_raw) = split_two(data);
    let vocab_path = scratch_file("vocab.json", vocab_raw);
    let merges_path = scratch_file("merges.txt", merges_raw);
    let enc = match load::from_vocab_merges(&vocab_path, &merges_path, "gpt2") {
        Ok(enc) => enc,
        Err(e) => {
            let msg = e.to_string();
            assert!(
                matches!(e, Error::Format(_))
                    && (msg.contains("vocab.json") || msg.contains("merges.txt")),
                "loader error should be Format naming a file: {e:?}"
            );
            return;
        }
    };
    let vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(vocab_raw).expect("loaded vocab.json is a JSON object");
    check_vocab_ids(&enc, &vocab);
    let text = std::str::from_utf8(merges_raw).expect("loaded merges.txt is UTF-8");
    let pairs = text.lines().enumerate().filter_map(|(i, line)| {
        if (i == 0 && line.starts_with("#version")) || line.trim().is_empty() {
            return None;
        }
        let (l, r) = line.split_once(' ').expect("loaded merge line is a pair");
        Some((l.to_string(), r.to_string()))
    });
    let rules = rules_of(pairs);
    check_encoding(&enc, &rules, &[SAMPLE, head(text, 300)]);
}

/// A Hugging Face `tokenizer.json`.
pub fn check_tokenizer_json(data: &[u8]) {
    let path = scratch_file("tokenizer.json", data);
    let enc = match load::from_tokenizer_json(&path) {
        Ok(enc) => enc,
        Err(e) => return assert_names_file(&e, "tokenizer.json"),
    };
    let root: serde_json::Value = serde_json::from_slice(data).expect("loaded file is JSON");
    let model = &root["model"];
    let vocab = model["vocab"].as_object().expect("loaded model.vocab");
    let added: Vec<(&str, u64)> = root["added_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t["content"].as_str()?, t["id"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    for (content, id) in &added {
        assert_eq!(
            enc.specials().get(*content).map(|&i| u64::from(i)),
            Some(*id)
        );
    }
    let added_ids: Vec<u64> = added.iter().map(|a| a.1).collect();
    let listed: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .filter(|(_, v)| !v.as_u64().is_some_and(|i| added_ids.contains(&i)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    check_vocab_ids(&enc, &listed);
    let pairs = model["merges"]
        .as_array()
        .expect("loaded model.merges")
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => {
                let (l, r) = s.split_once(' ').expect("loaded merge is a pair");
                (l.to_string(), r.to_string())
            }
            other => (
                other[0].as_str().unwrap_or_default().to_string(),
                other[1].as_str().unwrap_or_default().to_string(),
            ),
        });
    let rules = rules_of(pairs);
    let own = String::from_utf8_lossy(data);
    check_encoding(&enc, &rules, &[SAMPLE, head(&own, 300)]);
}

/// A tiktoken rank file. The first byte picks gzip compression (bit 0), the split pattern
/// (bits 1-2) and whether `<|endoftext|>` follows the ranks as a special token (bit 3).
pub fn check_tiktoken(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let raw = input.rest();
    let pattern = ["gpt2", "cl100k_base", "o200k_base", "r50k_base"][usize::from(mode >> 1) & 3];
    let file = if mode & 1 == 1 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(raw).expect("gzip to memory");
        gz.finish().expect("gzip to memory")
    } else {
        raw.to_vec()
    };
    let parsed = load::parse_ranks(raw, "ranks");
    let mut specials = Vec::new();
    if let (true, Ok(tokens)) = (mode & 8 != 0, &parsed) {
        let next = tokens
            .iter()
            .map(|t| t.1)
            .max()
            .map_or(0, |m| m.saturating_add(1));
        specials.push(("<|endoftext|>".to_string(), next));
    }
    let path = scratch_file("ranks.tiktoken", &file);
    let enc = match load::from_tiktoken(&path, pattern, specials) {
        Ok(enc) => enc,
        Err(e) => return assert_names_file(&e, "ranks.tiktoken"),
    };
    let mut want = parsed.expect("a loaded file parses");
    let mut got: Vec<(Vec<u8>, u32)> = enc
        .mergeable_ranks()
        .iter()
        .map(|(b, &r)| (b.clone(), r))
        .collect();
    want.sort_unstable_by_key(|t| t.1);
    got.sort_unstable_by_key(|t| t.1);
    assert_eq!(got, want, "mergeable ranks differ from the file");
    let own = String::from_utf8_lossy(raw);
    check_encoding(&enc, &RefRules::Ranks, &[SAMPLE, head(&own, 300)]);
}
