//! The work of the `s3-import` subcommands (convert, preview, validate, send) over any reader and writer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::path::Path;

use serde::{Serialize, Serializer};

use crate::convert::{Converter, Origin, Outcome, Payload};
use crate::datalang::Keys;
use crate::decode::{convert_chunks, read_records, visit_chunk, Chunk, DecodeError, Limits, Rec};
use crate::json_out::{self, Style};
use crate::report::Counts;

/// Exit status for bad input (converter, data, key).
pub const EXIT_BAD_INPUT: i32 = 2;

/// A size as the command line takes it: a whole number of bytes, optionally followed by a
/// unit (case-insensitive, spaces allowed): `B`; `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` (powers
/// of 1000); `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024). E.g. `10MiB`, `64GiB`, `500MB`, `1024`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 10MiB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Loads a converter file; the error names the file.
pub fn load_converter(path: &Path) -> Result<Converter, String> {
    let text = read_converter_file(path)?;
    Converter::load(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_converter_file(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the converter file: {e}", path.display()))
}

/// `validate`: loads a converter file and lists every problem, each naming the file.
pub fn validate(path: &Path) -> Result<(), Vec<String>> {
    let text = read_converter_file(path).map_err(|e| vec![e])?;
    match Converter::load(&text) {
        Ok(_) => Ok(()),
        Err(errors) => Err(errors
            .0
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect()),
    }
}

/// Opens a local file for reading; the error names the file.
pub fn open_file(path: &str) -> Result<File, String> {
    File::open(path).map_err(|e| format!("{path}: cannot open: {e}"))
}

/// The input of `convert` and `preview`: the file, or standard input for `-` or no file.
pub fn open_input(file: Option<&str>) -> Result<Box<dyn Read + Send>, String> {
    match file {
        None | Some("-") => Ok(Box::new(io::stdin())),
        Some(path) => open_file(path).map(|f| Box::new(f) as Box<dyn Read + Send>),
    }
}

/// Checks `key` against the converter's `keyValidatorConfig.filterPattern`; the error says
/// which key and pattern. `convert` and `send` refuse such a key, `preview` warns about it.
pub fn check_filter_pattern(converter: &Converter, key: &str) -> Result<(), String> {
    let file = &converter.file;
    if file.key_matches(key) {
        Ok(())
    } else {
        Err(format!(
            "key {key:?} does not match keyValidatorConfig.filterPattern {:?}",
            file.filter_pattern().unwrap_or_default()
        ))
    }
}

/// JSON with `", "` and `": "` separators, the form `convert` and `preview --json` print.
pub struct SpacedFormatter;

impl serde_json::ser::Formatter for SpacedFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Writes `value` as spaced JSON.
pub fn write_spaced<W: Write, T: Serialize + ?Sized>(w: &mut W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, SpacedFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)
}

fn spaced<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let _ = write_spaced(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

/// The summary line of `convert`.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub converted: u64,
    pub skipped: u64,
    pub invalid: u64,
    pub payloads: u64,
    pub dropped_fields: BTreeMap<String, u64>,
}

/// Everything `convert` needs besides the bytes.
pub struct ConvertRun<'c> {
    pub converter: &'c Converter,
    pub bucket: &'c str,
    pub key: &'c str,
    pub limits: Limits,
    pub threads: usize,
}

/// How a `convert` run ended.
#[derive(Debug)]
pub enum ConvertEnd {
    /// The whole input was read.
    Done(Summary),
    /// The input broke off (corrupt, too large, unreadable); records before it were written.
    Failed(Summary, DecodeError),
    /// Standard output went away (e.g. `| head`).
    OutputClosed(Summary, io::Error),
}

fn write_converted(buf: &mut Vec<u8>, n: u64, payloads: &[Payload<'_, '_>]) {
    for p in payloads {
        buf.extend_from_slice(b"{\"n\": ");
        buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        buf.extend_from_slice(b", \"outcome\": \"converted\", \"kind\": \"");
        buf.extend_from_slice(p.kind.as_str().as_bytes());
        buf.extend_from_slice(b"\", \"payload\": ");
        json_out::write_object(
            buf,
            p.fields.iter().map(|(k, v)| (*k, v.as_ref())),
            Style::Spaced,
        );
        buf.extend_from_slice(b"}\n");
    }
}

impl Summary {
    fn merge(&mut self, other: Summary) {
        self.records += other.records;
        self.converted += other.converted;
        self.skipped += other.skipped;
        self.invalid += other.invalid;
        self.payloads += other.payloads;
        for (k, v) in other.dropped_fields {
            *self.dropped_fields.entry(k).or_insert(0) += v;
        }
    }
}

