//! The SOURCE_DESCRIPTION expression language: compiled once from JSON (errors carry JSON
//! paths), evaluated per record over borrowed values without re-reading JSON or regexes.

mod scan;
pub mod time;
pub mod value;

use std::borrow::Cow;
use std::fmt;

use md5::{Digest, Md5};

pub use scan::{find_special, special_in_string};
use time::TimePattern;
pub use value::{json_eq, KeyIds, Keys, Num, Record, V};

/// One problem in a converter file (in an SD or elsewhere), located by JSON path.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A compiled SOURCE_DESCRIPTION.
#[derive(Debug)]
pub enum Expr {
    /// A string SD: whole key first, then the dotted walk (`dotted` holds the segments).
    /// `slot`/`first_slot` are set when it reads the record itself (top-level keys).
    /// `raw_ok`: the value goes straight to a payload field, so a `V::Raw` may stay raw.
    Field {
        key: String,
        slot: Option<u32>,
        dotted: Option<(Vec<String>, Option<u32>)>,
        raw_ok: bool,
    },
    /// A string argument of `path`: one key, or an array index; `slot` when it reads the record.
    Key(String, Option<u32>),
    Path(Vec<Expr>),
    Value(V<'static>),
    Any(Vec<Expr>),
    /// Keys are interned: an output object's keys then cost nothing per record.
    Dict(Vec<(&'static str, Expr)>),
    Array(Vec<Expr>),
    Cond(Vec<(Expr, Expr)>),
    IfElse(Box<[Expr; 3]>),
    MergeDicts(Vec<Expr>),
    ExcludeKeys(Box<Expr>, Vec<String>),
    FlattenDict(String, Box<[Expr; 2]>),
    ParseJson(Box<Expr>),
    TypeOf(Box<Expr>),
    Concat(Vec<Expr>),
    Lower(Box<Expr>),
    Upper(Box<Expr>),
    Trim(Box<Expr>),
    Split(String, Box<Expr>),
    Replace(Box<Replace>),
    Substring(Box<[Expr; 3]>),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Equals(Box<[Expr; 2]>),
    Contains(String, Box<Expr>),
    SampleMd5(Box<[Expr; 2]>),
    Arith(ArithOp, Vec<Expr>),
    Round(Box<Expr>),
    IsoToMs(Box<Expr>),
    MsToIso(Box<Expr>),
    ParseTime(TimePattern, Box<Expr>),
    IsoNow,
    MsNow,
    Int96(Box<Expr>),
    /// Placeholder for an SD that failed to compile (the error is already recorded).
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArithOp {
    Add,
    AddF,
    Sub,
    Mul,
    Div,
}

#[derive(Debug)]
pub struct Replace {
    regex: fancy_regex::Regex,
    replacement: Vec<Piece>,
    arg: Expr,
}

/// A piece of a Java-style replacement string.
#[derive(Debug, PartialEq)]
enum Piece {
    Lit(String),
    Group(usize),
    Named(String),
}

/// Every operator name, with aliases, for "did you mean".
pub const OPERATORS: &[&str] = &[
    "path",
    "value",
    "any",
    "dict",
    "array",
    "condition",
    "cond",
    "ifelse",
    "merge_dicts",
    "exclude_keys",
    "flatten_dict",
    "parse_json_element",
    "parse_json_object",
    "typeof",
    "concat",
    "lowercase",
    "lower",
    "uppercase",
    "upper",
    "trim",
    "split",
    "replace_with",
    "substring",
    "bool",
    "not",
    "!",
    "and",
    "&&",
    "or",
    "||",
    "equals",
    "eq",
    "=",
    "contains",
    "is_substring",
    "sample_md5",
    "int",
    "add",
    "+",
    "addf",
    "subtract",
    "-",
    "multiply",
    "*",
    "divide",
    "/",
    "round",
    "iso_time_to_ms",
    "ms_to_iso_time",
    "parse_time_to_ms",
    "iso_time_now",
    "ms_time_now",
    "int96_time_to_ms",
];

/// Appends `key` to a JSON path.
pub fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", serde_json::to_string(key).unwrap_or_default()),
    }
}

fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest name in `names`, when it is close enough to be a likely typo.
pub fn did_you_mean(word: &str, names: &[&'static str]) -> Option<&'static str> {
    names
        .iter()
        .map(|n| (edit_distance(word, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4) && *d < word.len().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Compiles SDs, collecting every error and the top-level record keys they read.
pub struct Compiler<'e> {
    pub errors: &'e mut Vec<ConfigError>,
    pub record_keys: KeyIds,
}

impl Compiler<'_> {
    /// The slot of a top-level record key, numbering keys as they are first seen.
    fn slot(&mut self, key: &str) -> u32 {
        let next = self.record_keys.len() as u32;
        self.record_keys.get_or_insert(key, next)
    }

    fn err(&mut self, path: &str, message: impl Into<String>) -> Expr {
        self.errors.push(ConfigError::new(path, message));
        Expr::Invalid
    }

    /// Compiles the SD at `path`; `top` says it is evaluated against the record itself.
    pub fn compile(&mut self, sd: &serde_json::Value, path: &str, top: bool) -> Expr {
        use serde_json::Value as J;
        match sd {
            J::String(s) => {
                let slot = top.then(|| self.slot(s));
                let dotted = s.contains('.').then(|| {
                    let segs: Vec<String> = s.split('.').map(str::to_string).collect();
                    let first = top.then(|| self.slot(&segs[0]));
                    (segs, first)
                });
                Expr::Field { key: s.clone(), slot, dotted, raw_ok: false }
            }
            J::Object(map) => Expr::Dict(
                map.iter()
                    .map(|(k, v)| (intern(k), self.compile(v, &child_path(path, k), top)))
                    .collect(),
            ),
            J::Array(items) => match items.first() {
                Some(J::String(op)) => self.operator(op, &items[1..], path, top),
                _ => self.err(
                    path,
                    "an array SOURCE_DESCRIPTION must start with an operator name, e.g. [\"value\", …]",
                ),
            },
            J::Number(n) => self.err(
                path,
                format!("a bare number is not a SOURCE_DESCRIPTION; write [\"int\", {n}] or [\"value\", {n}]"),
            ),
            J::Bool(b) => self.err(
                path,
                format!("a bare boolean is not a SOURCE_DESCRIPTION; write [\"bool\", {b}]"),
            ),
            J::Null => self.err(
                path,
                "a bare null is not a SOURCE_DESCRIPTION; write [\"value\", null]",
            ),
        }
    }

    fn args(
        &mut self,
        args: &[serde_json::Value],
        path: &str,
        top: bool,
        from: usize,
    ) -> Vec<Expr> {
        args.iter()
            .enumerate()
            .skip(from)
            .map(|(i, a)| self.compile(a, &index_path(path, i + 1), top))
            .collect()
    }

    fn raw_string(
        &mut self,
        args: &[serde_json::Value],
        i: usize,
        path: &str,
        what: &str,
    ) -> Option<String> {
        match &args[i] {
            serde_json::Value::String(s) => Some(s.clone()),
            other => {
                self.err(
                    &index_path(path, i + 1),
                    format!("{what} must be a JSON string used literally, got {other}"),
                );
                None
            }
        }
    }

    fn operator(&mut self, op: &str, args: &[serde_json::Value], path: &str, top: bool) -> Expr {
        // (minimum, maximum) argument counts and the form for messages.
        let arity: Option<(usize, usize, &str)> = match op {
            "path" | "any" | "array" | "merge_dicts" | "concat" | "and" | "&&" | "or" | "||"
            | "add" | "+" | "addf" | "multiply" | "*" => Some((1, usize::MAX, "SD, SD...")),
            "value" => Some((1, 1, "JSON")),
            "bool" => Some((1, 1, "true|false")),
            "int" => Some((1, 1, "INTEGER")),
            "dict" => Some((0, usize::MAX, "\"key\", SD, ...")),
            "condition" | "cond" => Some((2, usize::MAX, "BOOL, SD, BOOL, SD...")),
            "ifelse" => Some((3, 3, "BOOL, THEN, ELSE")),
            "exclude_keys" => Some((1, usize::MAX, "SD, \"key\"...")),
            "flatten_dict" => Some((3, 3, "\"separator\", INT, SD")),
            "parse_json_element" | "parse_json_object" | "typeof" | "lowercase" | "lower"
            | "uppercase" | "upper" | "trim" | "not" | "!" | "round" | "iso_time_to_ms"
            | "ms_to_iso_time" | "int96_time_to_ms" => Some((1, 1, "SD")),
            "split" => Some((2, 2, "\"separator\", SD")),
            "replace_with" => Some((3, 3, "\"regex\", \"replacement\", SD")),
            "substring" => Some((3, 3, "INT, INT, SD")),
            "equals" | "eq" | "=" | "sample_md5" => Some((2, 2, "SD, SD")),
            "subtract" | "-" | "divide" | "/" => Some((2, 2, "SD, SD")),
            "contains" | "is_substring" => Some((2, 2, "\"text\", SD")),
            "parse_time_to_ms" => Some((2, 2, "\"pattern\", SD")),
            "iso_time_now" | "ms_time_now" => Some((0, 0, "no arguments")),
            _ => None,
        };
        let Some((min, max, form)) = arity else {
            let hint = did_you_mean(op, OPERATORS)
                .map(|n| format!(" (did you mean \"{n}\"?)"))
                .unwrap_or_default();
            return self.err(path, format!("unknown operator {op:?}{hint}"));
        };
        if args.len() < min || args.len() > max {
            let want = match (min, max) {
                (a, b) if a == b => format!("{a}"),
                (a, usize::MAX) => format!("at least {a}"),
                (a, b) => format!("{a} to {b}"),
            };
            return self.err(
                path,
                format!(
                    "{op:?} takes {want} argument(s) ({form}), got {}",
                    args.len()
                ),
            );
        }
        let one = |c: &mut Self| Box::new(c.compile(&args[0], &index_path(path, 1), top));
        match op {
            "path" => {
                let mut steps = Vec::with_capacity(args.len());
                for (i, a) in args.iter().enumerate() {
                    let p = index_path(path, i + 1);
                    steps.push(match a {
                        serde_json::Value::String(s) => {
                            let slot = (top && i == 0).then(|| self.slot(s));
                            Expr::Key(s.clone(), slot)
                        }
                        _ => self.compile(a, &p, top && i == 0),
                    });
                }
                Expr::Path(steps)
            }
            "value" => Expr::Value(V::from(&args[0])),
            "bool" => match &args[0] {
                serde_json::Value::Bool(b) => Expr::Value(V::Bool(*b)),
                other => self.err(
                    &index_path(path, 1),
                    format!("\"bool\" takes true or false, got {other}"),
                ),
            },
            "int" => match args[0].as_i64() {
                Some(i) => Expr::Value(V::int(i)),
                None => self.err(
                    &index_path(path, 1),
                    format!("\"int\" takes an integer literal, got {}", args[0]),
                ),
            },
            "any" => Expr::Any(self.args(args, path, top, 0)),
            "array" => Expr::Array(self.args(args, path, top, 0)),
            "merge_dicts" => Expr::MergeDicts(self.args(args, path, top, 0)),
            "concat" => Expr::Concat(self.args(args, path, top, 0)),
            "and" | "&&" => Expr::And(self.args(args, path, top, 0)),
            "or" | "||" => Expr::Or(self.args(args, path, top, 0)),
            "add" | "+" => Expr::Arith(ArithOp::Add, self.args(args, path, top, 0)),
            "addf" => Expr::Arith(ArithOp::AddF, self.args(args, path, top, 0)),
            "multiply" | "*" => Expr::Arith(ArithOp::Mul, self.args(args, path, top, 0)),
            "subtract" | "-" => Expr::Arith(ArithOp::Sub, self.args(args, path, top, 0)),
            "divide" | "/" => Expr::Arith(ArithOp::Div, self.args(args, path, top, 0)),
            "dict" => {
                if !args.len().is_multiple_of(2) {
                    return self.err(
                        path,
                        format!(
                            "\"dict\" takes key/SD pairs, got {} argument(s)",
                            args.len()
                        ),
                    );
                }
                let mut entries = Vec::new();
                for i in (0..args.len()).step_by(2) {
                    let key = self.raw_string(args, i, path, "a dict key");
                    let v = self.compile(&args[i + 1], &index_path(path, i + 2), top);
                    if let Some(k) = key {
                        entries.push((intern(&k), v));
                    }
                }
                Expr::Dict(entries)
            }
            "condition" | "cond" => {
                if !args.len().is_multiple_of(2) {
                    return self.err(
                        path,
                        format!(
                            "{op:?} takes BOOL, SD pairs, got {} argument(s)",
                            args.len()
                        ),
                    );
                }
                let all = self.args(args, path, top, 0);
                let mut it = all.into_iter();
                let mut pairs = Vec::new();
                while let (Some(c), Some(v)) = (it.next(), it.next()) {
                    pairs.push((c, v));
                }
                Expr::Cond(pairs)
            }
            "ifelse" => {
                let [a, b, c]: [Expr; 3] = self
                    .args(args, path, top, 0)
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                Expr::IfElse(Box::new([a, b, c]))
            }
            "exclude_keys" => {
                let obj = one(self);
                let keys = (1..args.len())
                    .filter_map(|i| self.raw_string(args, i, path, "a key to exclude"))
                    .collect();
                Expr::ExcludeKeys(obj, keys)
            }
            "flatten_dict" => {
                let sep = self.raw_string(args, 0, path, "the separator");
                let depth = self.compile(&args[1], &index_path(path, 2), top);
                let obj = self.compile(&args[2], &index_path(path, 3), top);
                match sep {
                    Some(s) => Expr::FlattenDict(s, Box::new([depth, obj])),
                    None => Expr::Invalid,
                }
            }
            "parse_json_element" | "parse_json_object" => Expr::ParseJson(one(self)),
            "typeof" => Expr::TypeOf(one(self)),
            "lowercase" | "lower" => Expr::Lower(one(self)),
            "uppercase" | "upper" => Expr::Upper(one(self)),
            "trim" => Expr::Trim(one(self)),
            "not" | "!" => Expr::Not(one(self)),
            "round" => Expr::Round(one(self)),
            "iso_time_to_ms" => Expr::IsoToMs(one(self)),
            "ms_to_iso_time" => Expr::MsToIso(one(self)),
            "int96_time_to_ms" => Expr::Int96(one(self)),
            "iso_time_now" => Expr::IsoNow,
            "ms_time_now" => Expr::MsNow,
            "split" => {
                let sep = self.raw_string(args, 0, path, "the separator");
                let arg = Box::new(self.compile(&args[1], &index_path(path, 2), top));
                match sep {
                    Some(s) if s.is_empty() => self.err(
                        &index_path(path, 1),
                        "the separator of \"split\" must not be empty",
                    ),
                    Some(s) => Expr::Split(s, arg),
                    None => Expr::Invalid,
                }
            }
            "contains" | "is_substring" => {
                let needle = self.raw_string(args, 0, path, "the text to look for");
                let arg = Box::new(self.compile(&args[1], &index_path(path, 2), top));
                needle.map_or(Expr::Invalid, |n| Expr::Contains(n, arg))
            }
            "parse_time_to_ms" => {
                let pattern = self.raw_string(args, 0, path, "the time pattern");
                let arg = Box::new(self.compile(&args[1], &index_path(path, 2), top));
                match pattern.map(|p| TimePattern::compile(&p)) {
                    Some(Ok(p)) => Expr::ParseTime(p, arg),
                    Some(Err(e)) => self.err(&index_path(path, 1), e),
                    None => Expr::Invalid,
                }
            }
            "replace_with" => {
                let re = self.raw_string(args, 0, path, "the regex");
                let rep = self.raw_string(args, 1, path, "the replacement");
                let arg = self.compile(&args[2], &index_path(path, 3), top);
                let (Some(re), Some(rep)) = (re, rep) else {
                    return Expr::Invalid;
                };
                match fancy_regex::Regex::new(&re) {
                    Ok(regex) => match parse_replacement(&rep, &regex) {
                        Ok(replacement) => Expr::Replace(Box::new(Replace {
                            regex,
                            replacement,
                            arg,
                        })),
                        Err(e) => self.err(&index_path(path, 2), e),
                    },
                    Err(e) => self.err(&index_path(path, 1), format!("invalid regex {re:?}: {e}")),
                }
            }
            "substring" => {
                let [a, b, c]: [Expr; 3] = self
                    .args(args, path, top, 0)
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                Expr::Substring(Box::new([a, b, c]))
            }
            "equals" | "eq" | "=" => {
                let [a, b]: [Expr; 2] = self
                    .args(args, path, top, 0)
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                Expr::Equals(Box::new([a, b]))
            }
            "sample_md5" => {
                let [a, b]: [Expr; 2] = self
                    .args(args, path, top, 0)
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                Expr::SampleMd5(Box::new([a, b]))
            }
            _ => unreachable!("operator {op} has an arity but no compiler"),
        }
    }
}

/// Java `Matcher.replaceAll` replacement syntax: `$n` (greedy while the group exists),
/// `${name}`, and `\x` for a literal `x`.
fn parse_replacement(rep: &str, regex: &fancy_regex::Regex) -> Result<Vec<Piece>, String> {
    let groups = regex.captures_len() - 1;
    let chars: Vec<char> = rep.chars().collect();
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let Some(c) = chars.get(i + 1) else {
                    return Err("replacement ends with a lone backslash".into());
                };
                lit.push(*c);
                i += 2;
            }
            '$' => {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                if chars.get(i + 1) == Some(&'{') {
                    let end = chars[i + 2..]
                        .iter()
                        .position(|c| *c == '}')
                        .ok_or("unclosed ${ in replacement")?;
                    let name: String = chars[i + 2..i + 2 + end].iter().collect();
                    if !regex.capture_names().any(|n| n == Some(name.as_str())) {
                        return Err(format!(
                            "replacement refers to group {name:?}, which the regex does not have"
                        ));
                    }
                    out.push(Piece::Named(name));
                    i += end + 3;
                } else {
                    let mut j = i + 1;
                    let first = chars.get(j).and_then(|c| c.to_digit(10)).ok_or("a $ in the replacement must be followed by a group number or {name}; write \\$ for a literal $")? as usize;
                    if first > groups {
                        return Err(format!(
                            "replacement refers to group {first}, but the regex has {groups}"
                        ));
                    }
                    let mut n = first;
                    j += 1;
                    while let Some(d) = chars.get(j).and_then(|c| c.to_digit(10)) {
                        let next = n * 10 + d as usize;
                        if next > groups {
                            break;
                        }
                        n = next;
                        j += 1;
                    }
                    out.push(Piece::Group(n));
                    i = j;
                }
            }
            c => {
                lit.push(c);
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Ok(out)
}

/// How a value reads as a boolean: `true`/`false` and their strings; everything else is false.
pub fn truthy(v: Option<&V<'_>>) -> bool {
    match v {
        Some(V::Bool(b)) => *b,
        Some(V::Str(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// How a value reads as a number: numbers, numeric strings, null and no value as 0.
fn numeric(v: Option<&V<'_>>) -> Option<Num> {
    match v {
        None | Some(V::Null) => Some(Num::I(0)),
        Some(V::Num(n)) => Some(*n),
        Some(V::Str(s)) => parse_num(s),
        _ => None,
    }
}

/// A numeric string as a number: integers exactly, else a finite float.
pub fn parse_num(s: &str) -> Option<Num> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Num::I(i));
    }
    let looks_numeric = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    match s.parse::<f64>() {
        Ok(f) if looks_numeric && f.is_finite() => Some(Num::F(f)),
        _ => None,
    }
}

/// Text of a scalar as `concat` writes it; objects, arrays, null and no value have none.
pub fn text_of<'v>(v: Option<&'v V<'_>>) -> Option<Cow<'v, str>> {
    match v? {
        V::Str(s) => Some(Cow::Borrowed(s.as_ref())),
        V::Num(n) => n.to_text().map(Cow::Owned),
        V::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

fn integer_of(v: Option<&V<'_>>) -> Option<i64> {
    match v? {
        V::Num(n) => n.as_i64().or_else(|| {
            let f = n.as_f64();
            (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
        }),
        V::Str(s) => s.parse().ok(),
        _ => None,
    }
}

fn lookup<'r, 'a>(ctx: &'r V<'a>, key: &str) -> Option<&'r V<'a>> {
    match ctx {
        V::Obj(_) => ctx.get(key),
        V::Arr(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// The one `'static` copy of a dict key. Converters are compiled once per version, and a
/// process keeps one copy of each distinct key, however many converters it compiles.
fn intern(key: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut keys = KEYS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match keys.get(key) {
        Some(k) => k,
        None => {
            let k: &'static str = Box::leak(key.into());
            keys.insert(k);
            k
        }
    }
}

fn flatten_into<'a>(
    obj: &[(Cow<'a, str>, V<'a>)],
    prefix: &str,
    sep: &str,
    levels: i64,
    out: &mut Vec<(Cow<'a, str>, V<'a>)>,
) {
    for (k, v) in obj {
        let key: Cow<'a, str> = if prefix.is_empty() {
            k.clone()
        } else {
            Cow::Owned(format!("{prefix}{sep}{k}"))
        };
        match v {
            V::Obj(inner) if !inner.is_empty() && levels != 0 => {
                flatten_into(inner, &key, sep, levels - 1, out);
            }
            _ => out.push((key, v.clone())),
        }
    }
}

type Out<'r, 'a> = Option<Cow<'r, V<'a>>>;

fn owned<'r, 'a>(v: V<'a>) -> Out<'r, 'a> {
    Some(Cow::Owned(v))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Expr {
    /// Evaluates against `ctx` (the record, or the previous step of a `path`); `rec` is the
    /// record, for the top-level keys found by slot.
    pub fn eval<'r, 'a>(&'r self, ctx: &'r V<'a>, rec: &'r Record<'a>) -> Out<'r, 'a> {
        match self {
            Expr::Field {
                key,
                slot,
                dotted,
                raw_ok,
            } => {
                let whole = match slot {
                    Some(id) => rec.slot(*id, key),
                    None => lookup(ctx, key),
                };
                if let Some(v) = whole {
                    return match v {
                        V::Raw(_) if !raw_ok => v.resolved().map(Cow::Owned),
                        _ => Some(Cow::Borrowed(v)),
                    };
                }
                let (segs, first) = dotted.as_ref()?;
                let root = match first {
                    Some(id) => rec.slot(*id, &segs[0])?,
                    None => lookup(ctx, &segs[0])?,
                };
                if let V::Raw(text) = root {
                    let mut cur = *text;
                    for seg in &segs[1..] {
                        cur = value::raw_member(cur, seg)?;
                    }
                    return value::parse_value(cur).ok().map(Cow::Owned);
                }
                let mut cur = root;
                for seg in &segs[1..] {
                    cur = lookup(cur, seg)?;
                }
                Some(Cow::Borrowed(cur))
            }
            Expr::Key(key, Some(id)) => match rec.slot(*id, key)? {
                raw @ V::Raw(_) => raw.resolved().map(Cow::Owned),
                v => Some(Cow::Borrowed(v)),
            },
            Expr::Key(key, None) => lookup(ctx, key).map(Cow::Borrowed),
            Expr::Path(steps) => {
                let mut cur: Cow<'r, V<'a>> = Cow::Borrowed(ctx);
                // Inside a record value kept as text (`V::Raw`), keys are looked up in the
                // text: only the member the path ends at is parsed.
                let mut text: Option<&'a str> = None;
                for step in steps {
                    if let Some(t) = text {
                        if let Expr::Key(key, _) = step {
                            text = Some(value::raw_member(t, key)?);
                            continue;
                        }
                        cur = Cow::Owned(value::parse_value(t).ok()?);
                        text = None;
                    }
                    // A record key (only ever the first step): one slot lookup.
                    if let Expr::Key(key, Some(id)) = step {
                        match rec.slot(*id, key)? {
                            V::Raw(t) => text = Some(*t),
                            v => cur = Cow::Borrowed(v),
                        }
                        continue;
                    }
                    cur = match cur {
                        Cow::Borrowed(c) => step.eval(c, rec)?,
                        Cow::Owned(c) => Cow::Owned(step.eval(&c, rec)?.into_owned()),
                    };
                }
                match text {
                    Some(t) => value::parse_value(t).ok().map(Cow::Owned),
                    None => Some(cur),
                }
            }
            Expr::Value(v) => Some(Cow::Borrowed(v)),
            Expr::Any(args) => args
                .iter()
                .filter_map(|a| a.eval(ctx, rec))
                .find(|v| !v.is_null()),
            Expr::Dict(entries) => owned(V::Obj(
                entries
                    .iter()
                    .filter_map(|(k, e)| {
                        e.eval(ctx, rec)
                            .map(|v| (Cow::Borrowed(*k), v.into_owned()))
                    })
                    .collect(),
            )),
            Expr::Array(items) => owned(V::Arr(
                items
                    .iter()
                    .filter_map(|e| e.eval(ctx, rec))
                    .map(Cow::into_owned)
                    .collect(),
            )),
            Expr::Cond(pairs) => pairs
                .iter()
                .find(|(c, _)| truthy(c.eval(ctx, rec).as_deref()))
                .and_then(|(_, v)| v.eval(ctx, rec)),
            Expr::IfElse(b) => {
                if truthy(b[0].eval(ctx, rec).as_deref()) {
                    b[1].eval(ctx, rec)
                } else {
                    b[2].eval(ctx, rec)
                }
            }
            Expr::MergeDicts(args) => {
                let mut out: Vec<(Cow<'a, str>, V<'a>)> = Vec::new();
                for a in args {
                    let Some(v) = a.eval(ctx, rec) else { continue };
                    if let V::Obj(o) = v.as_ref() {
                        for (k, v) in o {
                            match out.iter_mut().find(|(k2, _)| k2 == k) {
                                Some(slot) => slot.1 = v.clone(),
                                None => out.push((k.clone(), v.clone())),
                            }
                        }
                    }
                }
                owned(V::Obj(out))
            }
            Expr::ExcludeKeys(obj, keys) => match obj.eval(ctx, rec)?.as_ref() {
                V::Obj(o) => owned(V::Obj(
                    o.iter()
                        .filter(|(k, _)| !keys.iter().any(|x| x == k))
                        .cloned()
                        .collect(),
                )),
                _ => None,
            },
            Expr::FlattenDict(sep, b) => {
                let depth = integer_of(b[0].eval(ctx, rec).as_deref())?;
                match b[1].eval(ctx, rec)?.as_ref() {
                    V::Obj(o) => {
                        let mut out = Vec::with_capacity(o.len());
                        flatten_into(o, "", sep, if depth <= 0 { -1 } else { depth }, &mut out);
                        owned(V::Obj(out))
                    }
                    _ => None,
                }
            }
            Expr::ParseJson(a) => {
                let v = a.eval(ctx, rec)?;
                let s = v.as_str()?;
                value::parse_value(s)
                    .ok()
                    .map(|v| Cow::Owned(v.into_static()))
            }
            Expr::TypeOf(a) => owned(V::str(a.eval(ctx, rec).map_or("null", |v| v.type_name()))),
            Expr::Concat(args) => {
                let mut s = String::new();
                for a in args {
                    let v = a.eval(ctx, rec)?;
                    s.push_str(&text_of(Some(&v))?);
                }
                owned(V::Str(Cow::Owned(s)))
            }
            Expr::Lower(a) => owned(V::str(a.eval(ctx, rec)?.as_str()?.to_lowercase())),
            Expr::Upper(a) => owned(V::str(a.eval(ctx, rec)?.as_str()?.to_uppercase())),
            Expr::Trim(a) => {
                let v = a.eval(ctx, rec)?;
                let s = v.as_str()?;
                if s.len() == s.trim().len() {
                    Some(v)
                } else {
                    owned(V::str(s.trim().to_string()))
                }
            }
            Expr::Split(sep, a) => owned(V::Arr(
                a.eval(ctx, rec)?
                    .as_str()?
                    .split(sep.as_str())
                    .map(|p| V::str(p.to_string()))
                    .collect(),
            )),
            Expr::Replace(r) => {
                let v = r.arg.eval(ctx, rec)?;
                let s = v.as_str()?;
                owned(V::str(r.apply(s)?))
            }
            Expr::Substring(b) => {
                let from = integer_of(b[0].eval(ctx, rec).as_deref())?.max(0) as usize;
                let to = integer_of(b[1].eval(ctx, rec).as_deref())?.max(0) as usize;
                let v = b[2].eval(ctx, rec)?;
                let s = v.as_str()?;
                owned(V::str(
                    s.chars()
                        .skip(from)
                        .take(to.saturating_sub(from))
                        .collect::<String>(),
                ))
            }
            Expr::Not(a) => owned(V::Bool(!truthy(a.eval(ctx, rec).as_deref()))),
            Expr::And(args) => owned(V::Bool(
                args.iter().all(|a| truthy(a.eval(ctx, rec).as_deref())),
            )),
            Expr::Or(args) => owned(V::Bool(
                args.iter().any(|a| truthy(a.eval(ctx, rec).as_deref())),
            )),
            Expr::Equals(b) => {
                let x = b[0].eval(ctx, rec);
                let y = b[1].eval(ctx, rec);
                let null = V::Null;
                owned(V::Bool(json_eq(
                    x.as_deref().unwrap_or(&null),
                    y.as_deref().unwrap_or(&null),
                )))
            }
            Expr::Contains(needle, a) => owned(V::Bool(
                a.eval(ctx, rec)
                    .as_deref()
                    .and_then(V::as_str)
                    .is_some_and(|s| s.contains(needle.as_str())),
            )),
            Expr::SampleMd5(b) => {
                let pct = b[0].eval(ctx, rec);
                let key = b[1].eval(ctx, rec);
                let hit = match (pct.as_deref(), key.as_deref()) {
                    (Some(p), Some(k)) => match (numeric(Some(p)), text_of(Some(k))) {
                        (Some(p), Some(k)) => sample_md5(p.as_f64(), &k),
                        _ => false,
                    },
                    _ => false,
                };
                owned(V::Bool(hit))
            }
            Expr::Arith(op, args) => arith(*op, args, ctx, rec).map(Cow::Owned),
            Expr::Round(a) => match numeric(a.eval(ctx, rec).as_deref())? {
                Num::F(f) => {
                    let r = f.round();
                    (r.abs() < 9.2e18).then(|| Cow::Owned(V::int(r as i64)))
                }
                n => owned(V::Num(n)),
            },
            Expr::IsoToMs(a) => owned(V::int(time::iso_to_ms(a.eval(ctx, rec)?.as_str()?)?)),
            Expr::MsToIso(a) => {
                let ms = match numeric(Some(a.eval(ctx, rec)?.as_ref()))? {
                    Num::F(f) if f.is_finite() && f.abs() < 9.0e15 => f.trunc() as i64,
                    Num::F(_) => return None,
                    n => n.as_i64()?,
                };
                owned(V::str(time::ms_to_iso(ms)?))
            }
            Expr::ParseTime(p, a) => owned(V::int(p.parse_ms(a.eval(ctx, rec)?.as_str()?)?)),
            Expr::IsoNow => owned(V::str(time::ms_to_iso(now_ms())?)),
            Expr::MsNow => owned(V::int(now_ms())),
            Expr::Int96(a) => owned(V::int(time::int96_to_ms(a.eval(ctx, rec)?.as_str()?)?)),
            Expr::Invalid => None,
        }
    }
}

impl Replace {
    fn apply(&self, s: &str) -> Option<String> {
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for caps in self.regex.captures_iter(s) {
            let caps = caps.ok()?;
            let m = caps.get(0)?;
            out.push_str(&s[last..m.start()]);
            for piece in &self.replacement {
                match piece {
                    Piece::Lit(l) => out.push_str(l),
                    Piece::Group(g) => out.push_str(caps.get(*g).map_or("", |m| m.as_str())),
                    Piece::Named(n) => out.push_str(caps.name(n).map_or("", |m| m.as_str())),
                }
            }
            last = m.end();
        }
        out.push_str(&s[last..]);
        Some(out)
    }
}

/// `u64_be(md5(key)[0..8]) % 10000 < percent × 100`.
pub fn sample_md5(percent: f64, key: &str) -> bool {
    let digest = Md5::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    ((u64::from_be_bytes(first) % 10_000) as f64) < percent * 100.0
}

fn arith<'a>(op: ArithOp, args: &[Expr], ctx: &V<'a>, rec: &Record<'a>) -> Option<V<'a>> {
    let mut nums = args.iter().map(|a| numeric(a.eval(ctx, rec).as_deref()));
    let first = nums.next()??;
    let all_int = |n: Num| n.as_i64();
    match op {
        ArithOp::Add | ArithOp::AddF | ArithOp::Mul => {
            let mut int_acc = if op == ArithOp::AddF {
                None
            } else {
                all_int(first)
            };
            let mut f_acc = first.as_f64();
            for n in nums {
                let n = n?;
                let add = op != ArithOp::Mul;
                int_acc = match (int_acc, all_int(n)) {
                    (Some(a), Some(b)) if add => a.checked_add(b),
                    (Some(a), Some(b)) => a.checked_mul(b),
                    _ => None,
                };
                f_acc = if add {
                    f_acc + n.as_f64()
                } else {
                    f_acc * n.as_f64()
                };
            }
            match int_acc {
                Some(i) => Some(V::int(i)),
                None => V::float(f_acc),
            }
        }
        ArithOp::Sub | ArithOp::Div => {
            let second = nums.next()??;
            match (all_int(first), all_int(second), op) {
                (Some(a), Some(b), ArithOp::Sub) => a
                    .checked_sub(b)
                    .map(V::int)
                    .or_else(|| V::float(a as f64 - b as f64)),
                (Some(_), Some(0), _) => None,
                (Some(a), Some(b), _) => a
                    .checked_div(b)
                    .map(V::int)
                    .or_else(|| V::float(a as f64 / b as f64)),
                (_, _, ArithOp::Sub) => V::float(first.as_f64() - second.as_f64()),
                _ if second.as_f64() == 0.0 => None,
                _ => V::float(first.as_f64() / second.as_f64()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(sd: &str) -> Result<Expr, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut c = Compiler {
            errors: &mut errors,
            record_keys: KeyIds::default(),
        };
        let e = c.compile(&serde_json::from_str(sd).unwrap(), "f", true);
        if errors.is_empty() {
            Ok(e)
        } else {
            Err(errors)
        }
    }

    fn eval(sd: &str, record: &str) -> Option<String> {
        let e = compile(sd).unwrap();
        let rec = Record::new(value::parse_value(record).unwrap());
        e.eval(&rec.value, &rec).map(|v| v.to_json())
    }

    #[test]
    fn replacement_follows_java_rules() {
        let re = fancy_regex::Regex::new("(a)(b)").unwrap();
        assert_eq!(
            parse_replacement("$21x\\$", &re).unwrap(),
            vec![Piece::Group(2), Piece::Lit("1x$".into())]
        );
        assert!(parse_replacement("$3", &re).is_err());
        assert!(parse_replacement("${nope}", &re).is_err());
        assert!(parse_replacement("cost $", &re).is_err());
        assert_eq!(
            eval(
                r#"["replace_with","(\\w+)@(\\w+)","$2 at $1","e"]"#,
                r#"{"e":"bob@site"}"#
            )
            .unwrap(),
            r#""site at bob""#
        );
    }

    #[test]
    fn sample_md5_is_stable() {
        // md5("user-1") = 0x6f6d… ; the bucket is the first 8 bytes, big-endian, mod 10000.
        let digest = Md5::digest(b"user-1");
        let bucket = u64::from_be_bytes(digest[..8].try_into().unwrap()) % 10_000;
        assert!(!sample_md5(bucket as f64 / 100.0, "user-1"));
        assert!(sample_md5((bucket + 1) as f64 / 100.0, "user-1"));
        assert!(sample_md5(100.0, "anything"));
        assert!(!sample_md5(0.0, "anything"));
    }

    #[test]
    fn arithmetic_types() {
        assert_eq!(
            eval(r#"["add","a","b"]"#, r#"{"a":1,"b":"2"}"#).unwrap(),
            "3"
        );
        assert_eq!(
            eval(r#"["addf","a","b"]"#, r#"{"a":1,"b":2}"#).unwrap(),
            "3.0"
        );
        assert_eq!(
            eval(r#"["add","a",["int",9223372036854775807]]"#, r#"{"a":1}"#).unwrap(),
            "9.223372036854776e+18"
        );
        assert_eq!(
            eval(r#"["divide","a","b"]"#, r#"{"a":-7,"b":2}"#).unwrap(),
            "-3"
        );
        assert_eq!(eval(r#"["divide","a","b"]"#, r#"{"a":7,"b":0}"#), None);
        assert_eq!(eval(r#"["divide","a","b"]"#, r#"{"a":7.0,"b":0}"#), None);
        assert_eq!(
            eval(r#"["multiply","a","missing"]"#, r#"{"a":7}"#).unwrap(),
            "0"
        );
        assert_eq!(eval(r#"["subtract","a","b"]"#, r#"{"a":"x","b":1}"#), None);
        assert_eq!(eval(r#"["round","a"]"#, r#"{"a":-2.5}"#).unwrap(), "-3");
    }

    #[test]
    fn suggestions_for_typos() {
        let errs = compile(r#"["iso_time_to_msx","t"]"#).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            r#"f: unknown operator "iso_time_to_msx" (did you mean "iso_time_to_ms"?)"#
        );
        assert_eq!(did_you_mean("zzzzzz", OPERATORS), None);
    }
}
