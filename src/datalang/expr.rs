//! The tree a SOURCE_DESCRIPTION compiles to: [`Expr`] and the operator names.

use super::record::V;
use super::time::TimePattern;

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
    pub(super) regex: fancy_regex::Regex,
    pub(super) replacement: Vec<Piece>,
    pub(super) arg: Expr,
}

/// A piece of a Java-style replacement string.
#[derive(Debug, PartialEq)]
pub(super) enum Piece {
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
