//! Compiling SOURCE_DESCRIPTIONs from JSON into [`Expr`] trees; every error carries its JSON path.

use serde_json::Value as J;

use super::diagnostics::{child_path, did_you_mean, index_path, ConfigError};
use super::expr::{ArithOp, Expr, Piece, Replace, OPERATORS};
use super::record::{KeyIds, V};
use super::time::TimePattern;

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
    pub fn compile(&mut self, sd: &J, path: &str, top: bool) -> Expr {
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

    /// Compiles argument `i` of `call` (path `call.path[i + 1]`).
    fn arg(&mut self, call: &Call, i: usize) -> Expr {
        self.compile(&call.args[i], &index_path(call.path, i + 1), call.top)
    }

    fn boxed_arg(&mut self, call: &Call, i: usize) -> Box<Expr> {
        Box::new(self.arg(call, i))
    }

    fn all_args(&mut self, call: &Call) -> Vec<Expr> {
        (0..call.args.len()).map(|i| self.arg(call, i)).collect()
    }

    /// All `N` arguments, for an operator whose signature takes exactly `N`.
    fn fixed_args<const N: usize>(&mut self, call: &Call) -> Box<[Expr; N]> {
        let args: [Expr; N] = self
            .all_args(call)
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        Box::new(args)
    }

    /// Argument `i`, which must be a JSON string taken as it is (a key, a separator, a regex…)
    /// rather than an SD.
    fn literal_string(&mut self, call: &Call, i: usize, what: &str) -> Option<String> {
        match &call.args[i] {
            J::String(s) => Some(s.clone()),
            other => {
                self.err(
                    &index_path(call.path, i + 1),
                    format!("{what} must be a JSON string used literally, got {other}"),
                );
                None
            }
        }
    }

    /// `[op, args...]`: checks the operator and its argument count, then compiles it.
    fn operator(&mut self, op: &str, args: &[J], path: &str, top: bool) -> Expr {
        let Some(sig) = signature(op) else {
            let hint = did_you_mean(op, OPERATORS)
                .map(|n| format!(" (did you mean \"{n}\"?)"))
                .unwrap_or_default();
            return self.err(path, format!("unknown operator {op:?}{hint}"));
        };
        if args.len() < sig.min || args.len() > sig.max {
            let want = match (sig.min, sig.max) {
                (a, b) if a == b => format!("{a}"),
                (a, MANY) => format!("at least {a}"),
                (a, b) => format!("{a} to {b}"),
            };
            return self.err(
                path,
                format!(
                    "{op:?} takes {want} argument(s) ({}), got {}",
                    sig.form,
                    args.len()
                ),
            );
        }
        let call = Call {
            op,
            args,
            path,
            top,
        };
        match sig.family {
            Family::Literal => self.literal(&call),
            Family::Structure => self.structure(&call),
            Family::Logic => self.logic(&call),
            Family::Strings => self.strings(&call),
            Family::Arithmetic => self.arithmetic(&call),
            Family::Time => self.time(&call),
        }
    }

    fn literal(&mut self, call: &Call) -> Expr {
        let arg = &call.args[0];
        match call.op {
            "value" => Expr::Value(V::from(arg)),
            "bool" => match arg {
                J::Bool(b) => Expr::Value(V::Bool(*b)),
                other => self.err(
                    &index_path(call.path, 1),
                    format!("\"bool\" takes true or false, got {other}"),
                ),
            },
            "int" => match arg.as_i64() {
                Some(i) => Expr::Value(V::int(i)),
                None => self.err(
                    &index_path(call.path, 1),
                    format!("\"int\" takes an integer literal, got {arg}"),
                ),
            },
            op => unreachable!("operator {op} is not a literal"),
        }
    }

    /// Operators that read into, build or reshape objects and arrays.
    fn structure(&mut self, call: &Call) -> Expr {
        match call.op {
            "path" => self.path(call),
            "any" => Expr::Any(self.all_args(call)),
            "array" => Expr::Array(self.all_args(call)),
            "dict" => self.dict(call),
            "merge_dicts" => Expr::MergeDicts(self.all_args(call)),
            "exclude_keys" => {
                let obj = self.boxed_arg(call, 0);
                let keys = (1..call.args.len())
                    .filter_map(|i| self.literal_string(call, i, "a key to exclude"))
                    .collect();
                Expr::ExcludeKeys(obj, keys)
            }
            "flatten_dict" => {
                let sep = self.literal_string(call, 0, "the separator");
                let depth = self.arg(call, 1);
                let obj = self.arg(call, 2);
                match sep {
                    Some(s) => Expr::FlattenDict(s, Box::new([depth, obj])),
                    None => Expr::Invalid,
                }
            }
            "parse_json_element" | "parse_json_object" => Expr::ParseJson(self.boxed_arg(call, 0)),
            "typeof" => Expr::TypeOf(self.boxed_arg(call, 0)),
            op => unreachable!("operator {op} is not a structure operator"),
        }
    }

    /// `["path", step...]`: string steps are keys (or array indexes); only the first step
    /// reads the record itself.
    fn path(&mut self, call: &Call) -> Expr {
        let mut steps = Vec::with_capacity(call.args.len());
        for (i, a) in call.args.iter().enumerate() {
            let first_reads_record = call.top && i == 0;
            steps.push(match a {
                J::String(s) => Expr::Key(s.clone(), first_reads_record.then(|| self.slot(s))),
                _ => self.compile(a, &index_path(call.path, i + 1), first_reads_record),
            });
        }
        Expr::Path(steps)
    }

    /// `["dict", "key", SD, ...]`.
    fn dict(&mut self, call: &Call) -> Expr {
        if !call.args.len().is_multiple_of(2) {
            return self.err(
                call.path,
                format!(
                    "\"dict\" takes key/SD pairs, got {} argument(s)",
                    call.args.len()
                ),
            );
        }
        let mut entries = Vec::new();
        for i in (0..call.args.len()).step_by(2) {
            let key = self.literal_string(call, i, "a dict key");
            let v = self.arg(call, i + 1);
            if let Some(k) = key {
                entries.push((intern(&k), v));
            }
        }
        Expr::Dict(entries)
    }

    /// Conditions, boolean operators and the comparisons and sampling that yield booleans.
    fn logic(&mut self, call: &Call) -> Expr {
        match call.op {
            "condition" | "cond" => self.condition(call),
            "ifelse" => Expr::IfElse(self.fixed_args(call)),
            "not" | "!" => Expr::Not(self.boxed_arg(call, 0)),
            "and" | "&&" => Expr::And(self.all_args(call)),
            "or" | "||" => Expr::Or(self.all_args(call)),
            "equals" | "eq" | "=" => Expr::Equals(self.fixed_args(call)),
            "sample_md5" => Expr::SampleMd5(self.fixed_args(call)),
            op => unreachable!("operator {op} is not a logic operator"),
        }
    }

    /// `["condition", BOOL, SD, BOOL, SD...]`.
    fn condition(&mut self, call: &Call) -> Expr {
        if !call.args.len().is_multiple_of(2) {
            return self.err(
                call.path,
                format!(
                    "{:?} takes BOOL, SD pairs, got {} argument(s)",
                    call.op,
                    call.args.len()
                ),
            );
        }
        let mut all = self.all_args(call).into_iter();
        let mut pairs = Vec::new();
        while let (Some(c), Some(v)) = (all.next(), all.next()) {
            pairs.push((c, v));
        }
        Expr::Cond(pairs)
    }

    fn strings(&mut self, call: &Call) -> Expr {
        match call.op {
            "concat" => Expr::Concat(self.all_args(call)),
            "lowercase" | "lower" => Expr::Lower(self.boxed_arg(call, 0)),
            "uppercase" | "upper" => Expr::Upper(self.boxed_arg(call, 0)),
            "trim" => Expr::Trim(self.boxed_arg(call, 0)),
            "split" => {
                let sep = self.literal_string(call, 0, "the separator");
                let arg = self.boxed_arg(call, 1);
                match sep {
                    Some(s) if s.is_empty() => self.err(
                        &index_path(call.path, 1),
                        "the separator of \"split\" must not be empty",
                    ),
                    Some(s) => Expr::Split(s, arg),
                    None => Expr::Invalid,
                }
            }
            "contains" | "is_substring" => {
                let needle = self.literal_string(call, 0, "the text to look for");
                let arg = self.boxed_arg(call, 1);
                needle.map_or(Expr::Invalid, |n| Expr::Contains(n, arg))
            }
            "replace_with" => self.replace_with(call),
            "substring" => Expr::Substring(self.fixed_args(call)),
            op => unreachable!("operator {op} is not a string operator"),
        }
    }

    /// `["replace_with", "regex", "replacement", SD]`.
    fn replace_with(&mut self, call: &Call) -> Expr {
        let re = self.literal_string(call, 0, "the regex");
        let rep = self.literal_string(call, 1, "the replacement");
        let arg = self.arg(call, 2);
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
                Err(e) => self.err(&index_path(call.path, 2), e),
            },
            Err(e) => self.err(
                &index_path(call.path, 1),
                format!("invalid regex {re:?}: {e}"),
            ),
        }
    }

    fn arithmetic(&mut self, call: &Call) -> Expr {
        let op = match call.op {
            "round" => return Expr::Round(self.boxed_arg(call, 0)),
            "add" | "+" => ArithOp::Add,
            "addf" => ArithOp::AddF,
            "multiply" | "*" => ArithOp::Mul,
            "subtract" | "-" => ArithOp::Sub,
            "divide" | "/" => ArithOp::Div,
            op => unreachable!("operator {op} is not an arithmetic operator"),
        };
        Expr::Arith(op, self.all_args(call))
    }

    fn time(&mut self, call: &Call) -> Expr {
        match call.op {
            "iso_time_to_ms" => Expr::IsoToMs(self.boxed_arg(call, 0)),
            "ms_to_iso_time" => Expr::MsToIso(self.boxed_arg(call, 0)),
            "int96_time_to_ms" => Expr::Int96(self.boxed_arg(call, 0)),
            "iso_time_now" => Expr::IsoNow,
            "ms_time_now" => Expr::MsNow,
            "parse_time_to_ms" => {
                let pattern = self.literal_string(call, 0, "the time pattern");
                let arg = self.boxed_arg(call, 1);
                match pattern.map(|p| TimePattern::compile(&p)) {
                    Some(Ok(p)) => Expr::ParseTime(p, arg),
                    Some(Err(e)) => self.err(&index_path(call.path, 1), e),
                    None => Expr::Invalid,
                }
            }
            op => unreachable!("operator {op} is not a time operator"),
        }
    }
}