/// Converts one record: its output line(s) into `buf`, its outcome into `summary`.
fn convert_record(
    run: &ConvertRun<'_>,
    n: u64,
    rec: Rec<'_>,
    buf: &mut Vec<u8>,
    summary: &mut Summary,
) {
    summary.records += 1;
    match rec {
        Rec::Ok { record, .. } => {
            let conversion = run.converter.convert(
                record,
                n,
                Origin {
                    bucket: run.bucket,
                    key: run.key,
                },
            );
            for field in &conversion.dropped {
                match summary.dropped_fields.get_mut(*field) {
                    Some(count) => *count += 1,
                    None => {
                        summary.dropped_fields.insert((*field).to_string(), 1);
                    }
                }
            }
            match conversion.outcome {
                Outcome::Converted(payloads) => {
                    summary.converted += 1;
                    summary.payloads += payloads.len() as u64;
                    write_converted(buf, n, &payloads);
                }
                Outcome::Skipped => {
                    summary.skipped += 1;
                    let _ = writeln!(buf, "{{\"n\": {n}, \"outcome\": \"skipped\"}}");
                }
                Outcome::Invalid(reason) => {
                    summary.invalid += 1;
                    write_invalid(buf, n, &reason);
                }
            }
        }
        Rec::Invalid { reason, .. } => {
            summary.invalid += 1;
            write_invalid(buf, n, &reason);
        }
    }
}

/// Converts every record of `input`, one JSON line per payload or outcome to `out`.
/// JSON lines with `threads` ≥ 2 are converted chunk by chunk on `threads` workers while
/// another thread decompresses; the output order is the record order either way.
pub fn convert<R: Read + Send, W: Write>(
    run: &ConvertRun<'_>,
    input: R,
    out: &mut W,
) -> ConvertEnd {
    let mut summary = Summary::default();
    let mut write_err: Option<io::Error> = None;
    let file = &run.converter.file;
    let result = if run.threads >= 2 && crate::decode::parallel_capable(file) {
        let keys = &file.record_keys;
        let work = |chunk: &Chunk| {
            let mut buf = Vec::with_capacity(chunk.data.len() + chunk.data.len() / 4);
            let mut part = Summary::default();
            let _ = visit_chunk(chunk, keys, run.limits, &mut |n, rec| {
                convert_record(run, n, rec, &mut buf, &mut part);
                ControlFlow::Continue(())
            });
            (buf, part)
        };
        convert_chunks(input, file, run.limits, run.threads, work, |(buf, part)| {
            summary.merge(part);
            match out.write_all(&buf) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    write_err = Some(e);
                    ControlFlow::Break(())
                }
            }
        })
    } else {
        let mut buf = Vec::with_capacity(OUT_BUF);
        let r = read_records(
            input,
            file,
            &file.record_keys,
            run.limits,
            run.threads,
            |n, rec| {
                convert_record(run, n, rec, &mut buf, &mut summary);
                if buf.len() < OUT_BUF {
                    return ControlFlow::Continue(());
                }
                let written = out.write_all(&buf);
                buf.clear();
                match written {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        write_err = Some(e);
                        ControlFlow::Break(())
                    }
                }
            },
        );
        if write_err.is_none() {
            if let Err(e) = out.write_all(&buf) {
                write_err = Some(e);
            }
        }
        r
    };
    let flushed = out.flush();
    match (write_err.or(flushed.err()), result) {
        (Some(e), _) => ConvertEnd::OutputClosed(summary, e),
        (None, Ok(_)) => ConvertEnd::Done(summary),
        (None, Err(e)) => ConvertEnd::Failed(summary, e),
    }
}

/// Output is handed to the writer in pieces of about this size.
const OUT_BUF: usize = 256 << 10;

fn write_invalid(buf: &mut Vec<u8>, n: u64, reason: &str) {
    let _ = write!(buf, "{{\"n\": {n}, \"outcome\": \"invalid\", \"error\": ");
    json_out::write_str(buf, reason);
    buf.extend_from_slice(b"}\n");
}

/// One previewed record.
#[derive(Serialize)]
pub struct PreviewItem {
    pub n: u64,
    pub source: serde_json::Value,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payloads: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub kinds: Vec<&'static str>,
}

