//! `preview`: the first records of a file beside what the converter makes of them, for a
//! person (a table that fits the terminal) or as JSON.

use std::borrow::Cow;
use std::io::Read;

use crate::datalang::V;

use serde::Serialize;

use super::*;

/// One previewed record. Values stay record values (not `serde_json::Value`), so numbers are
/// shown exactly as they are sent: a decimal with all its digits, a double in its shortest form.
#[derive(Serialize)]
pub struct PreviewItem {
    pub n: u64,
    pub source: V<'static>,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payloads: Option<Vec<V<'static>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub kinds: Vec<&'static str>,
}

/// A payload as one detached value: an object of its fields in order.
fn payload_value(p: &crate::convert::Payload<'_, '_>) -> V<'static> {
    V::Obj(
        p.fields
            .iter()
            .map(|(k, v)| (Cow::Owned(k.to_string()), v.as_ref().clone().into_static()))
            .collect(),
    )
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
                    let source = record.whole().into_owned().into_static();
                    match run.converter.convert(record, n, origin).outcome {
                        Outcome::Converted(payloads) => PreviewItem {
                            n,
                            source,
                            outcome: "converted",
                            kinds: payloads.iter().map(|p| p.kind.as_str()).collect(),
                            payloads: Some(payloads.iter().map(payload_value).collect()),
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
                    source: V::str(String::from_utf8_lossy(raw).into_owned()),
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
            V::Str(raw)
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

/// Why a preview from the bucket could not start: the location names nothing usable (exit 2),
/// or the store failed (exit 1).
#[derive(Debug)]
pub enum FetchError {
    Input(String),
    Runtime(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Input(e) | FetchError::Runtime(e) => f.write_str(e),
        }
    }
}

fn fetch_error(e: crate::source::SourceError) -> FetchError {
    match e {
        crate::source::SourceError::Missing(_) | crate::source::SourceError::Refused(_) => {
            FetchError::Input(e.to_string())
        }
        e => FetchError::Runtime(e.to_string()),
    }
}

/// A converter file read from the bucket (`preview --config s3://…`).
pub async fn converter_from<S: crate::source::ObjectSource>(
    source: &S,
    url: &crate::settings::S3Url,
) -> Result<Converter, FetchError> {
    let (bytes, _) = source
        .get_small(&url.bucket, &url.key, 1 << 20)
        .await
        .map_err(fetch_error)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| FetchError::Input(format!("{url}: the converter file is not UTF-8")))?;
    Converter::load(&text).map_err(|e| FetchError::Input(format!("{url}: {e}")))
}

/// Opens the object `url` names for streaming, or, when it names a prefix (or no object), the
/// first object under it that is not empty, not a folder and matches the converter's
/// filterPattern. Its key and the reader; nothing more than what is read is downloaded.
pub async fn open_from<S: crate::source::ObjectSource>(
    source: &S,
    url: &crate::settings::S3Url,
    converter: &Converter,
) -> Result<(String, crate::source::ObjectReader), FetchError> {
    use crate::source::{Content, SourceError};
    let open = |key: String| async move {
        source
            .open(&url.bucket, &key, &Content::default(), 0)
            .await
            .map(|o| (key, o.reader))
    };
    if !url.key.is_empty() && !url.key.ends_with('/') {
        match open(url.key.clone()).await {
            Ok(opened) => return Ok(opened),
            Err(SourceError::Missing(_)) => {}
            Err(e) => return Err(fetch_error(e)),
        }
    }
    // The first object under the prefix that the converter would take, page by page.
    let (mut listed, mut start_after) = (0usize, None::<String>);
    let first = loop {
        let page = source
            .list_page(&url.bucket, &url.key, start_after.as_deref(), 1000)
            .await
            .map_err(fetch_error)?;
        listed += page.objects.len();
        let found = page
            .objects
            .into_iter()
            .find(|o| o.size > 0 && !o.key.ends_with('/') && converter.file.key_matches(&o.key));
        match (found, page.next) {
            (Some(first), _) => break first,
            (None, Some(next)) => start_after = Some(next),
            (None, None) => {
                return Err(FetchError::Input(format!(
                    "{url}: no object there, and none under it{}",
                    if listed == 0 {
                        String::new()
                    } else {
                        format!(" that matches the converter's filterPattern ({listed} listed)")
                    }
                )))
            }
        }
    };
    open(first.key.clone()).await.map_err(fetch_error)
}