/// One operator application being compiled: `[op, args...]` at `path`; `top` says it is
/// evaluated against the record itself.
struct Call<'j> {
    op: &'j str,
    args: &'j [J],
    path: &'j str,
    top: bool,
}

/// Which compiler function handles an operator.
#[derive(Clone, Copy)]
enum Family {
    Literal,
    Structure,
    Logic,
    Strings,
    Arithmetic,
    Time,
}

/// What an operator takes: its family, its (minimum, maximum) argument counts and the form
/// of its arguments, for messages.
struct Signature {
    family: Family,
    min: usize,
    max: usize,
    form: &'static str,
}

/// No upper limit on the argument count.
const MANY: usize = usize::MAX;

/// The signature of operator `op`; `None` for an unknown name.
fn signature(op: &str) -> Option<Signature> {
    use Family::*;
    let (family, min, max, form) = match op {
        "value" => (Literal, 1, 1, "JSON"),
        "bool" => (Literal, 1, 1, "true|false"),
        "int" => (Literal, 1, 1, "INTEGER"),
        "path" | "any" | "array" | "merge_dicts" => (Structure, 1, MANY, "SD, SD..."),
        "dict" => (Structure, 0, MANY, "\"key\", SD, ..."),
        "exclude_keys" => (Structure, 1, MANY, "SD, \"key\"..."),
        "flatten_dict" => (Structure, 3, 3, "\"separator\", INT, SD"),
        "parse_json_element" | "parse_json_object" | "typeof" => (Structure, 1, 1, "SD"),
        "condition" | "cond" => (Logic, 2, MANY, "BOOL, SD, BOOL, SD..."),
        "ifelse" => (Logic, 3, 3, "BOOL, THEN, ELSE"),
        "and" | "&&" | "or" | "||" => (Logic, 1, MANY, "SD, SD..."),
        "not" | "!" => (Logic, 1, 1, "SD"),
        "equals" | "eq" | "=" | "sample_md5" => (Logic, 2, 2, "SD, SD"),
        "concat" => (Strings, 1, MANY, "SD, SD..."),
        "lowercase" | "lower" | "uppercase" | "upper" | "trim" => (Strings, 1, 1, "SD"),
        "split" => (Strings, 2, 2, "\"separator\", SD"),
        "contains" | "is_substring" => (Strings, 2, 2, "\"text\", SD"),
        "replace_with" => (Strings, 3, 3, "\"regex\", \"replacement\", SD"),
        "substring" => (Strings, 3, 3, "INT, INT, SD"),
        "add" | "+" | "addf" | "multiply" | "*" => (Arithmetic, 1, MANY, "SD, SD..."),
        "subtract" | "-" | "divide" | "/" => (Arithmetic, 2, 2, "SD, SD"),
        "round" => (Arithmetic, 1, 1, "SD"),
        "iso_time_to_ms" | "ms_to_iso_time" | "int96_time_to_ms" => (Time, 1, 1, "SD"),
        "parse_time_to_ms" => (Time, 2, 2, "\"pattern\", SD"),
        "iso_time_now" | "ms_time_now" => (Time, 0, 0, "no arguments"),
        _ => return None,
    };
    Some(Signature {
        family,
        min,
        max,
        form,
    })
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
