//! The decoders' tests: file types, compression, restart points, limits.

use super::*;

fn file(file_type: &str, compression: &str, extra: &str) -> ConverterFile {
    ConverterFile::load(&format!(
        r#"{{"converterConfig":{{"fileType":"{file_type}","compressionType":"{compression}"{extra},
            "convertToAmplitudeFunc":{{"event_type":"e"}}}}}}"#
    ))
    .unwrap()
}

/// Every record as (number, JSON text), and the restart points passed, reading from `from`.
fn read(
    data: &[u8],
    file: &ConverterFile,
    threads: usize,
    from: Option<&Restart>,
) -> (Vec<(u64, String)>, Vec<Restart>) {
    let start = from.map_or(0, |r| r.offset as usize);
    let (mut records, mut marks) = (Vec::new(), Vec::new());
    read_records_from(
        &data[start..],
        file,
        &Keys::All,
        Limits::default(),
        threads,
        from,
        &mut |r| marks.push(r),
        |n, rec| {
            let text = match rec {
                Rec::Ok { record, .. } => serde_json::to_string(&record.value).unwrap(),
                Rec::Invalid { reason, .. } => format!("invalid: {reason}"),
            };
            records.push((n, text));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    (records, marks)
}

/// Reading from each restart point yields exactly the records from its number on.
fn check_every_restart(data: &[u8], file: &ConverterFile, threads: usize) -> usize {
    let (all, marks) = read(data, file, threads, None);
    assert!(marks.len() >= 3, "several restart points: {}", marks.len());
    assert!(
        marks.iter().all(|m| m.offset < data.len() as u64),
        "a restart has data after it"
    );
    for pair in marks.windows(2) {
        assert!(pair[0].n < pair[1].n && pair[0].offset < pair[1].offset);
        if pair[0].plain {
            assert!(pair[1].offset - pair[0].offset >= RESTART_EVERY);
        }
    }
    for (i, m) in marks.iter().enumerate() {
        let (rest, later) = read(data, file, threads, Some(m));
        assert_eq!(rest.as_slice(), &all[m.n as usize..], "from {m:?}");
        assert_eq!(
            later.first(),
            Some(m),
            "a resumed reading starts at its restart point"
        );
        // The restart points a resumed reading passes are good as well.
        if i == 1 {
            assert!(later.len() >= 2);
            for l in &later[1..] {
                let (rest, _) = read(data, file, threads, Some(l));
                assert_eq!(rest.as_slice(), &all[l.n as usize..], "from {l:?}");
            }
        }
    }
    marks.len()
}

/// JSON lines that compress about 2:1 (hex from a fixed generator).
fn noisy_lines(records: usize) -> Vec<Vec<u8>> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..records)
        .map(|i| {
            let pad: String = (0..50)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{:04x}", x & 0xffff)
                })
                .collect();
            format!("{{\"e\":\"ev-{i}\",\"pad\":\"{pad}\"}}\n").into_bytes()
        })
        .collect()
}

fn json_lines(records: usize) -> Vec<u8> {
    let mut out = Vec::from(&b"\xEF\xBB\xBF"[..]);
    for i in 0..records {
        let pad = "é".repeat(i % 700);
        out.extend_from_slice(format!("{{\"e\":\"ev-{i}\",\"pad\":\"{pad}\"}}").as_bytes());
        out.extend_from_slice(match i % 5 {
            0 => b"\r\n".as_slice(),
            1 => b"\n\n   \n".as_slice(),
            2 => b"\nnot json\n".as_slice(),
            _ => b"\n".as_slice(),
        });
    }
    out
}

#[test]
fn json_lines_restart_at_line_boundaries_with_the_right_numbers() {
    let data = json_lines(12_000);
    let plain = file("json", "none", "");
    check_every_restart(&data, &plain, 1);
    check_every_restart(&data, &plain, 2);
    check_every_restart(&data, &file("json", "auto", ""), 2);
}

