//! Vocabulary file formats: Hugging Face `vocab.json` + `merges.txt` (= OpenAI's
//! `encoder.json` + `vocab.bpe`), Hugging Face `tokenizer.json` (byte-level BPE) and tiktoken
//! `.tiktoken` rank files (plain or gzip-compressed). Every error names the file and the line
//! or key at fault.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use rustc_hash::FxHashMap;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::byte_level;
use super::encoding::{check_ids_dense, Encoding, Rules};
use crate::error::{Error, Result};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn json_error(path: &Path, e: serde_json::Error) -> Error {
    Error::Format(format!(
        "{}: invalid JSON at line {} column {}: {e}",
        path.display(),
        e.line(),
        e.column()
    ))
}

/// A JSON object's entries in file order, duplicates kept (serde's maps would hide them).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of token -> id")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    out.push(kv);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Byte-level token strings → ids, checked: ids are u32, no token or id twice.
fn vocab_entries(
    entries: Vec<(String, serde_json::Value)>,
    file: &str,
) -> Result<Vec<(String, u32)>> {
    let mut seen: FxHashMap<u32, String> = FxHashMap::default();
    let mut names: FxHashMap<String, u32> = FxHashMap::default();
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let id = v
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Error::Format(format!("{file}: key {k:?}: id {v} is not a token id")))?;
        if let Some(other) = seen.insert(id, k.clone()) {
            return Err(Error::Format(format!(
                "{file}: key {k:?}: duplicate id {id} (also {other:?})"
            )));
        }
        if names.insert(k.clone(), id).is_some() {
            return Err(Error::Format(format!("{file}: key {k:?} appears twice")));
        }
        out.push((k, id));
    }
    Ok(out)
}

/// Parses `merges.txt`: one `left right` pair per line after an optional `#version` header.
fn merges_lines(text: &str, file: &str) -> Result<Vec<(String, String, usize)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if (i == 0 && line.starts_with("#version")) || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() != 2 || fields.iter().any(|f| f.is_empty()) {
            return Err(Error::Format(format!(
                "{file}: line {line_no}: expected two symbols separated by one space, got {line:?}"
            )));
        }
        out.push((fields[0].to_string(), fields[1].to_string(), line_no));
    }
    Ok(out)
}

/// Builds a byte-level encoding from Hugging Face vocab entries and merges.
///
/// Vocabulary entries that are neither a single byte nor produced by a merge (GPT-2's
/// `<|endoftext|>`) can never come out of BPE: they become special tokens, as tiktoken and
/// Hugging Face both treat them. `added` are extra special tokens (tokenizer.json).
fn from_hf_parts(
    vocab: Vec<(String, u32)>,
    merges: Vec<(String, String, usize)>,
    added: Vec<(String, u32)>,
    pattern: &str,
    vocab_file: &str,
    merges_file: &str,
) -> Result<Encoding> {
    let added_ids: FxHashMap<u32, &str> = added.iter().map(|(s, i)| (*i, s.as_str())).collect();
    let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
    let mut bytes_of: FxHashMap<u32, Vec<u8>> = FxHashMap::default();
    for (k, id) in &vocab {
        if added_ids.get(id) == Some(&k.as_str()) {
            continue; // listed again as an added token: handled as a special token
        }
        let b = byte_level::decode_token(k).ok_or_else(|| {
            Error::Format(format!(
                "{vocab_file}: key {k:?} is not a byte-level token (a character outside GPT-2's byte table)"
            ))
        })?;
        ids.insert(k.as_str(), *id);
        bytes_of.insert(*id, b);
    }
    // Before `reachable`, a table sized by the largest id.
    let count = vocab.len() + added.len();
    check_ids_dense(vocab.iter().cloned(), count, vocab_file)?;
    check_ids_dense(added.iter().cloned(), count, vocab_file)?;
    let mut reachable = vec![false; bytes_of.keys().max().map_or(0, |m| *m as usize + 1)];
    for (id, b) in &bytes_of {
        if b.len() == 1 {
            reachable[*id as usize] = true;
        }
    }
    let mut rules = Vec::with_capacity(merges.len());
    let mut seen_pairs = FxHashMap::default();
    for (l, r, line) in &merges {
        let find = |s: &str| {
            ids.get(s).copied().ok_or_else(|| {
                Error::Format(format!(
                    "{merges_file}: line {line}: symbol {s:?} is not in the vocabulary"
                ))
            })
        };
        let (li, ri) = (find(l)?, find(r)?);
        let m = find(&format!("{l}{r}"))?;
        if let Some(first) = seen_pairs.insert((li, ri), *line) {
            return Err(Error::Format(format!(
                "{merges_file}: line {line}: duplicate merge {l:?} {r:?} (first on line {first})"
            )));
        }
        if let Some(x) = reachable.get_mut(m as usize) {
            *x = true;
        }
        rules.push((li, ri, m));
    }
    let mut tokens = Vec::with_capacity(bytes_of.len());
    let mut specials = added;
    for (id, b) in bytes_of {
        if reachable.get(id as usize) == Some(&true) {
            tokens.push((b, id));
        } else {
            match String::from_utf8(b) {
                Ok(s) => specials.push((s, id)),
                Err(e) => tokens.push((e.into_bytes(), id)),
            }
        }
    }
    let source = format!("{vocab_file} + {merges_file}");
    Encoding::new(tokens, Rules::Merges(rules), specials, pattern, &source)
}

