//! The `s3-import` command line as a user meets it: help, stdin, exit codes, large and cut inputs, pipes, send.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_s3-import"))
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("s3-import-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const CONVERTER: &str = r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
  "convertToAmplitudeFunc": {"event_type": "e", "user_id": "u", "time": ["iso_time_to_ms", "t"]}}}"#;

/// Lines of varied length (so chunk boundaries fall everywhere), with blank and bad lines mixed in.
fn big_input(records: usize) -> (Vec<u8>, Vec<Option<String>>) {
    let mut text = Vec::new();
    let mut expected = Vec::new(); // event_type per record, None for invalid ones
    for i in 0..records {
        if i % 97 == 0 {
            text.extend_from_slice(b"\n  \r\n");
        }
        if i % 1013 == 0 {
            text.extend_from_slice(b"{\"e\": broken\n");
            expected.push(None);
            continue;
        }
        let pad = "é".repeat(i % 300);
        let line = format!("{{\"e\":\"ev-{i}\",\"u\":\"user-{}\",\"t\":\"2024-01-01T00:00:00Z\",\"pad\":\"{pad}\"}}\n", i % 50);
        text.extend_from_slice(line.as_bytes());
        expected.push(Some(format!("ev-{i}")));
    }
    (text, expected)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn convert(dir: &std::path::Path, file: &str, threads: usize) -> Output {
    bin()
        .current_dir(dir)
        .args([
            "convert",
            "--config",
            "c.json",
            "--threads",
            &threads.to_string(),
            file,
        ])
        .output()
        .unwrap()
}

/// Every record appears once, in order, numbered 0..N, with its own content.
fn check_order(stdout: &[u8], expected: &[Option<String>]) -> usize {
    let mut count = 0;
    for (i, line) in stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["n"], i as u64, "record numbers run in order without gaps");
        match &expected[i] {
            Some(e) => assert_eq!(v["payload"]["event_type"], e.as_str(), "record {i}"),
            None => assert_eq!(v["outcome"], "invalid", "record {i}"),
        }
        count += 1;
    }
    count
}

#[test]
fn every_subcommand_has_help() {
    for (sub, flag) in [
        ("convert", "--max-record-bytes"),
        ("preview", "--limit"),
        ("validate", "--config"),
    ] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(flag),
            "{sub} --help mentions {flag}"
        );
    }
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("convert") && text.contains("preview") && text.contains("validate"));
}