fn to_json_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The first `limit` records of `input`, each beside what it converts to.
pub fn preview<R: Read + Send>(
    run: &ConvertRun<'_>,
    input: R,
    limit: u64,
) -> Result<Vec<PreviewItem>, DecodeError> {
    let mut items = Vec::new();
    let origin = Origin {
        bucket: run.bucket,
        key: run.key,
    };
    if limit == 0 {
        return Ok(items);
    }
    read_records(
        input,
        &run.converter.file,
        &Keys::All,
        run.limits,
        1,
        |n, rec| {
            let item = match rec {
                Rec::Ok { record, .. } => {
                    let source = to_json_value(&record.value);
                    match run.converter.convert(record, n, origin).outcome {
                        Outcome::Converted(payloads) => PreviewItem {
                            n,
                            source,
                            outcome: "converted",
                            kinds: payloads.iter().map(|p| p.kind.as_str()).collect(),
                            payloads: Some(payloads.iter().map(to_json_value).collect()),
                            error: None,
                        },
                        Outcome::Skipped => PreviewItem {
                            n,
                            source,
                            outcome: "skipped",
                            payloads: Some(Vec::new()),
                            error: None,
                            kinds: Vec::new(),
                        },
                        Outcome::Invalid(e) => PreviewItem {
                            n,
                            source,
                            outcome: "invalid",
                            payloads: None,
                            error: Some(e),
                            kinds: Vec::new(),
                        },
                    }
                }
                Rec::Invalid { reason, raw } => PreviewItem {
                    n,
                    source: serde_json::Value::String(String::from_utf8_lossy(raw).into_owned()),
                    outcome: "invalid",
                    payloads: None,
                    error: Some(reason),
                    kinds: Vec::new(),
                },
            };
            items.push(item);
            if items.len() as u64 >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    Ok(items)
}

/// `line` padded or cut (with `…`) to exactly `width` characters.
fn clip(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        let pad = width - line.chars().count();
        return format!("{line}{}", " ".repeat(pad));
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` broken into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// The preview for a person: source and conversion side by side, `width` columns wide.
pub fn render_preview(items: &[PreviewItem], width: usize) -> String {
    let width = width.max(60);
    let col = (width - 3) / 2;
    let mut out = String::new();
    for item in items {
        let title = match item.outcome {
            "converted" => format!("record {} · converted → {}", item.n, item.kinds.join(", ")),
            other => format!("record {} · {other}", item.n),
        };
        let _ = writeln!(
            out,
            "── {title} {}",
            "─".repeat(width.saturating_sub(title.chars().count() + 4))
        );
        let left: Vec<String> = match &item.source {
            serde_json::Value::String(raw)
                if item.error.is_some() && item.payloads.is_none() && !raw.starts_with('{') =>
            {
                wrap(raw, col)
            }
            v => serde_json::to_string_pretty(v)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect(),
        };
        let right: Vec<String> = match (&item.payloads, &item.error) {
            (_, Some(e)) => wrap(&format!("invalid: {e}"), col),
            (Some(p), None) if p.is_empty() => {
                vec!["skipped (ignoreEventFlag is true)".to_string()]
            }
            (Some(p), None) => p
                .iter()
                .flat_map(|v| {
                    serde_json::to_string_pretty(v)
                        .unwrap_or_default()
                        .lines()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect(),
            (None, None) => Vec::new(),
        };
        let _ = writeln!(
            out,
            "{} │ {}",
            clip("source", col),
            if item.outcome == "converted" {
                "sent"
            } else {
                "result"
            }
        );
        for row in 0..left.len().max(right.len()) {
            let source = left.get(row).map_or("", String::as_str);
            let result = right.get(row).map_or("", String::as_str);
            let _ = writeln!(
                out,
                "{} │ {}",
                clip(source, col),
                clip(result, col).trim_end()
            );
        }
        out.push('\n');
    }
    if items.is_empty() {
        out.push_str("(no records)\n");
    }
    out
}

/// The spaced JSON of the preview's `--json` form.
pub fn preview_json(items: &[PreviewItem]) -> String {
    spaced(items)
}

/// The summary line of `convert`.
pub fn summary_line(summary: &Summary) -> String {
    spaced(summary)
}

/// The outcome of `send`: what conversion and delivery made of every record.
///
/// As JSON (`send --json`), the counts' keys come first, at the top level, then `fatal` (when
/// delivery stopped) and `errors`. `duplicates` appears only when it is not 0, which it always
/// is: `send` has no dedupe table, the endpoint absorbs a second send of an insert_id.
#[derive(Debug, Default, Serialize)]
pub struct SendSummary {
    #[serde(flatten, serialize_with = "counts_without_zero_duplicates")]
    pub counts: Counts,
    /// Why delivery stopped before the end, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    /// The first problems, with their record numbers.
    pub errors: Vec<String>,
}

/// `counts` as their JSON object (in field order), without `duplicates` when it is 0.
fn counts_without_zero_duplicates<S: Serializer>(
    counts: &Counts,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut value = serde_json::to_value(counts).map_err(serde::ser::Error::custom)?;
    if counts.duplicates == 0 {
        if let Some(fields) = value.as_object_mut() {
            fields.shift_remove("duplicates");
        }
    }
    value.serialize(serializer)
}

const MAX_ERRORS: usize = 20;

/// Converts a local file and delivers its payloads (`send`): conversion runs on a blocking
/// thread and feeds the sender through a bounded channel, so memory stays bounded.
pub async fn send<R: Read + Send + 'static>(
    converter: std::sync::Arc<Converter>,
    bucket: String,
    key: String,
    limits: Limits,
    input: R,
    settings: &crate::sink::SinkSettings,
    deadline: tokio::time::Instant,
) -> Result<SendSummary, DecodeError> {
    use crate::sink::{deliver_stream, Fate, Item};
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(4096);
    let conversion = tokio::task::spawn_blocking(move || {
        let mut summary = SendSummary::default();
        let origin = Origin {
            bucket: &bucket,
            key: &key,
        };
        let file = &converter.file;
        let read = read_records(input, file, &file.record_keys, limits, 2, |n, rec| {
            let counts = &mut summary.counts;
            counts.records += 1;
            let reason = match rec {
                Rec::Ok { record, .. } => match converter.convert(record, n, origin).outcome {
                    Outcome::Converted(payloads) => {
                        counts.converted += 1;
                        for payload in &payloads {
                            counts.payloads += 1;
                            if tx.blocking_send(Item::from_payload(n, payload)).is_err() {
                                return ControlFlow::Break(());
                            }
                        }
                        None
                    }
                    Outcome::Skipped => {
                        counts.skipped += 1;
                        None
                    }
                    Outcome::Invalid(reason) => Some(reason),
                },
                Rec::Invalid { reason, .. } => Some(reason),
            };
            if let Some(reason) = reason {
                counts.invalid += 1;
                if summary.errors.len() < MAX_ERRORS {
                    summary
                        .errors
                        .push(format!("record {n}: invalid: {reason}"));
                }
            }
            ControlFlow::Continue(())
        });
        (summary, read)
    });
    let client = reqwest::Client::new();
    let delivery = deliver_stream(&client, settings, rx, deadline).await;
    let (mut summary, read) = conversion.await.map_err(|e| DecodeError::Io {
        offset: 0,
        detail: e.to_string(),
    })?;
    read?;
    for (n, _, fate) in &delivery.fates {
        let problem = match fate {
            Fate::Sent => {
                summary.counts.sent += 1;
                None
            }
            Fate::Rejected(why) => {
                summary.counts.rejected += 1;
                Some(format!("record {n}: rejected by the endpoint: {why}"))
            }
            Fate::NotSent(why) => {
                summary.counts.not_sent += 1;
                Some(format!("record {n}: not sent: {why}"))
            }
        };
        if let Some(problem) = problem {
            if summary.errors.len() < MAX_ERRORS {
                summary.errors.push(problem);
            }
        }
    }
    summary.fatal = delivery.fatal;
    Ok(summary)
}

/// What `send` names its file by: the file, or the S3 location it stands for when `--key` is given.
pub fn send_title(bucket: &str, key: Option<&str>, file: &str) -> String {
    match key {
        Some(key) => format!("s3://{bucket}/{key} (from {file})"),
        None => file.to_string(),
    }
}

/// The summary of `send` for a person: the title, the counts, why delivery stopped, the
/// first problems.
pub fn render_send(title: &str, summary: &SendSummary) -> String {
    let mut out = format!("{title}\n");
    for line in summary.counts.to_string().lines() {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(fatal) = &summary.fatal {
        let _ = writeln!(out, "  delivery stopped: {fatal}");
    }
    for error in &summary.errors {
        let _ = writeln!(out, "  {error}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bytes_with_an_optional_decimal_or_binary_unit() {
        for (text, want) in [
            ("0", 0),
            ("1024", 1024),
            (" 1024 ", 1024),
            ("7B", 7),
            ("7b", 7),
            ("1K", 1_000),
            ("1KB", 1_000),
            ("1kb", 1_000),
            ("1KiB", 1024),
            ("1kib", 1024),
            ("10MiB", 10 << 20),
            ("10 MiB", 10 << 20),
            ("500MB", 500_000_000),
            ("2M", 2_000_000),
            ("64GiB", 64 << 30),
            ("3GB", 3_000_000_000),
            ("1G", 1_000_000_000),
            ("2TB", 2_000_000_000_000),
            ("2T", 2_000_000_000_000),
            ("1TiB", 1 << 40),
            ("18446744073709551615", u64::MAX),
            ("16777215TiB", 16_777_215 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        for (text, want) in [
            ("", r#""" is not a size like 10MiB"#),
            ("MiB", r#""MiB" is not a size like 10MiB"#),
            ("-1", r#""-1" is not a size like 10MiB"#),
            (
                "1.5GiB",
                r#"unknown size unit ".5gib" (use B, KiB, MiB, GiB, TiB)"#,
            ),
            (
                "10 parsecs",
                r#"unknown size unit "parsecs" (use B, KiB, MiB, GiB, TiB)"#,
            ),
            (
                "1PiB",
                r#"unknown size unit "pib" (use B, KiB, MiB, GiB, TiB)"#,
            ),
            (
                "18446744073709551616",
                r#""18446744073709551616" is not a size like 10MiB"#,
            ),
            ("16777216TiB", r#""16777216TiB" is too large"#),
            (
                "18446744073709551615K",
                r#""18446744073709551615K" is too large"#,
            ),
        ] {
            assert_eq!(parse_size(text), Err(want.to_string()), "{text:?}");
        }
    }

    fn converter(key_validator: &str) -> Converter {
        Converter::load(&format!(
            r#"{{"converterConfig": {{"fileType": "json", "compressionType": "none",
                 "convertToAmplitudeFunc": {{"event_type": "e"}}}}{key_validator}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn the_filter_pattern_check_names_the_key_and_the_pattern() {
        let filtered =
            converter(r#", "keyValidatorConfig": {"filterPattern": "events/.*\\.json"}"#);
        assert_eq!(check_filter_pattern(&filtered, "events/a.json"), Ok(()));
        assert_eq!(
            check_filter_pattern(&filtered, "x/events/a.json"),
            Err(r#"key "x/events/a.json" does not match keyValidatorConfig.filterPattern "events/.*\\.json""#.to_string())
        );
        assert_eq!(check_filter_pattern(&converter(""), "anything"), Ok(()));
    }

    fn send_summary(not_sent: u64, duplicates: u64) -> SendSummary {
        SendSummary {
            counts: Counts {
                records: 4,
                converted: 2,
                skipped: 1,
                invalid: 1,
                payloads: 3,
                sent: 1 + (1 - not_sent) - duplicates,
                duplicates,
                rejected: 1,
                not_sent,
            },
            fatal: None,
            errors: vec!["record 3: invalid: time: missing".to_string()],
        }
    }

    #[test]
    fn send_json_keeps_its_keys_and_their_order() {
        let summary = send_summary(0, 0);
        assert_eq!(
            serde_json::to_string(&summary).unwrap(),
            r#"{"records":4,"converted":2,"skipped":1,"invalid":1,"payloads":3,"sent":2,"rejected":1,"not_sent":0,"errors":["record 3: invalid: time: missing"]}"#
        );
        let mut stopped = send_summary(1, 1);
        stopped.fatal = Some("401: invalid API key".to_string());
        assert_eq!(
            serde_json::to_string(&stopped).unwrap(),
            r#"{"records":4,"converted":2,"skipped":1,"invalid":1,"payloads":3,"sent":0,"duplicates":1,"rejected":1,"not_sent":1,"fatal":"401: invalid API key","errors":["record 3: invalid: time: missing"]}"#
        );
    }

    #[test]
    fn send_renders_its_counts_like_every_report() {
        let mut summary = send_summary(1, 0);
        summary.fatal = Some("deadline passed".to_string());
        assert_eq!(
            render_send(&send_title("b", Some("k.json"), "local.json"), &summary),
            "s3://b/k.json (from local.json)\n\
             \x20 records 4: converted 2, skipped 1, invalid 1\n\
             \x20 payloads 3: sent 1, duplicates 0, rejected 1, not sent 1\n\
             \x20 delivery stopped: deadline passed\n\
             \x20 record 3: invalid: time: missing\n"
        );
        assert_eq!(send_title("b", None, "local.json"), "local.json");
    }
}