/// Loads Hugging Face `vocab.json` + `merges.txt`, or OpenAI's `encoder.json` + `vocab.bpe`.
pub fn from_vocab_merges(vocab: &Path, merges: &Path, pattern: &str) -> Result<Encoding> {
    let vocab_file = vocab.display().to_string();
    let merges_file = merges.display().to_string();
    let raw = read(vocab)?;
    let entries: Entries = serde_json::from_slice(&raw).map_err(|e| json_error(vocab, e))?;
    let vocab_entries = vocab_entries(entries.0, &vocab_file)?;
    let text = String::from_utf8(read(merges)?).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::Format(format!("{merges_file}: line {line}: not UTF-8: {e}"))
    })?;
    let merges = merges_lines(&text, &merges_file)?;
    from_hf_parts(
        vocab_entries,
        merges,
        Vec::new(),
        pattern,
        &vocab_file,
        &merges_file,
    )
}

/// Loads a Hugging Face `tokenizer.json` whose model is byte-level BPE.
pub fn from_tokenizer_json(path: &Path) -> Result<Encoding> {
    let file = path.display().to_string();
    let raw = read(path)?;
    let root: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| json_error(path, e))?;
    let bad = |what: String| Error::Format(format!("{file}: {what}"));
    let model = root
        .get("model")
        .ok_or_else(|| bad("no \"model\" key".into()))?;
    let kind = model.get("type").and_then(|t| t.as_str()).unwrap_or("BPE");
    if kind != "BPE" {
        return Err(bad(format!(
            "model.type {kind:?} is not supported (only byte-level BPE)"
        )));
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if model
            .get(key)
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty())
        {
            return Err(bad(format!(
                "model.{key} is not supported by byte-level BPE"
            )));
        }
    }
    if model.get("byte_fallback").and_then(|v| v.as_bool()) == Some(true) {
        return Err(bad(
            "model.byte_fallback is not supported (not byte-level BPE)".into(),
        ));
    }
    if root.get("normalizer").is_some_and(|n| !n.is_null()) {
        return Err(bad(
            "a normalizer is not supported (byte-level BPE has none)".into(),
        ));
    }
    let pattern = pre_tokenizer_pattern(root.get("pre_tokenizer"), &file)?;
    let vocab_value = model
        .get("vocab")
        .cloned()
        .ok_or_else(|| bad("no model.vocab".into()))?;
    let entries: Entries =
        serde_json::from_value(vocab_value).map_err(|e| bad(format!("model.vocab: {e}")))?;
    let vocab = vocab_entries(entries.0, &format!("{file}: model.vocab"))?;
    let mut merges = Vec::new();
    let list = model
        .get("merges")
        .and_then(|m| m.as_array())
        .ok_or_else(|| bad("no model.merges list".into()))?;
    for (i, m) in list.iter().enumerate() {
        // Older files write "left right", newer ones ["left", "right"].
        let pair = match m {
            serde_json::Value::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string())),
            serde_json::Value::Array(a) if a.len() == 2 => a[0]
                .as_str()
                .zip(a[1].as_str())
                .map(|(x, y)| (x.to_string(), y.to_string())),
            _ => None,
        };
        let (l, r) =
            pair.ok_or_else(|| bad(format!("model.merges[{i}]: expected a pair, got {m}")))?;
        merges.push((l, r, i));
    }
    let mut added = Vec::new();
    if let Some(list) = root.get("added_tokens").and_then(|a| a.as_array()) {
        for (i, t) in list.iter().enumerate() {
            let content = t.get("content").and_then(|c| c.as_str());
            let id = t
                .get("id")
                .and_then(|c| c.as_u64())
                .and_then(|v| u32::try_from(v).ok());
            match (content, id) {
                (Some(c), Some(id)) => added.push((c.to_string(), id)),
                _ => {
                    return Err(bad(format!(
                        "added_tokens[{i}]: needs \"content\" and \"id\""
                    )))
                }
            }
        }
    }
    let merges_file = format!("{file}: model.merges index");
    from_hf_parts(
        vocab,
        merges,
        added,
        &pattern,
        &format!("{file}: model.vocab"),
        &merges_file,
    )
    .map_err(|e| match e {
        // The split regex comes from the file: a bad one is bad file content, named as such.
        Error::Value(msg) if !msg.starts_with(&file) => {
            Error::Format(format!("{file}: pre_tokenizer: {msg}"))
        }
        Error::Value(msg) => Error::Format(msg),
        other => other,
    })
}

