//! The converter file loader's tests: every problem reported with its JSON path.

use super::*;

fn errors(text: &str) -> Vec<String> {
    match ConverterFile::load(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn reports_every_problem_with_its_path() {
    let errs = errors(
        r#"{"converterConfig":{"fileType":"jsn","compressionType":"gzip","extra":1,
            "convertToAmplitudeFunc":{"time":["iso_time_to_msx","t"],"user_id":["int","x"],
            "event_properties":{"a":["concat"]},"n":5}},
          "keyValidatorConfig":{"filterPattern":"("}}"#,
    );
    assert_eq!(
        errs,
        vec![
            r#"keyValidatorConfig.filterPattern: invalid regex "(": Parsing error at position 1: Opening parenthesis without closing parenthesis"#.to_string(),
            r#"converterConfig.extra: unknown key "extra""#.into(),
            r#"converterConfig.fileType: unknown value "jsn"; one of "json", "csv", "parquet""#.into(),
            r#"converterConfig.convertToAmplitudeFunc.time: unknown operator "iso_time_to_msx" (did you mean "iso_time_to_ms"?)"#.into(),
            r#"converterConfig.convertToAmplitudeFunc.user_id[1]: "int" takes an integer literal, got "x""#.into(),
            r#"converterConfig.convertToAmplitudeFunc.event_properties.a: "concat" takes at least 1 argument(s) (SD, SD...), got 0"#.into(),
            r#"converterConfig.convertToAmplitudeFunc.n: a bare number is not a SOURCE_DESCRIPTION; write ["int", 5] or ["value", 5]"#.into(),
        ]
    );
}

#[test]
fn filter_pattern_is_a_full_match() {
    let f = ConverterFile::load(
        r#"{"converterConfig":{"fileType":"json","compressionType":"none","convertToAmplitudeFunc":{}},
            "keyValidatorConfig":{"filterPattern":"events/.*\\.json"}}"#,
    )
    .unwrap();
    assert!(f.key_matches("events/a.json"));
    assert!(!f.key_matches("x/events/a.json"));
    assert!(!f.key_matches("events/a.json.gz"));
    assert_eq!(f.filter_pattern(), Some("events/.*\\.json"));
}

#[test]
fn parquet_and_strategy_conflicts_fail_to_load() {
    let base = |extra: &str| {
        format!(
            r#"{{"converterConfig":{{"fileType":"json","compressionType":"none","convertToAmplitudeFunc":{{}}{extra}}}}}"#
        )
    };
    assert!(errors(&base(
        r#","dataType":"profiles","importStrategy":"append_only""#
    ))[0]
        .contains("only the \"mirror\""));
    assert!(errors(&base(
        r#","dataType":"user_properties","importStrategy":"mirror""#
    ))[0]
        .contains("only the \"append_only\""));
    assert!(errors(&base(r#","ignoreEventFlag":"$ignore""#))[0].contains("no such field"));
    let f = ConverterFile::load(&base(r#","dataType":"profiles""#)).unwrap();
    assert_eq!(f.strategy, Strategy::Mirror);
    for ok in ["none", "auto"] {
        let f = ConverterFile::load(&format!(
            r#"{{"converterConfig":{{"fileType":"parquet","compressionType":"{ok}","convertToAmplitudeFunc":{{}}}}}}"#
        ))
        .unwrap();
        assert_eq!(f.file_type, FileType::Parquet);
    }
    for bad in ["gzip", "zstd"] {
        let p = errors(&format!(
            r#"{{"converterConfig":{{"fileType":"parquet","compressionType":"{bad}","convertToAmplitudeFunc":{{}}}}}}"#
        ));
        assert_eq!(
            p[0],
            format!("converterConfig.compressionType: \"{bad}\" does not apply to fileType \"parquet\": Parquet pages carry their own compression; use \"none\" (or \"auto\")")
        );
    }
}
