//! The work of the `s3-import` subcommands (convert, preview, validate, send) over any reader and writer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::path::Path;

use serde::Serialize;

use crate::convert::{Converter, Origin, Outcome, Payload};
use crate::datalang::Keys;
use crate::decode::{convert_chunks, read_records, visit_chunk, Chunk, DecodeError, Limits, Rec};
use crate::json_out::{self, Style};
use crate::report::Counts;

/// Exit status for bad input or usage (converter, data, key, arguments, settings).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit status for a failure at run time (storage, tables, network, endpoint, objects that
/// did not import).
pub const EXIT_FAILURE: i32 = 1;

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

/// A local input the command line cannot use; the text names the file (or key) and why.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: cannot read the converter file: {source}", path.display())]
    ConverterUnreadable {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("{}: {errors}", path.display())]
    ConverterInvalid {
        path: std::path::PathBuf,
        errors: crate::config::ConfigErrors,
    },
    #[error("{path}: cannot open: {source}")]
    Unopenable { path: String, source: io::Error },
    #[error("key {key:?} does not match keyValidatorConfig.filterPattern {pattern:?}")]
    KeyFiltered { key: String, pattern: String },
}

/// Loads a converter file; the error names the file.
pub fn load_converter(path: &Path) -> Result<Converter, InputError> {
    let text = read_converter_file(path)?;
    Converter::load(&text).map_err(|errors| InputError::ConverterInvalid {
        path: path.to_path_buf(),
        errors,
    })
}

fn read_converter_file(path: &Path) -> Result<String, InputError> {
    std::fs::read_to_string(path).map_err(|source| InputError::ConverterUnreadable {
        path: path.to_path_buf(),
        source,
    })
}

/// `validate`: loads a converter file and lists every problem, each naming the file.
/// Loads the converter file and lists every problem; with `endpoint`, also whether that
/// endpoint serves every route the converter's payloads need.
pub fn validate(path: &Path, endpoint: Option<&str>) -> Result<(), Vec<String>> {
    let text = read_converter_file(path).map_err(|e| vec![e.to_string()])?;
    match Converter::load(&text) {
        Ok(conv) => match endpoint.and_then(|url| crate::sink::routes::unserved(&conv.file, url)) {
            Some(why) => Err(vec![format!("{}: {why}", path.display())]),
            None => Ok(()),
        },
        Err(errors) => Err(errors
            .0
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect()),
    }
}

/// Opens a local file for reading; the error names the file.
pub fn open_file(path: &str) -> Result<File, InputError> {
    File::open(path).map_err(|source| InputError::Unopenable {
        path: path.to_string(),
        source,
    })
}

/// The input of `convert` and `preview`: the file, or standard input for `-` or no file.
pub fn open_input(file: Option<&str>) -> Result<Box<dyn Read + Send>, InputError> {
    match file {
        None | Some("-") => Ok(Box::new(io::stdin())),
        Some(path) => open_file(path).map(|f| Box::new(f) as Box<dyn Read + Send>),
    }
}

