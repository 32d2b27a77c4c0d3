//! The converter file (Amplitude's S3 Import format): model and load-time checks.
//! One file (~620 lines): a third of it is the table tests of the load errors.
//!
//! Loading walks the JSON by hand rather than with `deny_unknown_fields`, so that `validate`
//! can report every problem at once, each with its JSON path.

use std::fmt;

use serde_json::{Map, Value as J};

/// Defined with the SD compiler, which reports its problems the same way.
pub use crate::datalang::ConfigError;
use crate::datalang::{child_path, did_you_mean, Compiler, Expr, KeyIds, Keys};

/// Every problem found while loading; displays the first, `validate` lists them all.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("invalid converter"),
            [one] => write!(f, "{one}"),
            [first, rest @ ..] => write!(
                f,
                "{first} (and {} more problem(s); run `s3-import validate`)",
                rest.len()
            ),
        }
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Json,
    Csv,
    Parquet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Event,
    UserProperties,
    GroupProperties,
    Profiles,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    AppendOnly,
    Mirror,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub escape: Option<u8>,
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            quote: b'"',
            escape: None,
            header: true,
        }
    }
}

/// A loaded converter file: everything checked, every SD compiled.
#[derive(Debug)]
pub struct ConverterFile {
    pub name: Vec<String>,
    pub file_type: FileType,
    pub compression: Compression,
    pub csv: CsvOptions,
    pub data_type: DataType,
    pub strategy: Strategy,
    pub ignore_flag: Option<String>,
    /// `convertToAmplitudeFunc`, in file order.
    pub fields: Vec<(String, Expr)>,
    filter: Option<fancy_regex::Regex>,
    /// The top-level record keys any SD can read; the parser skips the rest.
    pub record_keys: Keys,
}

impl ConverterFile {
    /// Parses and checks a converter file.
    pub fn load(text: &str) -> Result<Self, ConfigErrors> {
        let root: J = serde_json::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                "",
                format!("converter file is not valid JSON: {e}"),
            )])
        })?;
        let mut errors = Vec::new();
        let file = Loader {
            errors: &mut errors,
        }
        .root(&root);
        match file {
            Some(f) if errors.is_empty() => Ok(f),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Whether `key` matches `keyValidatorConfig.filterPattern` (whole key, as Java `matches()`).
    pub fn key_matches(&self, key: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|re| re.is_match(key).unwrap_or(false))
    }

    pub fn filter_pattern(&self) -> Option<&str> {
        self.filter.as_ref().map(|re| {
            let s = re.as_str();
            &s[4..s.len() - 2]
        })
    }
}

struct Loader<'e> {
    errors: &'e mut Vec<ConfigError>,
}

fn kind_of(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "an array",
        J::Object(_) => "an object",
    }
}