/// The split pattern a tokenizer.json pre_tokenizer implies (a ByteLevel step is required).
fn pre_tokenizer_pattern(pre: Option<&serde_json::Value>, file: &str) -> Result<String> {
    let bad = |what: String| Error::Format(format!("{file}: pre_tokenizer: {what}"));
    let steps: Vec<&serde_json::Value> = match pre {
        Some(p) if p.get("type").and_then(|t| t.as_str()) == Some("Sequence") => p
            .get("pretokenizers")
            .and_then(|l| l.as_array())
            .map(|l| l.iter().collect())
            .unwrap_or_default(),
        Some(p) if !p.is_null() => vec![p],
        _ => {
            return Err(bad(
                "missing; byte-level BPE needs a ByteLevel pre-tokenizer".into(),
            ))
        }
    };
    let mut pattern = None;
    let mut byte_level = false;
    for step in steps {
        match step.get("type").and_then(|t| t.as_str()) {
            Some("ByteLevel") => {
                byte_level = true;
                if step.get("add_prefix_space").and_then(|v| v.as_bool()) == Some(true) {
                    return Err(bad(
                        "ByteLevel add_prefix_space=true is not supported".into()
                    ));
                }
                if step.get("use_regex").and_then(|v| v.as_bool()) != Some(false)
                    && pattern.is_none()
                {
                    pattern = Some(super::pretokenize::GPT2_PATTERN.to_string());
                }
            }
            Some("Split") => {
                let re = step
                    .get("pattern")
                    .and_then(|p| p.get("Regex").or_else(|| p.get("String")))
                    .and_then(|r| r.as_str())
                    .ok_or_else(|| bad("Split without a pattern".into()))?;
                pattern = Some(re.to_string());
            }
            other => return Err(bad(format!("step {other:?} is not supported"))),
        }
    }
    if !byte_level {
        return Err(bad(
            "no ByteLevel step; only byte-level BPE is supported".into()
        ));
    }
    pattern.ok_or_else(|| bad("no split pattern".into()))
}

/// Loads a tiktoken rank file (`base64-token rank` per line; gzip-compressed or not).
pub fn from_tiktoken(path: &Path, pattern: &str, specials: Vec<(String, u32)>) -> Result<Encoding> {
    let file = path.display().to_string();
    let mut raw = read(path)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::Format(format!("{file}: bad gzip data: {e}")))?;
        raw = out;
    }
    let tokens = parse_ranks(&raw, &file)?;
    Encoding::new(tokens, Rules::Ranks, specials, pattern, &file)
}