/// Checks `key` against the converter's `keyValidatorConfig.filterPattern`; the error says
/// which key and pattern. `convert` and `send` refuse such a key, `preview` warns about it.
pub fn check_filter_pattern(converter: &Converter, key: &str) -> Result<(), InputError> {
    let file = &converter.file;
    if file.key_matches(key) {
        Ok(())
    } else {
        Err(InputError::KeyFiltered {
            key: key.to_string(),
            pattern: file.filter_pattern().unwrap_or_default().to_string(),
        })
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
    /// Where the records converted so far are shown (the progress line), if anywhere.
    pub meter: Option<&'c progress::Meter>,
}

impl ConvertRun<'_> {
    fn show(&self, summary: &Summary) {
        if let Some(m) = self.meter {
            m.records
                .store(summary.records, std::sync::atomic::Ordering::Relaxed);
        }
    }
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

/// Converts one record for `convert`: its output line(s) into `buf`, its outcome into
/// `summary`. The pipeline and `send` share `pipeline::record::convert_record`, which builds
/// send items; `convert` writes the converter's payloads straight out instead (its hot path).
fn write_record(
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
    let file = &run.converter.file;
    if run.threads < 2 || !crate::decode::parallel_capable(file) {
        return convert_serial(run, out, |f| {
            read_records(input, file, &file.record_keys, run.limits, run.threads, f)
        });
    }
    let mut summary = Summary::default();
    let mut write_err: Option<io::Error> = None;
    let keys = &file.record_keys;
    let work = |chunk: &Chunk| {
        let mut buf = Vec::with_capacity(chunk.data.len() + chunk.data.len() / 4);
        let mut part = Summary::default();
        let _ = visit_chunk(chunk, keys, run.limits, &mut |n, rec| {
            write_record(run, n, rec, &mut buf, &mut part);
            ControlFlow::Continue(())
        });
        (buf, part)
    };
    let result = convert_chunks(input, file, run.limits, run.threads, work, |(buf, part)| {
        summary.merge(part);
        run.show(&summary);
        match out.write_all(&buf) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_err = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    let flushed = out.flush();
    match (write_err.or(flushed.err()), result) {
        (Some(e), _) => ConvertEnd::OutputClosed(summary, e),
        (None, Ok(_)) => ConvertEnd::Done(summary),
        (None, Err(e)) => ConvertEnd::Failed(summary, e),
    }
}

/// A local file that `convert` can read as Parquet in place (by ranges) instead of copying it
/// to a temporary file first, as a stream is: the converter reads Parquet without a
/// compression of its own (`none`, or `auto` and the file starts with the Parquet magic), and
/// the file is within the decompressed-bytes limit.
pub fn parquet_in_place(converter: &Converter, path: &str, limits: Limits) -> Option<File> {
    use crate::config::{Compression, FileType};
    let file = &converter.file;
    if file.file_type != FileType::Parquet
        || !matches!(file.compression, Compression::None | Compression::Auto)
    {
        return None;
    }
    let f = File::open(path).ok()?;
    if f.metadata().ok()?.len() > limits.max_decompressed_bytes {
        return None;
    }
    let mut magic = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut magic, 0).ok()?;
    (&magic == b"PAR1").then_some(f)
}

/// [`convert`] of a local Parquet file found by [`parquet_in_place`].
pub fn convert_parquet_file<S: crate::decode::parquet::ReadAt, W: Write>(
    run: &ConvertRun<'_>,
    file: S,
    out: &mut W,
) -> ConvertEnd {
    use crate::decode::parquet::{ParquetFile, Position};
    let keys = &run.converter.file.record_keys;
    convert_serial(run, out, |f| {
        ParquetFile::open(file)?.read(keys, Position::default(), f)
    })
}

/// Converts the records `read` hands over one by one, in order, writing as it goes.
fn convert_serial<W: Write>(
    run: &ConvertRun<'_>,
    out: &mut W,
    read: impl FnOnce(
        &mut dyn FnMut(u64, Rec<'_>) -> ControlFlow<()>,
    ) -> Result<crate::decode::ReadStats, DecodeError>,
) -> ConvertEnd {
    let mut summary = Summary::default();
    let mut write_err: Option<io::Error> = None;
    let mut buf = Vec::with_capacity(OUT_BUF);
    let result = read(&mut |n, rec| {
        write_record(run, n, rec, &mut buf, &mut summary);
        if buf.len() < OUT_BUF {
            return ControlFlow::Continue(());
        }
        run.show(&summary);
        let written = out.write_all(&buf);
        buf.clear();
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_err = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if write_err.is_none() {
        if let Err(e) = out.write_all(&buf) {
            write_err = Some(e);
        }
    }
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

/// The summary line of `convert`.
pub fn summary_line(summary: &Summary) -> String {
    spaced(summary)
}

pub mod args;
pub mod importer;
pub mod local;
mod preview;
pub mod progress;
mod send;

pub use preview::{
    converter_from, open_from, preview, preview_json, render_preview, FetchError, PreviewItem,
};
pub use send::{render_send, send, send_title, SendSummary};

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
        assert!(check_filter_pattern(&filtered, "events/a.json").is_ok());
        assert_eq!(
            check_filter_pattern(&filtered, "x/events/a.json")
                .unwrap_err()
                .to_string(),
            r#"key "x/events/a.json" does not match keyValidatorConfig.filterPattern "events/.*\\.json""#
        );
        assert!(check_filter_pattern(&converter(""), "anything").is_ok());
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
