//! The scanners against fancy-regex running the real patterns.

use super::*;

const SCHEMES: [Scheme; 3] = [Scheme::Gpt2, Scheme::Cl100k, Scheme::O200k];

fn reference(scheme: Scheme, text: &str) -> Vec<String> {
    // Compiling the patterns dominates otherwise: once per thread and scheme.
    thread_local! {
        static RES: Vec<fancy_regex::Regex> =
            SCHEMES.iter().map(|s| reference_regex(*s).unwrap()).collect();
    }
    let i = SCHEMES.iter().position(|s| *s == scheme).unwrap();
    RES.with(|res| {
        res[i]
            .find_iter(text)
            .map(|m| m.unwrap().as_str().to_string())
            .collect()
    })
}

fn check(text: &str) {
    for scheme in SCHEMES {
        let ours: Vec<String> = Pretokenizer::Scanner(scheme)
            .pieces(text)
            .unwrap()
            .into_iter()
            .map(str::to_string)
            .collect();
        assert_eq!(ours, reference(scheme, text), "{scheme:?} on {text:?}");
    }
}

#[test]
fn tricky_strings_match_the_reference() {
    let cases = [
        "",
        " ",
        "  ",
        "Hello world",
        "Hello  world",
        "Hello   world  ",
        "trailing whitespace \n\n  ",
        "a\r\nb\r\n\r\nc",
        "line\n\n\nnext",
        " \n \n x",
        "\t\tindented\n\t\tcode();",
        "I'm, you're, HE'LL, she'S, it'D, they'VE, we'RE, I'M, don'T, 'll 'x",
        "ſ 'ſ DON'ſ",
        "NBSP\u{a0}here\u{a0}\u{a0}and there\u{a0}",
        "ideographic\u{3000}space\u{3000}\u{3000}中文",
        "numbers 1234567 12 3.14159 ١٢٣٤",
        "emoji 😀😀 👍🏽 🇫🇷 ok",
        "e\u{301}te\u{301} cafe\u{301} \u{301}\u{301}x \u{301}1",
        "CamelCaseWordsLikeThis and ALLCAPS and mIxEd",
        "ǅungla ǈ Ǉ ʰʰx ʰA",
        "こんにちは世界、元気ですか？",
        "Привет, мир! Ελληνικά: αβγ",
        "https://example.com/path/to//file?x=1&y=2",
        "//comment\n/* block */\r\n",
        "a\u{85}b\u{2028}c\u{2029}d\u{b}e\u{c}f",
        "  \u{a0} \t x",
        "x \u{a0}",
        "'",
        "''s",
        "'\n",
        "a's'S'ſ",
        "    def f(x):\n        return x  # comment\n",
        " !!! ?? ...\n\n",
        "\n",
        "\r",
        "\r\n",
        " \r\n ",
        "A\u{301}B\u{301}c",
        "ABC\u{301}",
        "ʰABC",
        "ABCʰ",
        "AʰB",
        "AʰB1",
        " \u{301}A",
        "\u{301}A\u{301}",
        "!ABCd",
        "!ABC",
        "\u{a0}Word",
        "\u{3000}中",
    ];
    for text in cases {
        check(text);
    }
}

/// A small deterministic generator (xorshift) so the fuzzing needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_strings_match_the_reference() {
    let alphabet: Vec<char> = [
        "aZ'sStTlLeEvVrRdDmMſ ",
        " \t\n\r\u{a0}\u{3000}\u{85}\u{2028}",
        "09١Ⅻ",
        "!?./-_#\"'😀",
        "\u{301}\u{64b}ǅʰ中é",
    ]
    .concat()
    .chars()
    .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4000 {
        let len = (rng.next() % 14) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        check(&text);
    }
}

#[test]
fn every_code_point_alone_and_between_letters() {
    // Each code point alone, after a space and between letters: catches a class table error.
    for cp in (0..0x11_0000u32).step_by(97) {
        if let Some(c) = char::from_u32(cp) {
            check(&format!("{c}"));
            check(&format!(" {c}a{c}{c}A"));
        }
    }
}

#[test]
fn long_runs_are_linear() {
    let t = std::time::Instant::now();
    for text in [
        " ".repeat(1 << 20),
        "a".repeat(1 << 20),
        "中".repeat(1 << 18),
        "\u{301}".repeat(1 << 18),
        "\n ".repeat(1 << 19),
        "1".repeat(1 << 20),
        "!".repeat(1 << 20),
    ] {
        for scheme in SCHEMES {
            let pieces = Pretokenizer::Scanner(scheme).pieces(&text).unwrap();
            assert_eq!(pieces.concat(), text);
        }
    }
    // Generous bound: quadratic behaviour on 1 MB would take minutes.
    assert!(t.elapsed().as_secs() < 20);
}

#[test]
fn custom_patterns_use_the_regex_path() {
    let p = Pretokenizer::new(r"\w+|[^\w\s]+").unwrap();
    assert!(matches!(p, Pretokenizer::Regex(_)));
    assert_eq!(p.pieces("hi, you").unwrap(), vec!["hi", ",", "you"]);
    assert!(Pretokenizer::new("(").is_err());
    assert!(matches!(
        Pretokenizer::new("cl100k_base").unwrap(),
        Pretokenizer::Scanner(Scheme::Cl100k)
    ));
}
