//! Golden cases: each directory under tests/golden/ holds a converter, an input and the exact
//! expected stdout/stderr of the real `s3-import` binary. `UPDATE_GOLDEN=1` rewrites the
//! expectations (review the diff before committing).
//!
//! A case directory has `converter.json`, one `input.*` file, optional `case.json`
//! (`{"command": "convert"|"preview"|"validate", "args": [...], "transform": [...], "exit": N}`),
//! `expected.out` and `expected.err`. Transforms turn the readable input into the bytes under
//! test: "gzip", "gzip_per_line" (one member per line), "zstd", {"truncate": N} (keep N bytes),
//! {"flip_from_end": N}, {"append_zeros": N}, {"append": "text"}, {"rename": "name"}.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn transform(mut data: Vec<u8>, name: &mut String, steps: &[Value]) -> Vec<u8> {
    for step in steps {
        data = match step {
            Value::String(s) if s == "gzip" => {
                name.push_str(".gz");
                gzip(&data)
            }
            Value::String(s) if s == "gzip_per_line" => {
                name.push_str(".gz");
                data.split_inclusive(|b| *b == b'\n')
                    .flat_map(gzip)
                    .collect()
            }
            Value::String(s) if s == "zstd" => {
                name.push_str(".zst");
                zstd::encode_all(&data[..], 3).unwrap()
            }
            Value::Object(o) => {
                let (k, v) = o.iter().next().unwrap();
                match k.as_str() {
                    "truncate" => {
                        data.truncate(v.as_u64().unwrap() as usize);
                        data
                    }
                    "flip_from_end" => {
                        let i = data.len() - v.as_u64().unwrap() as usize;
                        data[i] ^= 0xff;
                        data
                    }
                    "append_zeros" => {
                        data.extend(std::iter::repeat_n(0u8, v.as_u64().unwrap() as usize));
                        data
                    }
                    "append" => {
                        data.extend_from_slice(v.as_str().unwrap().as_bytes());
                        data
                    }
                    "rename" => {
                        *name = v.as_str().unwrap().to_string();
                        data
                    }
                    other => panic!("unknown transform {other}"),
                }
            }
            other => panic!("unknown transform {other}"),
        };
    }
    data
}

struct Case {
    dir: PathBuf,
    command: String,
    args: Vec<String>,
    exit: i32,
    input_name: Option<String>,
    input: Vec<u8>,
}

fn load_case(dir: &Path) -> Case {
    let spec: Value = std::fs::read_to_string(dir.join("case.json"))
        .map(|t| serde_json::from_str(&t).expect("case.json"))
        .unwrap_or(Value::Null);
    let input_file = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("input"));
    let (input_name, input) = match input_file {
        Some(n) => {
            let mut name = n.clone();
            let data = std::fs::read(dir.join(&n)).unwrap();
            let steps = spec
                .get("transform")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let data = transform(data, &mut name, &steps);
            (Some(name), data)
        }
        None => (None, Vec::new()),
    };
    Case {
        dir: dir.to_path_buf(),
        command: spec
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("convert")
            .to_string(),
        args: spec
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default(),
        exit: spec.get("exit").and_then(Value::as_i64).unwrap_or(0) as i32,
        input_name,
        input,
    }
}