#[test]
fn usage_errors_exit_2() {
    let out = bin().args(["convert", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args([
            "convert",
            "--config",
            "x.json",
            "--max-record-bytes",
            "10 parsecs",
            "f",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown size unit"));
    let out = bin()
        .args(["validate", "--config", "/nonexistent/c.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: /nonexistent/c.json: cannot read")
    );
}

#[test]
fn reads_standard_input() {
    let dir = tempdir("stdin");
    std::fs::write(dir.join("c.json"), CONVERTER).unwrap();
    for args in [vec!["-"], vec![]] {
        let mut child = bin()
            .current_dir(&dir)
            .args(["convert", "--config", "c.json", "--bucket", "b"])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&gzip(b"{\"e\":\"x\",\"u\":\"user-1\"}\n"))
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let line = String::from_utf8(out.stdout).unwrap();
        assert!(line.contains("\"insert_id\": \"b/-:0\""), "{line}");
    }
}

#[test]
fn parquet_reads_alike_from_a_file_in_place_from_standard_input_and_gzipped() {
    let dir = tempdir("parquet-stdin");
    let case = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/parquet_row_groups"
    );
    let conv = std::fs::read_to_string(format!("{case}/converter.json")).unwrap();
    let data = std::fs::read(format!("{case}/input.parquet")).unwrap();
    assert!(conv.contains("\"compressionType\": \"auto\""), "{conv}");
    std::fs::write(dir.join("c.json"), conv.replace("\"auto\"", "\"none\"")).unwrap();
    std::fs::write(dir.join("auto.json"), &conv).unwrap();
    std::fs::write(dir.join("in.parquet"), &data).unwrap();
    std::fs::write(dir.join("in.parquet.gz"), gzip(&data)).unwrap();
    let run = |config: &str, file: Option<&str>| {
        let mut child = bin()
            .current_dir(&dir)
            .args(["convert", "--config", config, "--key", "k.parquet"])
            .args(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if file.is_none() {
            stdin.write_all(&data).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let in_place = run("c.json", Some("in.parquet"));
    assert!(in_place.len() > 100);
    assert_eq!(run("c.json", None), in_place, "standard input");
    assert_eq!(run("auto.json", Some("in.parquet")), in_place, "auto");
    assert_eq!(run("auto.json", Some("in.parquet.gz")), in_place, "gzipped");
}

#[test]
fn large_input_is_identical_and_ordered_on_any_number_of_threads() {
    let dir = tempdir("large");
    std::fs::write(dir.join("c.json"), CONVERTER).unwrap();
    let (text, expected) = big_input(20_000); // ≈ 8 MB: several 1 MiB chunks
    std::fs::write(dir.join("in.jsonl.gz"), gzip(&text)).unwrap();
    let one = convert(&dir, "in.jsonl.gz", 1);
    assert!(one.status.success());
    assert_eq!(check_order(&one.stdout, &expected), expected.len());
    for threads in [2, 3, 5] {
        let many = convert(&dir, "in.jsonl.gz", threads);
        assert!(many.status.success());
        assert!(
            one.stdout == many.stdout,
            "output with {threads} threads equals the single-thread output"
        );
        assert_eq!(one.stderr, many.stderr, "summary with {threads} threads");
    }
    let summary: serde_json::Value = serde_json::from_slice(one.stderr.trim_ascii_end()).unwrap();
    let invalid = expected.iter().filter(|e| e.is_none()).count() as u64;
    assert_eq!(summary["records"], expected.len() as u64);
    assert_eq!(summary["invalid"], invalid);
    assert_eq!(summary["converted"], expected.len() as u64 - invalid);
}

#[test]
fn a_stream_cut_after_several_chunks_fails_after_delivering_what_came_before() {
    let dir = tempdir("cut");
    std::fs::write(dir.join("c.json"), CONVERTER).unwrap();
    let (text, expected) = big_input(20_000);
    let gz = gzip(&text);
    std::fs::write(dir.join("cut.jsonl.gz"), &gz[..gz.len() * 2 / 3]).unwrap();
    for threads in [1, 2, 4] {
        let out = convert(&dir, "cut.jsonl.gz", threads);
        assert_eq!(out.status.code(), Some(2), "threads {threads}");
        let delivered = check_order(&out.stdout, &expected);
        assert!(
            delivered > 1000 && delivered < expected.len(),
            "threads {threads}: {delivered} records before the cut"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap();
        assert!(
            last.starts_with("error: cut.jsonl.gz: corrupt gzip data after "),
            "{last}"
        );
        assert!(
            last.ends_with(&format!("(after {delivered} records)")),
            "{last}"
        );
    }
}

#[test]
fn a_closed_pipe_stops_quietly() {
    let dir = tempdir("pipe");
    std::fs::write(dir.join("c.json"), CONVERTER).unwrap();
    let (text, _) = big_input(20_000);
    std::fs::write(dir.join("in.jsonl"), &text).unwrap();
    for threads in ["1", "2"] {
        let mut child = bin()
            .current_dir(&dir)
            .args([
                "convert",
                "--config",
                "c.json",
                "--threads",
                threads,
                "in.jsonl",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("{\"n\": 0"));
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "threads {threads}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn preview_stops_at_the_limit() {
    let dir = tempdir("preview");
    std::fs::write(dir.join("c.json"), CONVERTER).unwrap();
    let (text, _) = big_input(2_000);
    std::fs::write(dir.join("in.jsonl"), &text).unwrap();
    let out = bin()
        .current_dir(&dir)
        .args([
            "preview", "--config", "c.json", "--json", "--limit", "3", "in.jsonl",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0]["outcome"], "invalid",
        "line 0 is broken on purpose"
    );
    assert_eq!(items[1]["source"]["e"], "ev-1");
    assert_eq!(items[2]["payloads"][0]["event_type"], "ev-2");
}

#[test]
fn a_key_outside_the_filter_pattern_is_refused_by_convert_and_send_and_noted_by_preview() {
    let dir = tempdir("filter");
    let converter = CONVERTER.strip_suffix('}').unwrap().to_string()
        + r#", "keyValidatorConfig": {"filterPattern": "events/.*"}}"#;
    std::fs::write(dir.join("c.json"), converter).unwrap();
    std::fs::write(dir.join("in.jsonl"), "{\"e\":\"x\",\"u\":\"user-1\"}\n").unwrap();
    let refused =
        r#"error: key "in.jsonl" does not match keyValidatorConfig.filterPattern "events/.*""#;
    for sub in ["convert", "send"] {
        let out = bin()
            .current_dir(&dir)
            .args([sub, "--config", "c.json", "in.jsonl"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{sub}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            refused,
            "{sub}"
        );
        assert!(out.stdout.is_empty(), "{sub}");
    }
    let out = bin()
        .current_dir(&dir)
        .args([
            "convert",
            "--config",
            "c.json",
            "--key",
            "events/a.json",
            "in.jsonl",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = bin()
        .current_dir(&dir)
        .args(["preview", "--config", "c.json", "--json", "in.jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        r#"warning: key "in.jsonl" does not match keyValidatorConfig.filterPattern "events/.*"; the importer would not pick this object up"#
    );
}

#[test]
fn send_takes_the_region_us_or_eu_in_any_case() {
    let dir = tempdir("region");
    std::fs::write(dir.join("c.json"), CONVERTER).unwrap();
    let send = |region: &str| {
        bin()
            .current_dir(&dir)
            .env_remove("AMPLITUDE_API_KEY")
            .args(["send", "--config", "c.json", "--region", region, "in.jsonl"])
            .output()
            .unwrap()
    };
    let out = send("Mars");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        r#"error: --region must be us or eu, got "mars""#
    );
    // A known region gets past the region check to the next one: the API key.
    for region in ["us", "EU"] {
        let out = send(region);
        assert_eq!(out.status.code(), Some(2), "{region}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("$AMPLITUDE_API_KEY"),
            "{region}"
        );
    }
}

/// The emulator binary on a free port; killed when dropped.
struct Emulator(std::process::Child, String);

impl Emulator {
    fn start(dir: &std::path::Path, extra: &[&str]) -> Emulator {
        let mut child = bin()
            .args(["emulator", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("emulator"))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        Emulator(child, base)
    }
}

/// A plain HTTP/1.0 GET, enough for the emulator's JSON endpoints.
fn http_get_json(base: &str, path: &str) -> serde_json::Value {
    let addr = base.strip_prefix("http://").unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    serde_json::from_str(body).unwrap()
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn send_converts_and_delivers_a_file_and_accounts_for_every_record() {
    let dir = tempdir("send");
    std::fs::write(dir.join("c.json"), CONVERTER).unwrap();
    let (text, expected) = big_input(3000);
    std::fs::write(dir.join("in.jsonl.gz"), gzip(&text)).unwrap();
    let emulator = Emulator::start(&dir, &["--fail-rate", "0.2"]);
    let send = |key_env: &str| {
        bin()
            .current_dir(&dir)
            .env("AMPLITUDE_API_KEY", key_env)
            .args([
                "send",
                "--config",
                "c.json",
                "--endpoint",
                &emulator.1,
                "--json",
                "in.jsonl.gz",
            ])
            .output()
            .unwrap()
    };
    let out = send("test-key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let invalid = expected.iter().filter(|e| e.is_none()).count() as u64;
    assert_eq!(s["records"], 3000);
    assert_eq!(s["invalid"], invalid);
    assert_eq!(s["sent"], 3000 - invalid, "{s}");
    assert_eq!(s["not_sent"], 0);
    // Sending the same file again is safe: the endpoint's insert_id dedupe absorbs it.
    assert!(send("test-key").status.success());
    let stats = http_get_json(&emulator.1, "/stats");
    assert_eq!(stats["events"], 3000 - invalid);
    assert_eq!(stats["duplicates"], 3000 - invalid);
    // No key: a clear error before anything is read.
    let out = bin()
        .current_dir(&dir)
        .env_remove("AMPLITUDE_API_KEY")
        .args([
            "send",
            "--config",
            "c.json",
            "--endpoint",
            &emulator.1,
            "in.jsonl.gz",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("$AMPLITUDE_API_KEY"));
}

#[test]
fn the_operator_subcommands_have_help_and_refuse_bad_usage_with_2() {
    for (sub, flag) in [
        ("retry", "--failed"),
        ("check", "--json"),
        ("import", "--json"),
        ("scan", "--json"),
        ("status", "--json"),
        ("preview", "S3_URL"),
    ] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(flag),
            "{sub} --help mentions {flag}"
        );
    }
    for args in [
        vec!["retry"],
        vec!["retry", "s3://b/k", "--failed"],
        vec!["retry", "--prefix", "in/"],
        vec!["check", "--no-such-flag"],
    ] {
        let out = bin().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // Settings that do not load: bad input, before anything is called.
    let out = bin()
        .args(["check"])
        .env_remove("S3I_CONVERTER")
        .env_remove("AMPLITUDE_API_KEY")
        .env_remove("S3I_API_KEY_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("S3I_CONVERTER is required"));
}

#[test]
fn storage_that_cannot_be_reached_is_a_run_time_failure_exit_1() {
    let settings = [
        ("S3I_CONVERTER", "s3://c/converter.json"),
        ("S3I_REPORTS", "s3://r/reports/"),
        ("AMPLITUDE_API_KEY", "k"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_MAX_ATTEMPTS", "1"),
    ];
    for args in [
        vec!["status"],
        vec!["retry", "--failed"],
        vec!["retry", "s3://b/k.json"],
        vec!["scan", "--bucket", "b"],
        vec!["setup", "--bucket", "b", "--queue", "q"],
    ] {
        let out = bin().args(&args).envs(settings).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `shell` under a pseudo-terminal (`script`), so that standard error is a terminal;
/// what the terminal showed.
fn on_a_terminal(dir: &std::path::Path, shell: &str) -> String {
    let out = Command::new("script")
        .current_dir(dir)
        .args(["-qec", shell, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_progress_line_is_drawn_on_a_terminal_and_nothing_otherwise() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to make a terminal");
        return;
    }
    let dir = tempdir("progress");
    std::fs::write(dir.join("c.json"), CONVERTER).unwrap();
    let (text, _) = big_input(2000);
    std::fs::write(dir.join("a.jsonl"), &text).unwrap();
    let exe = env!("CARGO_BIN_EXE_s3-import");
    // The input arrives in two parts a second apart: the line is drawn in between.
    let shell = format!(
        "(cat a.jsonl; sleep 1.2; cat a.jsonl) | {exe} convert --config c.json --threads 1 - > out.jsonl"
    );
    let shown = on_a_terminal(&dir, &shell);
    assert!(
        shown.contains("read ") && shown.contains("records") && shown.contains("/s"),
        "{shown:?}"
    );
    assert!(
        shown.contains("\"records\": 4000"),
        "the summary follows: {shown:?}"
    );
    // Not a terminal: standard error is the summary line alone.
    let out = bin()
        .current_dir(&dir)
        .args(["convert", "--config", "c.json", "a.jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("{\"records\": 2000"), "{stderr}");
}

/// The raw text of member `key`'s value (a number) in one JSON line, as written.
fn raw_number<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    let rest = line[at + key.len() + 3..].trim_start();
    let end = rest.find([',', '}']).unwrap();
    &rest[..end]
}

/// Random doubles (all bit patterns, subnormals and extremes included) in the spellings JSON
/// allows, one per event, with the record number beside each.
fn random_doubles(n: usize) -> (Vec<u8>, Vec<f64>) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut text = String::new();
    let mut values = Vec::new();
    while values.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let f = f64::from_bits(state);
        if !f.is_finite() {
            continue;
        }
        let i = values.len();
        let spelled = match i % 4 {
            0 => format!("{f:e}"),
            1 => format!("{f:.16e}"),
            2 => format!("{f:.20E}"),
            _ if f.abs() > 1e-30 && f.abs() < 1e30 => format!("{f:?}"),
            _ => format!("{f:e}").replace('e', "E+").replace("E+-", "E-"),
        };
        text.push_str(&format!(
            "{{\"e\":\"ev\",\"u\":\"user-{}\",\"t\":\"2024-01-01T00:00:00Z\",\"i\":{i},\"x\":{spelled}}}\n",
            i % 50
        ));
        values.push(f);
    }
    (text.into_bytes(), values)
}

/// Checks one output line per event: `x` is the same double, in the shortest text.
fn check_doubles<'a>(lines: impl Iterator<Item = &'a str>, values: &[f64]) -> usize {
    let mut seen = 0;
    for line in lines.filter(|l| l.contains("\"x\":")) {
        let i: usize = raw_number(line, "i").parse().unwrap();
        let text = raw_number(line, "x");
        let got: f64 = text.parse().unwrap();
        assert_eq!(got.to_bits(), values[i].to_bits(), "record {i}: {text}");
        let digits = |t: &str| {
            let m = t.split(['e', 'E']).next().unwrap();
            let d: String = m.chars().filter(char::is_ascii_digit).collect();
            d.trim_matches('0').len().max(1)
        };
        assert_eq!(
            digits(text),
            digits(&format!("{:e}", values[i])),
            "record {i}: {text} is not the shortest form of {:e}",
            values[i]
        );
        seen += 1;
    }
    seen
}

#[test]
fn every_double_arrives_as_written_through_convert_and_send() {
    let dir = tempdir("doubles");
    std::fs::write(
        dir.join("c.json"),
        r#"{"converterConfig": {"fileType": "json", "compressionType": "auto",
  "convertToAmplitudeFunc": {"event_type": "e", "user_id": "u", "time": ["iso_time_to_ms", "t"],
  "event_properties": {"i": "i", "x": "x"}}}}"#,
    )
    .unwrap();
    let (text, values) = random_doubles(30_000);
    std::fs::write(dir.join("in.jsonl"), &text).unwrap();
    std::fs::write(dir.join("in.jsonl.gz"), gzip(&text)).unwrap();
    for file in ["in.jsonl", "in.jsonl.gz"] {
        for threads in [1, 2] {
            let out = convert(&dir, file, threads);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            assert_eq!(check_doubles(stdout.lines(), &values), values.len());
        }
    }
    // What the endpoint receives.
    let emulator = Emulator::start(&dir, &[]);
    let out = bin()
        .current_dir(&dir)
        .env("AMPLITUDE_API_KEY", "test-key")
        .args(["send", "--config", "c.json", "--endpoint", &emulator.1])
        .arg("in.jsonl.gz")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let received = std::fs::read_to_string(dir.join("emulator/events.jsonl")).unwrap();
    assert_eq!(check_doubles(received.lines(), &values), values.len());
}

#[test]
fn a_mirror_or_profiles_converter_is_refused_for_amplitudes_hosts_by_validate_and_send() {
    let dir = tempdir("mirror-routes");
    for (name, extra) in [
        ("mirror.json", r#""importStrategy": "mirror","#),
        ("profiles.json", r#""dataType": "profiles","#),
    ] {
        std::fs::write(
            dir.join(name),
            format!(
                r#"{{"converterConfig": {{"fileType": "json", "compressionType": "none", {extra}
                   "convertToAmplitudeFunc": {{"event_type": "e", "user_id": "u", "insert_id": "i"}}}}}}"#
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("in.jsonl"),
            "{\"e\":\"x\",\"u\":\"user-1\",\"i\":\"a\"}\n",
        )
        .unwrap();
        let run = |args: &[&str]| bin().current_dir(&dir).args(args).output().unwrap();
        // Without an endpoint the file itself is fine.
        assert!(run(&["validate", "--config", name]).status.success());
        // A compatible endpoint is taken at its word (not contacted).
        let ok = run(&[
            "validate",
            "--config",
            name,
            "--endpoint",
            "http://127.0.0.1:9",
        ]);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        for region in ["us", "eu"] {
            let out = run(&["validate", "--config", name, "--region", region]);
            assert_eq!(out.status.code(), Some(2));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("/mutations") && err.contains("--endpoint"),
                "{err}"
            );
            // send refuses before reading anything or asking for the key.
            let out = bin()
                .current_dir(&dir)
                .env_remove("AMPLITUDE_API_KEY")
                .args(["send", "--config", name, "--region", region, "in.jsonl"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("a route Amplitude's public APIs do not have"),
                "{err}"
            );
        }
    }
}

/// The template's source id (claims and dedupe keys carry it) never follows the prefix or the
/// reports location, and the alarms and the `Source` output name the same id as the function.
#[test]
fn the_templates_source_id_does_not_follow_the_prefix() {
    let template = include_str!("../../template.yaml");
    let source = template
        .lines()
        .find(|l| l.trim_start().starts_with("S3I_SOURCE:"))
        .expect("S3I_SOURCE in the function's environment");
    let id = source.split_once(':').unwrap().1.trim();
    for word in ["SourcePrefix", "ReportsPrefix", "ReportsBucket"] {
        assert!(!id.contains(word), "S3I_SOURCE follows {word}: {id}");
    }
    let dimensions: Vec<&str> = template
        .lines()
        .filter(|l| l.contains("{Name: Source,"))
        .collect();
    assert_eq!(dimensions.len(), 2, "the two alarms on s3-import metrics");
    for d in dimensions {
        assert!(d.contains(id), "alarm dimension {d} is not {id}");
    }
    let output = template
        .split("\n  Source:\n")
        .nth(1)
        .expect("Source output");
    let value = output.lines().find(|l| l.contains("Value:")).unwrap();
    assert!(value.contains(id), "Source output {value} is not {id}");
}