/// Parses tiktoken rank lines.
pub fn parse_ranks(raw: &[u8], file: &str) -> Result<Vec<(Vec<u8>, u32)>> {
    let mut tokens = Vec::new();
    let mut lines = Vec::new();
    for (i, line) in raw.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let fields: Vec<&[u8]> = line
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        let [tok, rank] = fields.as_slice() else {
            return Err(Error::Format(format!(
                "{file}: line {line_no}: expected \"<base64 token> <rank>\""
            )));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(tok)
            .map_err(|e| Error::Format(format!("{file}: line {line_no}: bad base64: {e}")))?;
        let rank = std::str::from_utf8(rank)
            .ok()
            .and_then(|r| r.parse::<u32>().ok())
            .ok_or_else(|| Error::Format(format!("{file}: line {line_no}: bad rank")))?;
        tokens.push((bytes, rank));
        lines.push(line_no);
    }
    let mut seen_tokens: FxHashMap<&[u8], usize> = FxHashMap::default();
    for (i, (b, _)) in tokens.iter().enumerate() {
        if let Some(first) = seen_tokens.insert(b.as_slice(), i) {
            return Err(Error::Format(format!(
                "{file}: line {}: token {b:?} already given on line {}",
                lines.get(i).unwrap_or(&0),
                lines.get(first).unwrap_or(&0)
            )));
        }
    }
    let mut seen: FxHashMap<u32, usize> = FxHashMap::default();
    for (i, (_, r)) in tokens.iter().enumerate() {
        if let Some(first) = seen.insert(*r, i) {
            return Err(Error::Format(format!(
                "{file}: line {}: rank {r} already given on line {}",
                lines.get(i).unwrap_or(&0),
                lines.get(first).unwrap_or(&0)
            )));
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, content: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gh-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    fn byte_vocab() -> String {
        let t = byte_level::byte_to_char();
        let entries: Vec<String> = (0..256)
            .map(|b| format!("{}: {b}", serde_json::to_string(&t[b].to_string()).unwrap()))
            .collect();
        format!("{{{}}}", entries.join(", "))
    }

    #[test]
    fn errors_name_file_and_place() {
        let missing = from_vocab_merges(Path::new("/nonexistent/v.json"), Path::new("m"), "gpt2");
        assert!(matches!(missing, Err(Error::Io { .. })));
        let v = tmp("v.json", byte_vocab().as_bytes());
        let m = tmp("m.txt", b"#version: 0.2\na b\n");
        let e = from_vocab_merges(&v, &m, "gpt2").unwrap_err().to_string();
        assert!(e.contains("m.txt: line 2") && e.contains("\"ab\""), "{e}");
        let bad_json = tmp("bad.json", b"{\"a\": 1,");
        let e = from_vocab_merges(&bad_json, &m, "gpt2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.json: invalid JSON at line 1"), "{e}");
        let t = tmp("t.tiktoken", b"YQ== 0\n!!! 1\n");
        let e = from_tiktoken(&t, "gpt2", vec![]).unwrap_err().to_string();
        assert!(e.contains("t.tiktoken: line 2: bad base64"), "{e}");
        let j = tmp(
            "tokenizer.json",
            br#"{"model": {"type": "WordPiece", "vocab": {}}}"#,
        );
        let e = from_tokenizer_json(&j).unwrap_err().to_string();
        assert!(e.contains("model.type \"WordPiece\""), "{e}");
    }

    #[test]
    fn a_bad_split_regex_in_tokenizer_json_is_a_format_error_naming_the_file() {
        // Found by the `load_tokenizer_json` fuzz target: the regex error said nothing of the
        // file, and was a bad-argument error although the file is at fault.
        let t = byte_level::byte_to_char();
        let vocab: serde_json::Map<String, serde_json::Value> =
            (0..256).map(|b| (t[b].to_string(), b.into())).collect();
        let doc = serde_json::json!({
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "("}},
                {"type": "ByteLevel", "use_regex": false}]},
            "model": {"type": "BPE", "vocab": vocab, "merges": []},
        });
        let j = tmp("bad_regex_tokenizer.json", doc.to_string().as_bytes());
        let e = from_tokenizer_json(&j).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Format(_)), "{e:?}");
        assert!(
            msg.contains("bad_regex_tokenizer.json: pre_tokenizer: invalid split pattern"),
            "{msg}"
        );
    }

    #[test]
    fn loads_a_small_byte_level_vocabulary() {
        let mut vocab = byte_vocab();
        vocab.pop();
        vocab.push_str(", \"ab\": 256, \"<|end|>\": 257}");
        let v = tmp("v2.json", vocab.as_bytes());
        let m = tmp("m2.txt", b"#version: 0.2\na b\n");
        let enc = from_vocab_merges(&v, &m, "gpt2").unwrap();
        assert_eq!(enc.encode_ordinary("abab").unwrap(), vec![256, 256]);
        assert_eq!(enc.specials().get("<|end|>"), Some(&257));
    }
}
