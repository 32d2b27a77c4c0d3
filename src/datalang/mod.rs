//! The SOURCE_DESCRIPTION expression language: compiled once from JSON (errors carry JSON
//! paths), evaluated per record over borrowed values without re-reading JSON or regexes.
//!
//! By phase: `expr` is the compiled tree, `compile` builds it from JSON, `eval` runs it
//! on a record. Record values ([`V`], defined in `record`) are read by [`value`]: the scanner
//! (`scan`) first, serde_json (`fallback`) for the rest.

mod coerce;
mod compile;
mod diagnostics;
mod eval;
mod expr;
mod fallback;
mod record;
mod scan;
pub mod time;
pub mod value;

pub use coerce::{parse_num, text_of, truthy};
pub use compile::Compiler;
pub use diagnostics::{child_path, did_you_mean, ConfigError};
pub use eval::sample_md5;
pub use expr::{ArithOp, Expr, Replace, OPERATORS};
pub use record::{decimal_key, decimal_text, push_made, Dec, KeyIds, Keys, Num, Record, V};
pub(crate) use record::{IN_PLACE, NO_SLOT};
pub use scan::{find_special, special_in_string};
pub use value::json_eq;
