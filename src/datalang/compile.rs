//! Compiling SOURCE_DESCRIPTIONs from JSON into [`Expr`] trees; every error carries its JSON path.

use std::fmt;

use super::expr::{ArithOp, Expr, Piece, Replace, OPERATORS};
use super::time::TimePattern;
use super::value::{KeyIds, V};

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
