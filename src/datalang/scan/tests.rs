//! The scanner against serde_json: same verdicts, same values, on mutated inputs.

use super::*;
use crate::datalang::fallback::{parse_record_serde, parse_value_serde};
use crate::datalang::record::{KeyIds, Keys, Spare};

/// xorshift: reproducible mutations without a dependency.
pub(super) struct Rng(pub(super) u64);
impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: [&str; 6] = [
    r#"{"event_type":"Sign Up","user_id":"u\u00e9\"x","n":-12,"f":2.5e-3,"big":18446744073709551616,"o":{"a":[1,true,null,{"b":"\ud83d\ude80"}],"a":0},"e":{},"l":[]}"#,
    r#" { "a" : "tab\there" , "b" : [ 1 , 2 ] , "c" : { "d" : false } } "#,
    r#"{"k":"Kraków 東京","x":0,"y":-0.0,"z":1E+2,"w":"\/\b\f\n\r"}"#,
    r#"{"deep":[[[[{"a":[[]]}]]]],"s":"\\","t":"\u0041\u00DF"}"#,
    r#"{"ints":[0,9,-9,123456789012345678,-123456789012345678,9223372036854775807,-9223372036854775808]}"#,
    r#"{"a":1}"#,
];

/// Bytes that matter to a JSON reader, for mutations.
const ALPHABET: &[u8] = b"{}[]:,\"\\ \t\n01-+.eEtrufalsnu\x01\x1fxd8D";

fn mutate(rng: &mut Rng, seed: &str) -> Vec<u8> {
    let mut b = seed.as_bytes().to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(b.len() + 1);
        match rng.below(3) {
            0 if at < b.len() => {
                b.remove(at);
            }
            1 if at < b.len() => b[at] = ALPHABET[rng.below(ALPHABET.len())],
            _ => b.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
        }
    }
    b
}

fn keys() -> (KeyIds, Vec<bool>) {
    let mut ids = KeyIds::default();
    for (i, k) in ["a", "o", "k", "deep", "n", "f", "ints", "b", "x"]
        .iter()
        .enumerate()
    {
        ids.get_or_insert(k, i as u32);
    }
    // "o" and "deep" and "b" are passed through whole.
    let raw = vec![false, true, false, true, false, false, false, true, false];
    (ids, raw)
}

#[test]
fn accepts_only_what_serde_json_accepts_and_builds_the_same_value() {
    let (ids, raw) = keys();
    let only = Keys::Only {
        ids: ids.clone(),
        raw: raw.clone(),
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut fast_accepted, mut total) = (0, 0);
    for round in 0..60_000 {
        let seed = SEEDS[round % SEEDS.len()];
        let bytes = if round < SEEDS.len() {
            seed.as_bytes().to_vec()
        } else {
            mutate(&mut rng, seed)
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        total += 1;
        let serde = parse_value_serde(text).ok();
        match value(text) {
            Some(v) => {
                fast_accepted += 1;
                let expected =
                    serde.unwrap_or_else(|| panic!("accepted what serde_json rejects: {text}"));
                assert_eq!(v.to_json(), expected.to_json(), "{text}");
            }
            None => {
                // Giving up is allowed; the seeds themselves must take the fast path.
                assert!(round >= SEEDS.len(), "seed not accepted: {text}");
            }
        }
        let slow = parse_record_serde(text, &only).ok();
        match record(text, &ids, &raw, Spare::default()) {
            Some(r) => {
                let expected = slow
                    .unwrap_or_else(|| panic!("record accepted what serde_json rejects: {text}"));
                assert_eq!(r.value.to_json(), expected.value.to_json(), "{text}");
                for (k, id) in ids.iter() {
                    assert_eq!(
                        r.slot(id, k).map(V::to_json),
                        expected.slot(id, k).map(V::to_json),
                        "{k} in {text}"
                    );
                    assert_eq!(
                        matches!(r.slot(id, k), Some(V::Raw(_))),
                        matches!(expected.slot(id, k), Some(V::Raw(_))),
                        "{k} kept whole in {text}"
                    );
                }
            }
            None => assert!(round >= SEEDS.len() || !text.trim_start().starts_with('{')),
        }
    }
    // The mutations must exercise both verdicts.
    assert!(
        fast_accepted > total / 10 && fast_accepted < total,
        "{fast_accepted} of {total}"
    );
}

#[test]
fn members_of_text_match_members_of_the_tree() {
    let text = r#" { "a" : {"b": [10, {"c": "x\"y"}, []]}, "n": null, "a2": 1, "a": {"b": [7, {"c": "last"}]} } "#;
    let tree = parse_value_serde(text).unwrap();
    let walk = |keys: &[&str]| {
        let mut t = text;
        for k in keys {
            t = member(t, k)?;
        }
        Some(parse_value_serde(t).unwrap().to_json())
    };
    let in_tree = |keys: &[&str]| {
        let mut v = &tree;
        for k in keys {
            v = match v {
                V::Obj(_) => v.get(k)?,
                V::Arr(items) => items.get(k.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v.to_json())
    };
    for keys in [
        &["a"][..],
        &["a", "b"],
        &["a", "b", "0"],
        &["a", "b", "1", "c"],
        &["a", "b", "2"],
        &["a", "b", "9"],
        &["a", "b", "x"],
        &["n"],
        &["n", "x"],
        &["missing"],
        &["a2", "x"],
    ] {
        assert_eq!(walk(keys), in_tree(keys), "{keys:?}");
    }
    assert_eq!(member("[]", "0"), None);
    assert_eq!(member("{}", "a"), None);
}

#[test]
fn gives_up_where_serde_json_has_its_own_rules() {
    for text in [r#"{"a":"\ud800"}"#, r#"{"a":"\udc00x"}"#] {
        assert!(value(text).is_none(), "{text}");
    }
    // Numbers other than short integers are read by serde_json's own number parser.
    for text in [
        "-0",
        "1.5e300",
        "123456789012345678901",
        "-9223372036854775809",
    ] {
        let expected = parse_value_serde(text).unwrap().to_json();
        assert_eq!(value(text).map(|v| v.to_json()), Some(expected), "{text}");
    }
    let deep = format!(
        "{}1{}",
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    assert!(value(&deep).is_none());
    let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(value(&ok).is_some());
}