#[test]
fn csv_restarts_carry_the_header_and_keep_quoted_newlines_whole() {
    let mut data = Vec::from(&b"\xEF\xBB\xBFe,\"note\",n\r\n"[..]);
    for i in 0..120_000 {
        let row = match i % 4 {
            0 => format!("ev-{i},\"two\nlines, {}\",{i}\r\n", "x".repeat(i % 90)),
            1 => format!("ev-{i},plain,{i}\n\n"),
            2 => format!("ev-{i},\"quote \"\"{i}\"\"\",{i}\n"),
            _ => format!("ev-{i},too,many,fields\n"),
        };
        data.extend_from_slice(row.as_bytes());
    }
    let with_header = file("csv", "none", "");
    check_every_restart(&data, &with_header, 1);
    let (_, marks) = read(&data, &with_header, 1, None);
    assert_eq!(
        marks[0].header.as_deref(),
        Some(&["e".to_string(), "note".into(), "n".into()][..])
    );
    assert!(marks[0].fits(&with_header));
    assert!(!marks[0].fits(&file("json", "none", "")));

    // The last row starts just before a restart step and ends past it: no restart at the
    // end of the object (there is nothing to read from there).
    let mut data = b"e,pad\n".to_vec();
    for i in 0..1049 {
        let row = format!("ev-{i:04},{}\n", "x".repeat(1000 - 9));
        assert_eq!(row.len(), 1000);
        data.extend_from_slice(row.as_bytes());
    }
    let (records, marks) = read(&data, &with_header, 1, None);
    assert_eq!(records.len(), 1049);
    assert!(
        marks.iter().all(|m| m.offset < data.len() as u64),
        "{marks:?}"
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_single_gzip_stream_restarts_only_at_its_start() {
    let data = json_lines(12_000);
    let (records, marks) = read(&gzip(&data), &file("json", "auto", ""), 2, None);
    assert_eq!(
        records.len(),
        read(&data, &file("json", "none", ""), 2, None).0.len()
    );
    assert!(
        !marks.is_empty() && marks.iter().all(|m| m.offset == 0),
        "{marks:?}"
    );
}

#[test]
fn several_gzip_members_or_zstd_frames_restart_at_their_starts() {
    let lines = noisy_lines(30_000);
    // Members and frames of 700 lines (about 150 KB stored): not every one is a restart.
    let gz: Vec<u8> = lines.chunks(700).flat_map(|c| gzip(&c.concat())).collect();
    let json = file("json", "auto", "");
    let n = check_every_restart(&gz, &json, 2);
    assert!(n >= 4, "{n}");
    // Zstd frames, each followed by a skippable frame (as seek tables and metadata are):
    // restarts are at data frames only, with zstd or auto.
    let skippable = [&[0x5e, 0x2a, 0x4d, 0x18, 4, 0, 0, 0][..], b"meta"].concat();
    let zst: Vec<u8> = lines
        .chunks(700)
        .flat_map(|c| {
            let frame = zstd::stream::encode_all(&c.concat()[..], 1).unwrap();
            [frame, skippable.clone()].concat()
        })
        .collect();
    check_every_restart(&zst, &file("json", "zstd", ""), 1);
    check_every_restart(&zst, &file("json", "auto", ""), 2);
    // A restart in the middle of a member skips to its line.
    let (_, marks) = read(&gz, &json, 2, None);
    assert!(marks.iter().any(|m| m.skip > 0), "{marks:?}");
    // CSV inside gzip members.
    let mut csv = b"e,pad\n".to_vec();
    csv.extend(lines.iter().flat_map(|l| {
        let text = String::from_utf8_lossy(l);
        format!("{},{}\n", &text[6..14], &text[30..200]).into_bytes()
    }));
    let members: Vec<u8> = csv.chunks(100_000).flat_map(gzip).collect();
    check_every_restart(&members, &file("csv", "gzip", ""), 1);
}
