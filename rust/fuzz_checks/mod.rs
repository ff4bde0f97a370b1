//! Property checks shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the
//! replay test (`tests/fuzz_replay.rs`), so that the two can never drift apart.
//!
//! Not part of the API. Each `check_*` function takes arbitrary bytes, runs one surface of
//! the core on them and **panics** when a property fails: that panic is what the fuzzer
//! reports. Properties are real ones (fast path == slow reference, round trips, documented
//! error kinds), not just "does not crash". Nothing here is reachable from Python.

mod codec;
mod loaders;
mod reference;
mod sampler;
mod trainer;

pub use codec::{check_codec, check_incremental};
pub use loaders::{check_tiktoken, check_tokenizer_json, check_vocab_merges};
pub use sampler::check_sampler;
pub use trainer::check_trainer;

/// A check: panics when a property fails on the input.
pub type Check = fn(&[u8]);

/// Every target: its name (= the fuzz target and the regression corpus folder) and check.
pub const TARGETS: &[(&str, Check)] = &[
    ("load_vocab_merges", check_vocab_merges),
    ("load_tokenizer_json", check_tokenizer_json),
    ("load_tiktoken", check_tiktoken),
    ("codec", check_codec),
    ("incremental_decoder", check_incremental),
    ("sampler", check_sampler),
    ("trainer", check_trainer),
];

/// Reads values off the front of a fuzz input; past its end every read gives zeros.
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.bytes(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    pub(crate) fn f32(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }

    pub(crate) fn f64(&mut self) -> f64 {
        f64::from_bits(self.u64())
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }
}

/// `data` split at its first NUL byte (for targets that need two files).
pub(crate) fn split_two(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A scratch directory for this process and thread (replay tests run in parallel).
pub(crate) fn scratch_dir() -> std::path::PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let tag: String = thread.chars().filter(char::is_ascii_digit).collect();
    let dir = std::env::temp_dir().join(format!("gh-fuzz-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Writes `content` to `name` in the scratch directory.
pub(crate) fn scratch_file(name: &str, content: &[u8]) -> std::path::PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, content).expect("scratch file");
    path
}