impl Loader<'_> {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn object<'v>(&mut self, v: &'v J, path: &str) -> Option<&'v Map<String, J>> {
        match v {
            J::Object(m) => Some(m),
            other => {
                self.err(path, format!("expected an object, got {}", kind_of(other)));
                None
            }
        }
    }

    fn unknown_keys(&mut self, m: &Map<String, J>, path: &str, known: &[&'static str]) {
        for k in m.keys() {
            if !known.contains(&k.as_str()) {
                let hint = did_you_mean(k, known)
                    .map(|n| format!(" (did you mean \"{n}\"?)"))
                    .unwrap_or_default();
                self.err(&child_path(path, k), format!("unknown key {k:?}{hint}"));
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        m: &Map<String, J>,
        path: &str,
        key: &str,
        options: &[(&str, T)],
        default: Option<T>,
    ) -> Option<T> {
        let p = child_path(path, key);
        let names = || {
            options
                .iter()
                .map(|(n, _)| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match m.get(key) {
            None => {
                if default.is_none() {
                    self.err(&p, format!("missing; one of {}", names()));
                }
                default
            }
            Some(J::String(s)) => {
                let found = options
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(s))
                    .map(|(_, t)| *t);
                if found.is_none() {
                    self.err(&p, format!("unknown value {s:?}; one of {}", names()));
                }
                found
            }
            Some(other) => {
                self.err(
                    &p,
                    format!(
                        "expected a string, one of {}, got {}",
                        names(),
                        kind_of(other)
                    ),
                );
                None
            }
        }
    }

    fn root(&mut self, root: &J) -> Option<ConverterFile> {
        let m = self.object(root, "")?;
        self.unknown_keys(
            m,
            "",
            &["config_name", "converterConfig", "keyValidatorConfig"],
        );
        let name = match m.get("config_name") {
            None => Vec::new(),
            Some(J::String(s)) => vec![s.clone()],
            Some(J::Array(a)) if a.iter().all(J::is_string) => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                self.err("config_name", "expected a string or an array of strings");
                Vec::new()
            }
        };
        let filter = m
            .get("keyValidatorConfig")
            .and_then(|kv| self.key_validator(kv));
        let Some(cc) = m.get("converterConfig") else {
            self.err("converterConfig", "missing; the converter needs converterConfig with fileType, compressionType and convertToAmplitudeFunc");
            return None;
        };
        let mut file = self.converter_config(cc)?;
        file.name = name;
        file.filter = filter;
        Some(file)
    }

    fn key_validator(&mut self, kv: &J) -> Option<fancy_regex::Regex> {
        let path = "keyValidatorConfig";
        let m = self.object(kv, path)?;
        self.unknown_keys(m, path, &["filterPattern"]);
        let p = child_path(path, "filterPattern");
        match m.get("filterPattern") {
            None => None,
            Some(J::String(pattern)) => {
                // Compile the pattern alone first, so error positions refer to what was written.
                let checked = match fancy_regex::Regex::new(pattern) {
                    Ok(_) => fancy_regex::Regex::new(&format!("^(?:{pattern})$")),
                    Err(e) => Err(e),
                };
                match checked {
                    Ok(re) => Some(re),
                    Err(e) => {
                        self.err(&p, format!("invalid regex {pattern:?}: {e}"));
                        None
                    }
                }
            }
            Some(other) => {
                self.err(
                    &p,
                    format!("expected a regex string, got {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn csv_options(&mut self, v: &J, path: &str) -> CsvOptions {
        let mut opts = CsvOptions::default();
        let Some(m) = self.object(v, path) else {
            return opts;
        };
        self.unknown_keys(m, path, &["delimiter", "quote", "escape", "header"]);
        let one_char = |l: &mut Self, key: &str, nullable: bool| -> Option<Option<u8>> {
            let p = child_path(path, key);
            match m.get(key)? {
                J::Null if nullable => Some(None),
                J::String(s) if s.len() == 1 && s.is_ascii() => Some(Some(s.as_bytes()[0])),
                J::String(s) if s == "\\t" => Some(Some(b'\t')),
                other => {
                    l.err(
                        &p,
                        format!(
                            "expected one ASCII character{}, got {other}",
                            if nullable { " or null" } else { "" }
                        ),
                    );
                    None
                }
            }
        };
        if let Some(Some(d)) = one_char(self, "delimiter", false) {
            opts.delimiter = d;
        }
        if let Some(Some(q)) = one_char(self, "quote", false) {
            opts.quote = q;
        }
        if let Some(e) = one_char(self, "escape", true) {
            opts.escape = e;
        }
        match m.get("header") {
            None => {}
            Some(J::Bool(b)) => opts.header = *b,
            Some(other) => self.err(
                &child_path(path, "header"),
                format!("expected true or false, got {other}"),
            ),
        }
        if opts.delimiter == opts.quote {
            self.err(path, "delimiter and quote must differ");
        }
        opts
    }

    fn converter_config(&mut self, cc: &J) -> Option<ConverterFile> {
        let path = "converterConfig";
        let m = self.object(cc, path)?;
        self.unknown_keys(
            m,
            path,
            &[
                "fileType",
                "compressionType",
                "ignoreEventFlag",
                "csv",
                "dataType",
                "importStrategy",
                "convertToAmplitudeFunc",
            ],
        );
        let file_type = self.choice(
            m,
            path,
            "fileType",
            &[
                ("json", FileType::Json),
                ("csv", FileType::Csv),
                ("parquet", FileType::Parquet),
            ],
            None,
        );
        let compression = self.choice(
            m,
            path,
            "compressionType",
            &[
                ("none", Compression::None),
                ("gzip", Compression::Gzip),
                ("zstd", Compression::Zstd),
                ("auto", Compression::Auto),
            ],
            None,
        );
        if file_type == Some(FileType::Parquet) {
            if let Some(c @ (Compression::Gzip | Compression::Zstd)) = compression {
                let name = if c == Compression::Gzip {
                    "gzip"
                } else {
                    "zstd"
                };
                self.err(
                    &child_path(path, "compressionType"),
                    format!("\"{name}\" does not apply to fileType \"parquet\": Parquet pages carry their own compression; use \"none\" (or \"auto\")"),
                );
            }
        }
        let data_type = self.choice(
            m,
            path,
            "dataType",
            &[
                ("event", DataType::Event),
                ("user_properties", DataType::UserProperties),
                ("group_properties", DataType::GroupProperties),
                ("profiles", DataType::Profiles),
            ],
            Some(DataType::Event),
        );
        let explicit_strategy = m.contains_key("importStrategy");
        let default_strategy = if data_type == Some(DataType::Profiles) {
            Strategy::Mirror
        } else {
            Strategy::AppendOnly
        };
        let strategy = self.choice(
            m,
            path,
            "importStrategy",
            &[
                ("append_only", Strategy::AppendOnly),
                ("mirror", Strategy::Mirror),
            ],
            Some(default_strategy),
        );
        match (data_type, strategy) {
            (Some(DataType::Profiles), Some(Strategy::AppendOnly)) if explicit_strategy => {
                self.err(
                    &child_path(path, "importStrategy"),
                    "dataType \"profiles\" supports only the \"mirror\" strategy",
                );
            }
            (
                Some(DataType::UserProperties | DataType::GroupProperties),
                Some(Strategy::Mirror),
            ) => {
                self.err(
                    &child_path(path, "importStrategy"),
                    "user and group properties support only the \"append_only\" strategy",
                );
            }
            _ => {}
        }
        let csv = m
            .get("csv")
            .map(|v| self.csv_options(v, &child_path(path, "csv")))
            .unwrap_or_default();

        let (fields, record_keys) = self.fields(m, path);
        let ignore_flag = self.ignore_flag(m, path, &fields);
        Some(ConverterFile {
            name: Vec::new(),
            file_type: file_type?,
            compression: compression?,
            csv,
            data_type: data_type?,
            strategy: strategy?,
            ignore_flag,
            fields,
            filter: None,
            record_keys,
        })
    }

    /// `convertToAmplitudeFunc`: every field's SD compiled, and the top-level record keys
    /// they read.
    fn fields(&mut self, m: &Map<String, J>, path: &str) -> (Vec<(String, Expr)>, Keys) {
        let func_path = child_path(path, "convertToAmplitudeFunc");
        let mut compiler = Compiler {
            errors: &mut *self.errors,
            record_keys: KeyIds::default(),
        };
        let mut fields: Vec<(String, Expr)> = match m.get("convertToAmplitudeFunc") {
            None => {
                compiler.errors.push(ConfigError::new(&func_path, "missing; map Amplitude fields to your record, e.g. {\"event_type\": \"action\", \"user_id\": \"uid\"}"));
                Vec::new()
            }
            Some(J::Object(f)) => f
                .iter()
                .map(|(k, sd)| {
                    (
                        k.clone(),
                        compiler.compile(sd, &child_path(&func_path, k), true),
                    )
                })
                .collect(),
            Some(other) => {
                compiler.errors.push(ConfigError::new(
                    &func_path,
                    format!(
                        "expected an object of field → SOURCE_DESCRIPTION, got {}",
                        kind_of(other)
                    ),
                ));
                Vec::new()
            }
        };
        // A field that passes a top-level record value through whole (`"event_properties":
        // "event_properties"`) lets the parser keep that value as text: no tree is built and
        // it is written out as it came. Other reads of the same key parse it when they run.
        let mut raw = vec![false; compiler.record_keys.len()];
        for (_, expr) in fields.iter_mut() {
            if let Expr::Field {
                slot: Some(id),
                raw_ok,
                ..
            } = expr
            {
                *raw_ok = true;
                raw[*id as usize] = true;
            }
        }
        let record_keys = Keys::Only {
            ids: compiler.record_keys,
            raw,
        };

        (fields, record_keys)
    }

    /// `ignoreEventFlag`: the name of a computed field that, when true, skips the record.
    fn ignore_flag(
        &mut self,
        m: &Map<String, J>,
        path: &str,
        fields: &[(String, Expr)],
    ) -> Option<String> {
        match m.get("ignoreEventFlag") {
            None => None,
            Some(J::String(flag)) => {
                if m.get("convertToAmplitudeFunc").is_some_and(J::is_object)
                    && !fields.iter().any(|(k, _)| k == flag)
                {
                    self.err(
                        &child_path(path, "ignoreEventFlag"),
                        format!("names {flag:?}, but convertToAmplitudeFunc has no such field to compute it"),
                    );
                }
                Some(flag.clone())
            }
            Some(other) => {
                self.err(
                    &child_path(path, "ignoreEventFlag"),
                    format!("expected a field name, got {}", kind_of(other)),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
