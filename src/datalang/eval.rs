//! Evaluating a compiled [`Expr`] against one record: the per-record hot path.

use std::borrow::Cow;

use md5::{Digest, Md5};

use super::coerce::{integer_of, numeric, text_of, truthy};
use super::expr::{ArithOp, Expr, Piece, Replace};
use super::record::{Num, Record, V};
use super::time;
use super::value::{self, json_eq};

fn lookup<'r, 'a>(ctx: &'r V<'a>, key: &str) -> Option<&'r V<'a>> {
    match ctx {
        V::Obj(_) => ctx.get(key),
        V::Arr(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
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

/// What evaluating an expression gives: `None` when there is no value (a missing key, a
/// failed conversion); borrowed from the record or the expression wherever possible.
type Evaluated<'r, 'a> = Option<Cow<'r, V<'a>>>;

fn owned<'r, 'a>(v: V<'a>) -> Evaluated<'r, 'a> {
    Some(Cow::Owned(v))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Expr {
    /// [`Expr::eval`] with its commonest case, a top-level key read whole, done in the caller:
    /// the converter evaluates every field of every record this way, and a call returning a
    /// value through memory costs more than the lookup.
    #[inline(always)]
    pub fn eval_inline<'r, 'a>(&'r self, ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
        match self.read_whole(rec) {
            Some(v) => Some(Cow::Borrowed(v)),
            None => self.eval(ctx, rec),
        }
    }

    /// That commonest case alone: the value of a top-level key read whole, found by slot and
    /// returned in a register. `None` when the expression is something else, or the value is
    /// absent or needs [`Expr::eval`] (raw text that must be parsed): then evaluate it.
    #[inline(always)]
    pub fn read_whole<'r, 'a>(&'r self, rec: &'r Record<'a>) -> Option<&'r V<'a>> {
        if let Expr::Field {
            key,
            slot: Some(id),
            raw_ok,
            ..
        } = self
        {
            if let Some(v) = rec.slot(*id, key) {
                if *raw_ok || !matches!(v, V::Raw(_)) {
                    return Some(v);
                }
            }
        }
        None
    }

    /// Evaluates against `ctx` (the record, or the previous step of a `path`); `rec` is the
    /// record, for the top-level keys found by slot.
    ///
    /// One arm per operator; arms longer than a line call the function named after the
    /// operator below, grouped by family as in the compiler.
    pub fn eval<'r, 'a>(&'r self, ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
        match self {
            // Reading the record.
            Expr::Field {
                key,
                slot,
                dotted,
                raw_ok,
            } => field(key, *slot, dotted, *raw_ok, ctx, rec),
            Expr::Key(key, Some(id)) => match rec.slot(*id, key)? {
                raw @ V::Raw(_) => raw.resolved().map(Cow::Owned),
                v => Some(Cow::Borrowed(v)),
            },
            Expr::Key(key, None) => lookup(ctx, key).map(Cow::Borrowed),
            Expr::Path(steps) => path(steps, ctx, rec),
            Expr::Value(v) => Some(Cow::Borrowed(v)),
            // Structure.
            Expr::Any(args) => args
                .iter()
                .filter_map(|a| a.eval(ctx, rec))
                .find(|v| !v.is_null()),
            Expr::Dict(entries) => dict(entries, ctx, rec),
            Expr::Array(items) => array(items, ctx, rec),
            Expr::MergeDicts(args) => merge_dicts(args, ctx, rec),
            Expr::ExcludeKeys(obj, keys) => exclude_keys(obj, keys, ctx, rec),
            Expr::FlattenDict(sep, b) => flatten_dict(sep, &b[0], &b[1], ctx, rec),
            Expr::ParseJson(a) => parse_json(a, ctx, rec),
            Expr::TypeOf(a) => owned(V::str(a.eval(ctx, rec).map_or("null", |v| v.type_name()))),
            // Logic.
            Expr::Cond(pairs) => pairs
                .iter()
                .find(|(c, _)| truthy(c.eval(ctx, rec).as_deref()))
                .and_then(|(_, v)| v.eval(ctx, rec)),
            Expr::IfElse(b) => {
                let [cond, then, otherwise] = &**b;
                if truthy(cond.eval(ctx, rec).as_deref()) {
                    then.eval(ctx, rec)
                } else {
                    otherwise.eval(ctx, rec)
                }
            }
            Expr::Not(a) => owned(V::Bool(!truthy(a.eval(ctx, rec).as_deref()))),
            Expr::And(args) => owned(V::Bool(
                args.iter().all(|a| truthy(a.eval(ctx, rec).as_deref())),
            )),
            Expr::Or(args) => owned(V::Bool(
                args.iter().any(|a| truthy(a.eval(ctx, rec).as_deref())),
            )),
            Expr::Equals(b) => equals(&b[0], &b[1], ctx, rec),
            Expr::SampleMd5(b) => sample(&b[0], &b[1], ctx, rec),
            // Strings.
            Expr::Concat(args) => concat(args, ctx, rec),
            Expr::Lower(a) => owned(V::str(a.eval(ctx, rec)?.as_str()?.to_lowercase())),
            Expr::Upper(a) => owned(V::str(a.eval(ctx, rec)?.as_str()?.to_uppercase())),
            Expr::Trim(a) => trim(a, ctx, rec),
            Expr::Split(sep, a) => split(sep, a, ctx, rec),
            Expr::Contains(needle, a) => owned(V::Bool(
                a.eval(ctx, rec)
                    .as_deref()
                    .and_then(V::as_str)
                    .is_some_and(|s| s.contains(needle.as_str())),
            )),
            Expr::Replace(r) => replace(r, ctx, rec),
            Expr::Substring(b) => substring(b, ctx, rec),
            // Arithmetic.
            Expr::Arith(op, args) => arith(*op, args, ctx, rec).map(Cow::Owned),
            Expr::Round(a) => round(a, ctx, rec),
            // Time.
            Expr::IsoToMs(a) => owned(V::int(time::iso_to_ms(a.eval(ctx, rec)?.as_str()?)?)),
            Expr::MsToIso(a) => ms_to_iso(a, ctx, rec),
            Expr::ParseTime(p, a) => owned(V::int(p.parse_ms(a.eval(ctx, rec)?.as_str()?)?)),
            Expr::IsoNow => owned(V::str(time::ms_to_iso(now_ms())?)),
            Expr::MsNow => owned(V::int(now_ms())),
            Expr::Int96(a) => owned(V::int(time::int96_to_ms(a.eval(ctx, rec)?.as_str()?)?)),
            Expr::Invalid => None,
        }
    }
}

// Reading the record.

/// A string SD: the whole key first, then (when it has dots) the walk segment by segment.
#[inline]
fn field<'r, 'a>(
    key: &'r str,
    slot: Option<u32>,
    dotted: &'r Option<(Vec<String>, Option<u32>)>,
    raw_ok: bool,
    ctx: &'r V<'a>,
    rec: &'r Record<'a>,
) -> Evaluated<'r, 'a> {
    let whole = match slot {
        Some(id) => rec.slot(id, key),
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

/// `["path", step...]`: each step is evaluated against the value the previous one gave.
#[inline]
fn path<'r, 'a>(steps: &'r [Expr], ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
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

// Structure.

fn dict<'r, 'a>(
    entries: &'r [(&'static str, Expr)],
    ctx: &'r V<'a>,
    rec: &'r Record<'a>,
) -> Evaluated<'r, 'a> {
    owned(V::Obj(
        entries
            .iter()
            .filter_map(|(k, e)| {
                e.eval(ctx, rec)
                    .map(|v| (Cow::Borrowed(*k), v.into_owned()))
            })
            .collect(),
    ))
}

fn array<'r, 'a>(items: &'r [Expr], ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
    owned(V::Arr(
        items
            .iter()
            .filter_map(|e| e.eval(ctx, rec))
            .map(Cow::into_owned)
            .collect(),
    ))
}

fn merge_dicts<'r, 'a>(args: &'r [Expr], ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
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

fn exclude_keys<'r, 'a>(
    obj: &'r Expr,
    keys: &[String],
    ctx: &'r V<'a>,
    rec: &'r Record<'a>,
) -> Evaluated<'r, 'a> {
    match obj.eval(ctx, rec)?.as_ref() {
        V::Obj(o) => owned(V::Obj(
            o.iter()
                .filter(|(k, _)| !keys.iter().any(|x| x == k))
                .cloned()
                .collect(),
        )),
        _ => None,
    }
}

fn flatten_dict<'r, 'a>(
    sep: &str,
    depth: &'r Expr,
    obj: &'r Expr,
    ctx: &'r V<'a>,
    rec: &'r Record<'a>,
) -> Evaluated<'r, 'a> {
    let depth = integer_of(depth.eval(ctx, rec).as_deref())?;
    match obj.eval(ctx, rec)?.as_ref() {
        V::Obj(o) => {
            let mut out = Vec::with_capacity(o.len());
            flatten_into(o, "", sep, if depth <= 0 { -1 } else { depth }, &mut out);
            owned(V::Obj(out))
        }
        _ => None,
    }
}

fn parse_json<'r, 'a>(arg: &'r Expr, ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
    let v = arg.eval(ctx, rec)?;
    let s = v.as_str()?;
    value::parse_value(s)
        .ok()
        .map(|v| Cow::Owned(v.into_static()))
}

// Logic.

fn equals<'r, 'a>(
    x: &'r Expr,
    y: &'r Expr,
    ctx: &'r V<'a>,
    rec: &'r Record<'a>,
) -> Evaluated<'r, 'a> {
    let x = x.eval(ctx, rec);
    let y = y.eval(ctx, rec);
    let null = V::Null;
    owned(V::Bool(json_eq(
        x.as_deref().unwrap_or(&null),
        y.as_deref().unwrap_or(&null),
    )))
}

/// `["sample_md5", PERCENT, KEY]`: see [`sample_md5`].
fn sample<'r, 'a>(
    percent: &'r Expr,
    key: &'r Expr,
    ctx: &'r V<'a>,
    rec: &'r Record<'a>,
) -> Evaluated<'r, 'a> {
    let pct = percent.eval(ctx, rec);
    let key = key.eval(ctx, rec);
    let hit = match (pct.as_deref(), key.as_deref()) {
        (Some(p), Some(k)) => match (numeric(Some(p)), text_of(Some(k))) {
            (Some(p), Some(k)) => sample_md5(p.as_f64(), &k),
            _ => false,
        },
        _ => false,
    };
    owned(V::Bool(hit))
}

// Strings.

fn concat<'r, 'a>(args: &'r [Expr], ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
    let mut s = String::new();
    for a in args {
        let v = a.eval(ctx, rec)?;
        s.push_str(&text_of(Some(&v))?);
    }
    owned(V::Str(Cow::Owned(s)))
}

fn trim<'r, 'a>(arg: &'r Expr, ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
    let v = arg.eval(ctx, rec)?;
    let s = v.as_str()?;
    if s.len() == s.trim().len() {
        Some(v)
    } else {
        owned(V::str(s.trim().to_string()))
    }
}

fn split<'r, 'a>(
    sep: &str,
    arg: &'r Expr,
    ctx: &'r V<'a>,
    rec: &'r Record<'a>,
) -> Evaluated<'r, 'a> {
    owned(V::Arr(
        arg.eval(ctx, rec)?
            .as_str()?
            .split(sep)
            .map(|p| V::str(p.to_string()))
            .collect(),
    ))
}

fn replace<'r, 'a>(r: &'r Replace, ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
    let v = r.arg.eval(ctx, rec)?;
    let s = v.as_str()?;
    owned(V::str(r.apply(s)?))
}

/// `["substring", FROM, TO, SD]`: characters `FROM..TO`.
fn substring<'r, 'a>(
    args: &'r [Expr; 3],
    ctx: &'r V<'a>,
    rec: &'r Record<'a>,
) -> Evaluated<'r, 'a> {
    let [from, to, arg] = args;
    let from = integer_of(from.eval(ctx, rec).as_deref())?.max(0) as usize;
    let to = integer_of(to.eval(ctx, rec).as_deref())?.max(0) as usize;
    let v = arg.eval(ctx, rec)?;
    let s = v.as_str()?;
    owned(V::str(
        s.chars()
            .skip(from)
            .take(to.saturating_sub(from))
            .collect::<String>(),
    ))
}

// Arithmetic (`arith` is below).

fn round<'r, 'a>(arg: &'r Expr, ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
    match numeric(arg.eval(ctx, rec).as_deref())? {
        Num::F(f) => {
            let r = f.round();
            (r.abs() < 9.2e18).then(|| Cow::Owned(V::int(r as i64)))
        }
        n @ Num::D(_) => {
            let r = n.as_f64().round();
            (r.abs() < 9.2e18).then(|| Cow::Owned(V::int(r as i64)))
        }
        n => owned(V::Num(n)),
    }
}

// Time.

fn ms_to_iso<'r, 'a>(arg: &'r Expr, ctx: &'r V<'a>, rec: &'r Record<'a>) -> Evaluated<'r, 'a> {
    let ms = match numeric(Some(arg.eval(ctx, rec)?.as_ref()))? {
        Num::F(f) if f.is_finite() && f.abs() < 9.0e15 => f.trunc() as i64,
        Num::F(_) => return None,
        n @ Num::D(_) => match n.as_f64() {
            f if f.is_finite() && f.abs() < 9.0e15 => f.trunc() as i64,
            _ => return None,
        },
        n => n.as_i64()?,
    };
    owned(V::str(time::ms_to_iso(ms)?))
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
    use crate::datalang::compile::Compiler;
    use crate::datalang::record::KeyIds;

    fn eval(sd: &str, record: &str) -> Option<String> {
        let mut errors = Vec::new();
        let mut c = Compiler {
            errors: &mut errors,
            record_keys: KeyIds::default(),
        };
        let e = c.compile(&serde_json::from_str(sd).unwrap(), "f", true);
        assert!(errors.is_empty(), "{errors:?}");
        let rec = Record::new(value::parse_value(record).unwrap());
        e.eval(&rec.value, &rec).map(|v| v.to_json())
    }

    #[test]
    fn replacement_follows_java_rules() {
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
}
