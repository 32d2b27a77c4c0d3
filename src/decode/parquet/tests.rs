//! The Parquet reader's tests, on files written by the `parquet` crate here.

use super::ranges::Mem;
use super::*;
use crate::datalang::KeyIds;
use parquet::file::properties::WriterVersion;
use std::borrow::Cow;
use std::sync::Mutex;

/// A [`ReadAt`] that reads ahead, as S3 does, and logs every read.
struct Logged {
    data: Vec<u8>,
    reads: Mutex<Vec<Range<u64>>>,
}

impl ReadAt for Logged {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        self.reads.lock().unwrap().push(offset..offset + len as u64);
        Mem(self.data.clone()).read_at(offset, len)
    }
    fn read_ahead(&self) -> bool {
        true
    }
}

#[test]
fn reading_ahead_fetches_each_row_group_once_and_none_before_the_start() {
    let data = golden("parquet_row_groups");
    let plain = ParquetFile::open(Mem(data.clone())).unwrap();
    let all = rows(&plain, Position::default());
    let groups = plain.row_groups().to_vec();
    let src = Arc::new(Logged {
        data,
        reads: Mutex::new(Vec::new()),
    });
    let file = ParquetFile::open(Arc::clone(&src)).unwrap();
    let footer_reads = src.reads.lock().unwrap().len();
    src.reads.lock().unwrap().clear();
    let n = groups[1].first_row + 2;
    let mut got = Vec::new();
    file.read(&Keys::All, file.position_of(n), &mut |n, rec| {
        if let Rec::Ok { record, .. } = rec {
            got.push((n, record.value.to_json()));
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(got, all[n as usize..]);
    let reads = src.reads.lock().unwrap().clone();
    // One read per row group from the one holding row n, none of the row group before.
    assert_eq!(
        reads.len(),
        groups.len() - 1,
        "{reads:?} (footer: {footer_reads})"
    );
    for (r, g) in reads.iter().zip(&groups[1..]) {
        assert!(
            r.start >= g.bytes.start && r.end <= g.bytes.end,
            "{r:?} {g:?}"
        );
    }
    assert!(reads.iter().all(|r| r.start >= groups[1].bytes.start));
    assert!(file.src.window.lock().unwrap().is_empty(), "window freed");
}

fn golden(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/golden/{name}/input.parquet",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rows(file: &ParquetFile<Mem>, from: Position) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    file.read(&Keys::All, from, &mut |n, rec| {
        if let Rec::Ok { record, .. } = rec {
            out.push((n, record.value.to_json()));
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

#[test]
fn bad_magic_and_truncation_are_named() {
    let e = ParquetFile::open(Mem(b"{\"a\": 1}\n".to_vec()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a Parquet file"), "{e}");
    let mut data = golden("parquet_row_groups");
    data.truncate(data.len() - 10);
    let e = ParquetFile::open(Mem(data)).err().unwrap();
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn row_groups_number_rows_across_groups_and_resume() {
    let file = ParquetFile::open(Mem(golden("parquet_row_groups"))).unwrap();
    let groups = file.row_groups().to_vec();
    assert!(groups.len() >= 3, "{groups:?}");
    assert_eq!(groups[1].first_row, groups[0].rows);
    for w in groups.windows(2) {
        assert!(w[0].bytes.end <= w[1].bytes.start, "{groups:?}");
    }
    let all = rows(&file, Position::default());
    assert_eq!(all.len() as u64, file.rows());
    assert!(all.iter().enumerate().all(|(i, (n, _))| *n == i as u64));
    // Resume at every row of the second group and at the start of the last one.
    for n in [
        groups[1].first_row,
        groups[1].first_row + 3,
        groups[2].first_row,
    ] {
        let pos = file.position_of(n);
        let rest = rows(&file, pos);
        assert_eq!(rest, all[n as usize..], "from {pos:?}");
    }
    let end = file.position_of(file.rows());
    assert!(rows(&file, end).is_empty());
}

/// A string column written by the `parquet` crate: one row group of `rows` (`None` null),
/// with small pages and a dictionary that falls back to plain pages, as format `version`.
fn strings_file(rows: &[Option<&[u8]>], version: WriterVersion, dictionary: bool) -> Vec<u8> {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = parquet::schema::parser::parse_message_type(
        "message m { optional binary s (UTF8); required binary r (UTF8); }",
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_writer_version(version)
        .set_dictionary_enabled(dictionary)
        .set_dictionary_page_size_limit(64)
        .set_data_page_size_limit(64)
        .set_write_batch_size(3)
        .build();
    let mut out = Vec::new();
    let mut w = SerializedFileWriter::new(&mut out, Arc::new(schema), Arc::new(props)).unwrap();
    let mut g = w.next_row_group().unwrap();
    let values: Vec<ByteArray> = rows
        .iter()
        .flatten()
        .map(|b| ByteArray::from(b.to_vec()))
        .collect();
    let defs: Vec<i16> = rows.iter().map(|r| i16::from(r.is_some())).collect();
    let mut c = g.next_column().unwrap().unwrap();
    c.typed::<ByteArrayType>()
        .write_batch(&values, Some(&defs), None)
        .unwrap();
    c.close().unwrap();
    let all: Vec<ByteArray> = (0..rows.len())
        .map(|i| ByteArray::from(format!("r{}", i % 3).as_str()))
        .collect();
    let mut c = g.next_column().unwrap().unwrap();
    c.typed::<ByteArrayType>()
        .write_batch(&all, None, None)
        .unwrap();
    c.close().unwrap();
    g.close().unwrap();
    w.close().unwrap();
    out
}

#[test]
fn string_pages_of_every_kind_read_alike_and_bad_utf8_makes_its_row_invalid() {
    let mut rows: Vec<Option<&[u8]>> = Vec::new();
    let texts: Vec<String> = (0..300)
        .map(|i| format!("v{}-{}", i % 37, "é".repeat(i % 5)))
        .collect();
    // After "caf\xc3", PLAIN, the length of this (130: 0x82) completes the "é" the
    // bad string breaks off: the run of values is UTF-8, the string alone is not.
    let long = "x".repeat(130);
    for (i, t) in texts.iter().enumerate() {
        rows.push(match i % 11 {
            0 => None,
            5 => Some(b"caf\xc3"),
            6 => Some(long.as_bytes()),
            7 => Some(b""),
            _ => Some(t.as_bytes()),
        });
    }
    let want: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Some(b) if std::str::from_utf8(b).is_err() => "invalid".to_string(),
            Some(b) => format!(
                r#"{{"s":{:?},"r":"r{}"}}"#,
                std::str::from_utf8(b).unwrap(),
                i % 3
            ),
            None => format!(r#"{{"r":"r{}"}}"#, i % 3),
        })
        .collect();
    for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
        for dictionary in [true, false] {
            let file = ParquetFile::open(Mem(strings_file(&rows, version, dictionary))).unwrap();
            for from in [0, 1, 123] {
                let mut got = Vec::new();
                file.read(&Keys::All, file.position_of(from), &mut |_, rec| {
                    got.push(match rec {
                        Rec::Ok { record, .. } => record.value.to_json(),
                        Rec::Invalid { reason, .. } => {
                            assert!(reason.contains("UTF-8"), "{reason}");
                            "invalid".to_string()
                        }
                    });
                    ControlFlow::Continue(())
                })
                .unwrap();
                assert_eq!(
                    got,
                    want[from as usize..],
                    "{version:?} {dictionary} {from}"
                );
            }
        }
    }
}

#[test]
fn a_break_stops_reading() {
    let file = ParquetFile::open(Mem(golden("parquet_row_groups"))).unwrap();
    let mut seen = 0;
    let stats = file
        .read(&Keys::All, Position::default(), &mut |_, _| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((seen, stats.records), (2, 2));
}

/// With the converter's keys, a row's top-level leaves are borrowed from their column's batch
/// in place: the record found by slot and the whole record are what reading every key gives.
#[test]
fn leaves_read_in_place_give_the_same_records() {
    let mut in_place_seen = 0;
    for name in [
        "parquet_nested_pyarrow",
        "parquet_nested_duckdb",
        "parquet_types_pyarrow",
        "parquet_warehouse_spark",
        "parquet_row_groups",
    ] {
        let file = ParquetFile::open(Mem(golden(name))).unwrap();
        let all = rows(&file, Position::default());
        let mut ids = KeyIds::default();
        let names: Vec<String> = file.plan.fields.iter().map(|(n, _)| n.clone()).collect();
        // One key more than the file has, read as absent.
        for (i, n) in names
            .iter()
            .chain(["no_such_field".to_string()].iter())
            .enumerate()
        {
            ids.get_or_insert(n, i as u32);
        }
        let keys = Keys::Only {
            raw: vec![false; names.len() + 1],
            ids,
        };
        let mut got = Vec::new();
        file.read(&keys, Position::default(), &mut |n, rec| {
            if let Rec::Ok { record, .. } = rec {
                let whole = record.whole();
                in_place_seen += usize::from(matches!(whole, Cow::Owned(_)));
                for (i, key) in names.iter().enumerate() {
                    assert_eq!(
                        record.slot(i as u32, key).map(V::to_json),
                        whole.get(key).map(V::to_json),
                        "{name} row {n} key {key}"
                    );
                }
                assert!(record.slot(names.len() as u32, "no_such_field").is_none());
                got.push((n, whole.to_json()));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(got, all, "{name}");
    }
    assert!(in_place_seen > 0, "no record had values read in place");
}

/// A row the converter finds invalid keeps as its raw text the fields the converter reads (the
/// others are not read), those read in place included, in the file's order.
#[test]
fn an_invalid_row_keeps_the_columns_read_as_its_raw_text() {
    use crate::convert::{Converter, Origin};
    use crate::pipeline::record::{convert_record, RecordResult};
    // `n` is a top-level leaf read in place; as a user_id ("0", "1", ...) it is too short.
    let converter = Converter::load(
        r#"{"converterConfig": {"fileType": "parquet", "compressionType": "none",
            "convertToAmplitudeFunc": {"event_type": ["value", "row"], "user_id": "n",
            "event_properties": {"list": "list", "map": "map"}}}}"#,
    )
    .unwrap();
    let file = ParquetFile::open(Mem(golden("parquet_nested_pyarrow"))).unwrap();
    let all = rows(&file, Position::default());
    let origin = Origin {
        bucket: "b",
        key: "k.parquet",
    };
    let mut raws = Vec::new();
    file.read(
        &converter.file.record_keys,
        Position::default(),
        &mut |n, rec| {
            match convert_record(&converter, origin, None, n, rec) {
                RecordResult::Invalid { n, reason, raw } => {
                    assert!(reason.contains("user_id"), "{reason}");
                    raws.push((n, raw));
                }
                _ => panic!("row {n} is not invalid"),
            }
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(raws.len(), all.len());
    for ((n, raw), (m, json)) in raws.iter().zip(&all) {
        assert_eq!(n, m);
        // The same keys in the same order, and the same values.
        let raw: serde_json::Value = serde_json::from_str(raw).unwrap();
        let mut want: serde_json::Value = serde_json::from_str(json).unwrap();
        let read = ["n", "list", "map"];
        want.as_object_mut()
            .unwrap()
            .retain(|k, _| read.contains(&k.as_str()));
        assert_eq!(raw, want, "row {n}");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&raw), keys(&want), "row {n}");
    }
}
