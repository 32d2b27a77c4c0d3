//! The settings' checks: every problem listed with its variable, and the defaults.
use super::*;
use std::collections::HashMap;

fn settings_from(pairs: &[(&str, &str)]) -> Result<Settings, Vec<String>> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Settings::from_lookup(&|k| map.get(k).cloned())
}

const BASE: &[(&str, &str)] = &[
    ("S3I_CONVERTER", "s3://config/converter.json"),
    ("S3I_REPORTS", "s3://data/s3-import-reports/"),
    ("AMPLITUDE_API_KEY", "k"),
    ("S3I_PREFIX", "events/"),
];

#[test]
fn hidden_files_are_ignored_unless_asked_for() {
    let base = [
        ("S3I_CONVERTER", "s3://c/converter.json"),
        ("S3I_REPORTS", "s3://r/reports/"),
        ("AMPLITUDE_API_KEY", "k"),
        ("S3I_SOURCE", "b"),
        ("S3I_PREFIX", "_exports/"),
    ];
    let s = settings_from(&base).unwrap();
    for key in [
        "_exports/t/_temporary/0/part-0.parquet",
        "_exports/t/_SUCCESS",
        "_exports/t/.part-00000.parquet.crc",
        "_exports/t/_delta_log/00000.json",
        "_exports/.hidden",
    ] {
        let why = s.excludes("b", key).unwrap_or_else(|| panic!("{key}"));
        assert!(why.starts_with("a hidden file"), "{key}: {why}");
    }
    // The prefix's own segments are not looked at; ordinary names are imported.
    for key in ["_exports/t/part-00000.parquet", "_exports/a_b/c.d.json"] {
        assert_eq!(s.excludes("b", key), None, "{key}");
    }
    let mut all = base.to_vec();
    all.push(("S3I_HIDDEN_FILES", "import"));
    let s = settings_from(&all).unwrap();
    assert_eq!(s.excludes("b", "_exports/t/_SUCCESS"), None);
    let mut bad = base.to_vec();
    bad.push(("S3I_HIDDEN_FILES", "maybe"));
    assert!(settings_from(&bad).is_err());
}

