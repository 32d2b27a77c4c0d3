//! Bench floor: the same decompressor, then every line parsed by the fastest JSON parser in
//! our dependency tree (serde_json) into its own document type — nothing else.
//! Usage: bench_floor FILE.jsonl.gz [value|skip|inflate] → prints {"records", "bytes", "seconds"}.
//! `skip` validates each line without building anything; `inflate` only splits lines.

use std::io::{BufRead, BufReader};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(2).map_or("value", String::as_str);
    let start = Instant::now();
    let file = std::fs::File::open(&args[1]).unwrap();
    let gz = flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(256 << 10, file));
    let mut reader = BufReader::with_capacity(256 << 10, gz);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        bytes += line.len() as u64;
        let ok = match mode {
            "inflate" => true,
            "skip" => serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok(),
            _ => serde_json::from_slice::<serde_json::Value>(&line)
                .map(|v| std::hint::black_box(v).is_object())
                .unwrap_or(false),
        };
        records += u64::from(ok);
    }
    println!(
        "{{\"records\": {records}, \"bytes\": {bytes}, \"seconds\": {}}}",
        start.elapsed().as_secs_f64()
    );
}
