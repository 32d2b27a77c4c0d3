//! Numbers read and written exactly (converter.md §1): every double read from any text JSON
//! allows comes out as the same double, in the shortest text that reads back as it; integers
//! that fit 64 bits come out as they went in.
//!
//! The references are not ours: the expected values in `HARD` are CPython's `repr(float(text))`
//! (a correctly rounding parser and a shortest printer), and the property test checks against
//! the standard library's parser and its shortest `{:e}` formatting.

use crate::datalang::record::{Keys, Num, V};
use crate::datalang::value::parse_record;
use crate::json_out::{write_value, Style};

use super::tests::Rng;

/// Reads `{"x": TEXT}` as the importer reads a JSON line and writes `x` back as the importer
/// writes it into a payload.
fn through(text: &str) -> String {
    let line = format!("{{\"x\":{text}}}");
    let record = parse_record(line.as_bytes(), &Keys::All)
        .unwrap_or_else(|e| panic!("{text}: not read: {e:?}"));
    let v = record.value.get("x").expect("x").clone();
    let mut out = Vec::new();
    write_value(&mut out, &v, Style::Compact);
    String::from_utf8(out).unwrap()
}

/// The significant digits of a number's text (`-0.00120e5` → `12`). Shortest forms are
/// compared by their count: two shortest texts can differ in the last digit when both read as
/// the same double (943238624648691.25 is both `…691.2` and `…691.3`).
fn significant(text: &str) -> String {
    let mantissa = text.split(['e', 'E']).next().unwrap();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0').trim_end_matches('0');
    if digits.is_empty() {
        "0".into()
    } else {
        digits.into()
    }
}

/// Input text → CPython's `repr(float(text))`.
const HARD: &[(&str, &str)] = &[
    ("13.899999999999999", "13.899999999999999"),
    ("13.9", "13.9"),
    ("0.9999999999999999", "0.9999999999999999"),
    ("123456789.12345679", "123456789.12345679"),
    ("5e-324", "5e-324"),
    ("1.7976931348623155e308", "1.7976931348623155e+308"),
    ("1.7976931348623157e308", "1.7976931348623157e+308"),
    ("9007199254740993.0", "9007199254740992.0"),
    ("9007199254740993e0", "9007199254740992.0"),
    ("2.2250738585072011e-308", "2.225073858507201e-308"),
    ("2.2250738585072012e-308", "2.2250738585072014e-308"),
    ("2.2250738585072014e-308", "2.2250738585072014e-308"),
    ("4.9406564584124654e-324", "5e-324"),
    ("2.4703282292062327e-324", "0.0"),
    ("2.4703282292062328e-324", "5e-324"),
    ("1e23", "1e+23"),
    ("8.98846567431158e307", "8.98846567431158e+307"),
    ("0.1000000000000000055511151231257827021181583404541015625", "0.1"),
    ("1.00000000000000011102230246251565404236316680908203125", "1.0"),
    ("1.00000000000000011102230246251565404236316680908203126", "1.0000000000000002"),
    ("0.30000000000000004", "0.30000000000000004"),
    ("0.1e1", "1.0"),
    ("1E+2", "100.0"),
    ("-0.0", "-0.0"),
    ("0.000", "0.0"),
    ("100000000000000000000000", "1e+23"),
    ("1.0e-7", "1e-07"),
    ("123456789012345678901234567890", "1.2345678901234568e+29"),
    ("18446744073709551616", "1.8446744073709552e+19"),
    ("-9223372036854775809", "-9.223372036854776e+18"),
    ("3.141592653589793238462643383279502884197169399375105820974944", "3.141592653589793"),
    ("2.5", "2.5"),
    ("1e-400", "0.0"),
    ("-1e-400", "-0.0"),
    ("7.2057594037927933e16", "7.205759403792794e+16"),
    ("1.448997445238699", "1.448997445238699"),
    ("4.35679828141770e-10", "4.3567982814177e-10"),
    ("0.00000000000000000000000000000000000000000000000000000000000000000000000001", "1e-74"),
    ("6.631236846766476e-316", "6.63123685e-316"),
    ("2.225073858507201136057409796709131975934819546351645648023426109724822222021076945516529523908135087914149158913039621106870086438694594645527657207407820621743379988141063267329253552286881372149012981122451451889849057222307285255133155755015914397476397983411801999323962548289017107081850690630666655994938275772572015763062690663332647565300009245888316433037779791869612049497390377829704905051080609940730262937128958950003583799967207254304360284078895771796150945516748243471030702609144621572289880258182545180325707018860872113128079512233426288368622321503775666622503982534335974568884423900265498198385487948292206894721689831099698365846814022854243330660339850886445804001034933970427567186443383770486037861622771738545623065874679014086723327636718749999999999999999999999999999999999999e-308", "2.225073858507201e-308"),
    ("4.9406564584124654417656879286822137236505980e-324", "5e-324"),
    ("0.0000000000000000000000000000000000000000001e-280", "1e-323"),
    ("9.999999999999999e22", "1e+23"),
    ("1e-7", "1e-07"),
    ("123e-2", "1.23"),
    ("1.5e300", "1.5e+300"),
    ("-2.5e-5", "-2.5e-05"),
];

