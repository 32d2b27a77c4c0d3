//! Decompression's tests: formats told by their bytes, members and frames, ratio caps.

use super::*;
use std::io::Write;
use std::time::Instant;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A gzip of `mib` MiB of zeros (a multiple of 4), built from one 4 MiB member repeated
/// (concatenated gzip is read whole), so that a big bomb costs one small compression.
fn gzip_zeros(mib: usize) -> Vec<u8> {
    static MEMBER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    MEMBER
        .get_or_init(|| gzip(&vec![0u8; 4 << 20]))
        .repeat(mib / 4)
}

/// Reads everything, keeping nothing; the bytes that came out, or the error.
fn drain(
    data: &[u8],
    compression: Compression,
    limits: Limits,
    after: u64,
) -> Result<u64, DecodeError> {
    let mut d = decompress_judged_after(data, compression, limits, after)?;
    io::copy(&mut d, &mut io::sink()).map_err(|e| classify(e, d.counter().get()))
}

#[test]
fn a_gzip_bomb_fails_as_a_bomb_under_the_default_ratio() {
    let bomb = gzip_zeros(32);
    let ratio = (32u64 << 20) / bomb.len() as u64;
    assert!(ratio > 1000, "zeros inflate {ratio}:1");

    let started = Instant::now();
    let e = drain(&bomb, Compression::Auto, Limits::default(), 8 << 20).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, DecodeError::Bomb { limit: 1000, .. }), "{text}");
    assert!(!e.is_retryable());
    for want in [
        "decompression bomb",
        "S3I_MAX_DECOMPRESSION_RATIO",
        "limit of 1000:1",
        "gzip data inflates 10",
    ] {
        assert!(text.contains(want), "missing `{want}` in: {text}");
    }
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn zstd_frames_one_per_line_decode_with_one_context_and_end_checked() {
    let lines: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
        .collect();
    let mut data: Vec<u8> = lines
        .iter()
        .flat_map(|l| zstd::stream::encode_all(&l[..], 3).unwrap())
        .collect();
    let whole = lines.concat();
    let mut out = Vec::new();
    decompress(&data[..], Compression::Auto, Limits::default())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, whole);
    // Cut inside the last frame: an error, never a short success.
    let cut = &data[..data.len() - 3];
    let e = drain(cut, Compression::Zstd, Limits::default(), RATIO_AFTER).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    // Something after the last frame that is not a frame.
    data.extend_from_slice(b"not zstd");
    let e = drain(&data, Compression::Zstd, Limits::default(), RATIO_AFTER).unwrap_err();
    assert!(e.to_string().contains("not a zstd frame"), "{e}");
}

#[test]
fn a_zstd_bomb_fails_as_a_bomb() {
    let bomb = zstd::stream::encode_all(&vec![0u8; 32 << 20][..], 3).unwrap();
    let e = drain(&bomb, Compression::Zstd, Limits::default(), 8 << 20).unwrap_err();
    assert!(matches!(e, DecodeError::Bomb { codec: "zstd", .. }), "{e}");
}

#[test]
fn a_bomb_read_as_json_lines_fails_the_object_after_64_mib() {
    // Before the cap, such an object ended well, with one over-long invalid record.
    let file = crate::config::ConverterFile::load(
        r#"{"converterConfig":{"fileType":"json","compressionType":"auto","convertToAmplitudeFunc":{}}}"#,
    )
    .unwrap();
    let bomb = gzip_zeros(80);
    let mut records = 0;
    let e = super::super::read_records(
        &bomb[..],
        &file,
        &file.record_keys,
        Limits::default(),
        2,
        |_, _| {
            records += 1;
            std::ops::ControlFlow::Continue(())
        },
    )
    .unwrap_err();
    let DecodeError::Bomb { output, .. } = e else {
        panic!("{e}")
    };
    assert!((64 << 20..66 << 20).contains(&output), "{output}");
    assert_eq!(records, 0);
}

#[test]
fn ordinary_data_and_a_ratio_of_0_pass() {
    let mut lines = String::new();
    let mut n = 1u64;
    while lines.len() < 2 << 20 {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lines.push_str(&format!(
            "{{\"event_type\":\"page_view\",\"device_id\":\"d-{}\",\"time\":{},\"insert_id\":\"{n:x}\",\"event_properties\":{{\"path\":\"/p/{}\",\"ok\":true}}}}\n",
            n % 5000,
            1_700_000_000_000u64 + (n >> 40),
            n % 97
        ));
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(lines.as_bytes()).unwrap();
    let gz = e.finish().unwrap();

    let zst = zstd::stream::encode_all(lines.as_bytes(), 3).unwrap();
    for (data, codec) in [(&gz, Compression::Gzip), (&zst, Compression::Zstd)] {
        let got = drain(data, codec, Limits::default(), 1 << 20).unwrap();
        assert_eq!(got, lines.len() as u64);
    }
    let off = Limits {
        max_decompression_ratio: 0,
        ..Limits::default()
    };
    let bomb = gzip_zeros(32);
    assert_eq!(
        drain(&bomb, Compression::Gzip, off, 1 << 20).unwrap(),
        32 << 20
    );
    // Plain data is never judged.
    let zeros = vec![0u8; 4 << 20];
    assert_eq!(
        drain(&zeros, Compression::None, Limits::default(), 1 << 20).unwrap(),
        4 << 20
    );
}
