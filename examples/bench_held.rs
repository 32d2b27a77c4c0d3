//! Bench of the integrity pass: the same one-core conversion as `s3-import convert --threads 1`
//! (to a sink), with inflated bytes handed on as they come (`plain`) or held back until the
//! checksum of their gzip member or zstd frame is checked (`held`, what the importer does).
//! Usage: bench_held CONVERTER.json FILE plain|held → prints {"records", "seconds"}.

use std::time::Instant;

use s3_import::cli::{convert, ConvertEnd, ConvertRun};
use s3_import::convert::Converter;
use s3_import::decode::{Hold, Limits};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (config, path, mode) = (&args[1], &args[2], args[3].as_str());
    let converter = Converter::load(&std::fs::read_to_string(config).unwrap()).unwrap();
    let hold = (mode == "held").then_some(Hold {
        max_bytes: 64 << 30,
        stop: None,
    });
    let run = ConvertRun {
        converter: &converter,
        bucket: "local",
        key: path,
        limits: Limits {
            hold,
            ..Limits::default()
        },
        threads: 1,
        meter: None,
    };
    let start = Instant::now();
    let file = std::fs::File::open(path).unwrap();
    let summary = match convert(&run, file, &mut std::io::sink()) {
        ConvertEnd::Done(summary) => summary,
        other => panic!("{other:?}"),
    };
    println!(
        "{{\"records\": {}, \"seconds\": {}}}",
        summary.records,
        start.elapsed().as_secs_f64()
    );
}