#[test]
fn every_problem_is_listed_with_its_variable() {
    let problems = settings_from(&[
        ("S3I_CONVERTER", "config/converter.json"),
        ("S3I_MAX_IN_FLIGHT", "many"),
        ("S3I_REGION", "mars"),
        ("S3I_GZIP", "perhaps"),
        ("S3I_MAX_DECOMPRESSION_RATIO", "1000x"),
    ])
    .unwrap_err();
    let text = problems.join("\n");
    for want in [
        "S3I_CONVERTER: `config/converter.json` is not an s3://bucket/key location",
        "S3I_REPORTS is required",
        "AMPLITUDE_API_KEY (or S3I_API_KEY_SECRET, a Secrets Manager secret) is required",
        "S3I_MAX_IN_FLIGHT: `many` is not a valid number",
        "S3I_REGION: `mars` is not us or eu",
        "S3I_GZIP: `perhaps` is not true or false",
        "S3I_MAX_DECOMPRESSION_RATIO: `1000x` is not a valid number",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}

#[test]
fn reports_under_the_watched_prefix_are_refused_and_excluded() {
    let mut pairs = BASE.to_vec();
    pairs.retain(|p| p.0 != "S3I_REPORTS");
    pairs.push(("S3I_REPORTS", "s3://data/events/reports/"));
    assert!(settings_from(&pairs).unwrap_err()[0].contains("would trigger imports of themselves"));

    let settings = settings_from(BASE).unwrap();
    assert_eq!(settings.excludes("data", "events/a.json"), None);
    assert!(settings
        .excludes("data", "s3-import-reports/x.json")
        .is_some());
    assert!(settings
        .excludes("data", "other/a.json")
        .unwrap()
        .contains("outside the prefix"));
    assert!(settings.excludes("config", "converter.json").is_some());
    let mut pairs = BASE.to_vec();
    pairs.push(("S3I_FILTER_PATTERN", r".*\.json(\.gz)?"));
    let settings = settings_from(&pairs).unwrap();
    assert_eq!(settings.excludes("data", "events/a.json.gz"), None);
    assert!(settings.excludes("data", "events/a.csv").is_some());
}

#[test]
fn defaults_a_user_would_accept() {
    let settings = settings_from(BASE).unwrap();
    assert_eq!(settings.sink.base_url, "https://api2.amplitude.com");
    assert_eq!(settings.claims_table, "s3-import-claims");
    assert_eq!(settings.dedupe_table.as_deref(), Some("s3-import-dedupe"));
    assert_eq!(settings.source, "default");
    assert!(format!("{:?}", settings.sink).contains("<redacted>"));
    let mut pairs = BASE.to_vec();
    pairs.push(("S3I_DEDUPE_TABLE", "off"));
    pairs.push(("S3I_CLAIMS_TABLE", "claims-b"));
    let settings = settings_from(&pairs).unwrap();
    assert_eq!(settings.claims_table, "claims-b");
    assert_eq!(settings.dedupe_table, None);
}

#[test]
fn the_endpoint_wins_over_the_region_and_the_region_is_us_or_eu() {
    let us = "https://api2.amplitude.com".to_string();
    let eu = "https://api.eu.amplitude.com".to_string();
    let local = "http://127.0.0.1:8787".to_string();
    for (endpoint, region, want) in [
        (None, "us", Ok(us.clone())),
        (None, "eu", Ok(eu.clone())),
        (None, "EU", Err(UnknownRegion("EU".into()))),
        (None, "mars", Err(UnknownRegion("mars".into()))),
        (None, "", Err(UnknownRegion(String::new()))),
        (Some(local.clone()), "us", Ok(local.clone())),
        (Some(local.clone()), "mars", Ok(local.clone())),
    ] {
        assert_eq!(
            base_url(endpoint.clone(), region),
            want,
            "{endpoint:?} {region}"
        );
    }
    let mut pairs = BASE.to_vec();
    pairs.push(("S3I_REGION", "eu"));
    assert_eq!(settings_from(&pairs).unwrap().sink.base_url, eu);
    pairs.push(("S3I_ENDPOINT", "http://127.0.0.1:8787"));
    assert_eq!(settings_from(&pairs).unwrap().sink.base_url, local);
    let mut pairs = BASE.to_vec();
    pairs.push(("S3I_ENDPOINT", "127.0.0.1:8787"));
    assert!(settings_from(&pairs).unwrap_err()[0].contains("is not an http(s) URL"));
}

#[test]
fn tables_default_and_dedupe_turns_off() {
    let none = Tables::from_lookup(&|_| None);
    assert_eq!(none.claims, DEFAULT_CLAIMS_TABLE);
    assert_eq!(none.dedupe.as_deref(), Some(DEFAULT_DEDUPE_TABLE));
    let off = Tables::from_lookup(&|name| (name == "S3I_DEDUPE_TABLE").then(|| "off".into()));
    assert_eq!(off.dedupe, None);
    assert_eq!(off.claims, DEFAULT_CLAIMS_TABLE);
}

#[test]
fn threads_and_objects_at_once_follow_the_functions_memory() {
    // 1,769 MB is one vCPU's worth of time, 3,538 MB two.
    assert_eq!(default_threads_for(Some(128), 2), 1);
    assert_eq!(default_threads_for(Some(1769), 2), 1);
    assert_eq!(default_threads_for(Some(3538), 2), 2);
    assert_eq!(default_threads_for(Some(10240), 6), 2);
    assert_eq!(default_threads_for(None, 1), 1);
    assert_eq!(default_threads_for(None, 8), 2);
    assert_eq!(default_object_concurrency_for(Some(128)), 1);
    assert_eq!(default_object_concurrency_for(Some(512)), 3);
    assert_eq!(default_object_concurrency_for(Some(1024)), 6);
    assert_eq!(default_object_concurrency_for(Some(1769)), 10);
    assert_eq!(default_object_concurrency_for(None), 10);
    let mut pairs = BASE.to_vec();
    pairs.push(("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769"));
    let s = settings_from(&pairs).unwrap();
    assert_eq!((s.threads, s.object_concurrency), (1, 10));
    pairs.push(("S3I_OBJECT_CONCURRENCY", "3"));
    pairs.push(("S3I_THREADS", "2"));
    let s = settings_from(&pairs).unwrap();
    assert_eq!((s.threads, s.object_concurrency), (2, 3));
    pairs.push(("S3I_OBJECT_CONCURRENCY", "0"));
    assert_eq!(settings_from(&pairs).unwrap().object_concurrency, 1);
    assert_eq!(
        settings_from(BASE).unwrap().scan_queued,
        Duration::from_secs(86_400)
    );
}

#[test]
fn the_decompression_ratio_cap_can_be_raised_or_turned_off() {
    assert_eq!(
        settings_from(BASE).unwrap().limits.max_decompression_ratio,
        1000
    );
    for (value, want) in [("5000", 5000), (" 0 ", 0)] {
        let mut pairs = BASE.to_vec();
        pairs.push(("S3I_MAX_DECOMPRESSION_RATIO", value));
        assert_eq!(
            settings_from(&pairs)
                .unwrap()
                .limits
                .max_decompression_ratio,
            want
        );
    }
    let mut pairs = BASE.to_vec();
    pairs.push(("S3I_MAX_DECOMPRESSION_RATIO", "-1"));
    assert!(settings_from(&pairs).unwrap_err()[0].contains("S3I_MAX_DECOMPRESSION_RATIO"));
}