#[test]
fn hard_cases_read_as_the_nearest_double_and_print_shortest() {
    let mut wrong = Vec::new();
    for (input, python) in HARD {
        let expected: f64 = python.parse().unwrap();
        let out = through(input);
        let got: f64 = out.parse().unwrap();
        if got.to_bits() != expected.to_bits()
            || significant(&out).len() != significant(python).len()
        {
            wrong.push(format!("{input} → {out} (CPython: {python})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn integers_that_fit_64_bits_stay_integers() {
    for text in [
        "0",
        "-1",
        "9007199254740993",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "12345678901234567890",
        "18446744073709551615",
    ] {
        assert_eq!(through(text), text);
    }
    // Beyond 64 bits: the nearest double.
    assert_eq!(
        through("18446744073709551616").parse::<f64>(),
        Ok(2f64.powi(64))
    );
}

#[test]
fn numbers_beyond_the_double_range_are_invalid_records_not_infinity() {
    for text in ["1e400", "-1e309", "1.8e308"] {
        let line = format!("{{\"x\":{text}}}");
        let err = parse_record(line.as_bytes(), &Keys::All).unwrap_err();
        assert!(
            format!("{err:?}").contains("out of range"),
            "{text}: {err:?}"
        );
    }
}

/// The texts JSON allows for one double: shortest, 17 significant digits, trailing zeros,
/// upper-case exponent with a sign, and a plain decimal when the exponent is moderate.
fn spellings(f: f64) -> Vec<String> {
    let shortest = format!("{f:e}");
    let mut texts = vec![
        shortest.clone(),
        format!("{f:.16e}"),
        format!("{f:.24e}").replace('e', "E+").replace("E+-", "E-"),
    ];
    let (mantissa, exp) = shortest.split_once('e').unwrap();
    let mantissa = if mantissa.contains('.') {
        format!("{mantissa}000")
    } else {
        format!("{mantissa}.000")
    };
    texts.push(format!("{mantissa}e{exp}"));
    if f.abs() > 1e-30 && f.abs() < 1e30 {
        texts.push(format!("{f:?}"));
    }
    texts
}

#[test]
fn random_doubles_come_out_as_the_same_double_in_shortest_form() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut checked = 0;
    let mut wrong = Vec::new();
    while checked < 200_000 {
        let f = f64::from_bits(rng.next());
        if !f.is_finite() {
            continue;
        }
        checked += 1;
        let want = significant(&format!("{f:e}")).len();
        for text in spellings(f) {
            let out = through(&text);
            let back: f64 = out.parse().unwrap();
            if back.to_bits() != f.to_bits() || significant(&out).len() != want {
                wrong.push(format!("{text} → {out}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} doubles changed, e.g.:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}

#[test]
fn computed_numbers_print_shortest() {
    // What DataLang computes goes out through the same writer: 0.1 + 0.2 is its own double.
    let mut out = Vec::new();
    write_value(&mut out, &V::Num(Num::F(0.1 + 0.2)), Style::Compact);
    assert_eq!(out, b"0.30000000000000004");
    assert_eq!(Num::F(1.0 / 3.0).to_text().unwrap(), "0.3333333333333333");
}