fn run(case: &Case, threads: Option<usize>) -> (i32, String, String) {
    let work = tempdir(&case.dir);
    std::fs::copy(case.dir.join("converter.json"), work.join("converter.json")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3-import"));
    cmd.current_dir(&work)
        .arg(&case.command)
        .args(["--config", "converter.json"])
        .args(&case.args);
    if let Some(t) = threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    if let Some(name) = &case.input_name {
        std::fs::write(work.join(name), &case.input).unwrap();
        cmd.arg(name);
    }
    cmd.env("COLUMNS", "100");
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&work);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tempdir(case_dir: &Path) -> PathBuf {
    let name = case_dir.file_name().unwrap().to_string_lossy().into_owned();
    let dir = std::env::temp_dir().join(format!(
        "s3-import-golden-{}-{name}-{}",
        std::process::id(),
        next_case_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn next_case_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A case with `reference.jsonl` (written by the file's writer's own reader, see
/// tests/parquet/gen.py) must show, on output line n, each of row n's named values with exactly
/// the reference's JSON text (`"col": 12.30`, `"col": [1, null]`), so the expected output cannot
/// drift from the writer's values by being regenerated. A column the reference leaves out of a
/// row (absent in the record) is not checked.
fn check_reference(dir: &Path, out: &str) -> Result<(), String> {
    let Ok(reference) = std::fs::read_to_string(dir.join("reference.jsonl")) else {
        return Ok(());
    };
    let lines: Vec<&str> = out.lines().collect();
    for (n, row) in reference.lines().enumerate() {
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(row).unwrap();
        let line = lines.get(n).ok_or(format!("no output line {n}"))?;
        // A column is looked up in event_properties, then among the payload's own fields.
        let props = [
            entries(line, "\"event_properties\": {"),
            entries(line, "\"payload\": {"),
        ];
        for (col, text) in &row {
            let want = text.as_str().unwrap();
            let found = props.iter().flatten().flatten().find(|(k, _)| k == col);
            match found {
                Some((_, got)) if got == want => {}
                Some((_, got)) => {
                    return Err(format!(
                        "line {n}: \"{col}\": {got} where the writer has {want}"
                    ))
                }
                None => return Err(format!("line {n}: no {col}")),
            }
        }
    }
    Ok(())
}

/// The entries of the object that starts with `opening` in `line` (its first occurrence): each
/// key (as JSON text without its quotes; our column names need no escapes) and its value's
/// exact text.
fn entries(line: &str, opening: &str) -> Option<Vec<(String, String)>> {
    let at = line.find(opening)? + opening.len();
    let mut rest = &line[at..];
    let mut out = Vec::new();
    while !rest.starts_with('}') {
        let rest_key = rest.strip_prefix('"')?;
        let end = rest_key.find("\": ")?;
        let key = rest_key[..end].to_string();
        let value = &rest_key[end + 3..];
        let len = json_span(value);
        out.push((key, value[..len].to_string()));
        rest = &value[len..];
        rest = rest.strip_prefix(", ").unwrap_or(rest);
    }
    Some(out)
}

/// The length of the JSON value at the start of `s`: a string to its closing quote, an array or
/// object to its matching bracket (brackets inside strings skipped), a scalar up to the next
/// `,`, `}` or `]`.
fn json_span(s: &str) -> usize {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, c) in s.char_indices() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    in_str = false;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => depth += 1,
            ']' | '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            ',' | ']' | '}' if depth == 0 => return i,
            _ => {}
        }
    }
    s.len()
}

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 30,
        "expected the golden cases under {}",
        root.display()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let case = load_case(dir);
        let thread_variants: &[Option<usize>] = if case.command == "convert" {
            &[Some(1), Some(2)]
        } else {
            &[None]
        };
        for threads in thread_variants {
            let (code, out, err) = run(&case, *threads);
            let name = format!(
                "{} (threads {threads:?})",
                dir.file_name().unwrap().to_string_lossy()
            );
            if update {
                std::fs::write(dir.join("expected.out"), &out).unwrap();
                std::fs::write(dir.join("expected.err"), &err).unwrap();
            }
            let want_out = std::fs::read_to_string(dir.join("expected.out")).unwrap_or_default();
            let want_err = std::fs::read_to_string(dir.join("expected.err")).unwrap_or_default();
            if code != case.exit {
                failures.push(format!(
                    "{name}: exit {code}, expected {}\nstderr: {err}",
                    case.exit
                ));
            }
            if let Err(e) = check_reference(dir, &out) {
                failures.push(format!("{name}: {e}"));
            }
            if out != want_out {
                failures.push(format!(
                    "{name}: stdout differs\n--- expected\n{want_out}\n--- got\n{out}"
                ));
            }
            if err != want_err {
                failures.push(format!(
                    "{name}: stderr differs\n--- expected\n{want_err}\n--- got\n{err}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn operators_in(v: &Value, found: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Array(items) => {
            if let Some(Value::String(op)) = items.first() {
                found.insert(op.clone());
            }
            items.iter().for_each(|i| operators_in(i, found));
        }
        Value::Object(map) => map.values().for_each(|i| operators_in(i, found)),
        _ => {}
    }
}

#[test]
fn every_operator_and_alias_has_a_golden_case() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut found = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&root).unwrap().filter_map(Result::ok) {
        let path = entry.path().join("converter.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if let Some(func) = v.pointer("/converterConfig/convertToAmplitudeFunc") {
                    operators_in(func, &mut found);
                }
            }
        }
    }
    let missing: Vec<&str> = s3_import::datalang::OPERATORS
        .iter()
        .copied()
        .filter(|op| !found.contains(*op))
        .collect();
    assert!(
        missing.is_empty(),
        "operators without a golden case: {missing:?}"
    );
}
