//! Bench input: a gzip JSON-lines file of realistic analytics events (300–600 bytes each:
//! nested objects, unicode, escapes, ISO timestamps with and without offsets).
//! Usage: bench_gen OUT MIN_UNCOMPRESSED_BYTES [gzip|members|zstd] → prints {"records", "bytes"}.
//! `gzip` (default): one gzip stream; `members`: a gzip member per 4 MB of lines (as writers
//! that flush make); `zstd`: one zstd frame with its content checksum.
//! `BENCH_EVENTS=dense` (environment): ~515-byte events (~390k in 200 MB) instead of ~700-byte
//! ones, as event-dense exports have: no `language`, `ip`, `app_version`, `library`, `is_test`
//! and no category path. Per-event costs weigh more in these.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const EVENTS: &[&str] = &[
    "Product Viewed",
    "Order Completed",
    "Search",
    "Add To Cart",
    "Page Viewed",
    "Sign Up",
];
const CITIES: &[&str] = &[
    "München",
    "São Paulo",
    "Zürich",
    "東京",
    "New York",
    "Kraków",
    "Montréal",
];
const COUNTRIES: &[&str] = &[
    "Germany",
    "Brazil",
    "Switzerland",
    "Japan",
    "United States",
    "Poland",
    "Canada",
];
const CATEGORIES: &[&str] = &[
    "Küche & Haushalt",
    "Books \"Classics\"",
    "Électronique",
    "Garden/Outdoor",
    "Toys\tKids",
];
const QUERIES: &[&str] = &[
    "red shoes",
    "\"exact phrase\"",
    "café crème",
    "back\\slash",
    "emoji 🚀 search",
    "tab\tseparated",
];
const PLATFORMS: &[(&str, &str)] = &[("iOS", "17.2"), ("Android", "14"), ("Web", "121")];

fn uuid(r: &mut Rng) -> String {
    let (a, b) = (r.next(), r.next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn time(r: &mut Rng) -> String {
    let day = 1 + r.below(28);
    let (h, m, s, ms) = (r.below(24), r.below(60), r.below(60), r.below(1000));
    match r.below(3) {
        0 => format!("2024-03-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z"),
        1 => format!("2024-03-{day:02} {h:02}:{m:02}:{s:02}.{ms:03}000"),
        _ => format!("2024-03-{day:02}T{h:02}:{m:02}:{s:02}+0{}:00", r.below(9)),
    }
}

fn event(r: &mut Rng, out: &mut String, dense: bool) {
    let city = r.below(CITIES.len() as u64) as usize;
    let (platform, os_version) = PLATFORMS[r.below(3) as usize];
    let device = if r.below(10) == 0 {
        String::new()
    } else {
        uuid(r)
    };
    let event_type = r.pick(EVENTS);
    let _ = write!(
        out,
        r#"{{"event_type":"{event_type}","user_id":"user_{}","device_id":"{device}","event_time":"{}","session_id":{},"insert_id":"{}","platform":"{platform}","os_name":"{platform}","os_version":"{os_version}","#,
        r.below(100_000),
        time(r),
        1_709_600_000_000 + r.below(1_000_000_000),
        uuid(r),
    );
    let (app, ip) = (r.below(20), r.below(255));
    if !dense {
        let _ = write!(out, r#""app_version":"5.{app}.0","#);
    }
    let _ = write!(
        out,
        r#""country":"{}","city":"{}","#,
        COUNTRIES[city], CITIES[city]
    );
    if !dense {
        let _ = write!(out, r#""language":"de-DE","ip":"203.0.113.{ip}","#);
    }
    let price = r.below(100_000) as f64 / 100.0;
    let _ = write!(
        out,
        r#""event_properties":{{"product_id":"SKU-{}","price":{price},"currency":"EUR","category":{{"name":"{}""#,
        r.below(10_000),
        escape(r.pick(CATEGORIES)),
    );
    let shelf = r.below(100);
    if !dense {
        let _ = write!(out, r#","path":["home","kitchen",{shelf}]"#);
    }
    let _ = write!(
        out,
        r#"}},"query":"{}","position":{}}},"user_properties":{{"plan":"{}","cohort":"2023-Q{}","flags":{{"beta":{}}}}}"#,
        escape(r.pick(QUERIES)),
        r.below(50),
        r.pick(&["free", "pro", "enterprise"]),
        1 + r.below(4),
        r.below(2) == 0,
    );
    if !dense {
        out.push_str(r#","library":{"name":"amplitude-swift","version":"1.3.0"},"is_test":false"#);
    }
    out.push_str("}\n");
}

fn escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap();
    quoted[1..quoted.len() - 1].to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: bench_gen OUT.jsonl.gz MIN_BYTES");
    let min: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000_000);
    let format = args.get(3).map_or("gzip", String::as_str);
    let mut file = BufWriter::new(std::fs::File::create(path).unwrap());
    let gzip = |out: &mut BufWriter<std::fs::File>, data: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
        gz.write_all(data).unwrap();
        gz.finish().unwrap();
    };
    let dense = std::env::var("BENCH_EVENTS").is_ok_and(|v| v == "dense");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut line = String::with_capacity(1024);
    let mut text = Vec::new();
    while bytes < min {
        line.clear();
        event(&mut rng, &mut line, dense);
        text.extend_from_slice(line.as_bytes());
        records += 1;
        bytes += line.len() as u64;
        if format == "members" && text.len() >= 4_000_000 {
            gzip(&mut file, &text);
            text.clear();
        }
    }
    match format {
        "zstd" => {
            let mut z = zstd::stream::Encoder::new(&mut file, 3).unwrap();
            z.include_checksum(true).unwrap();
            z.write_all(&text).unwrap();
            z.finish().unwrap();
        }
        _ => gzip(&mut file, &text),
    }
    file.flush().unwrap();
    println!("{{\"records\": {records}, \"bytes\": {bytes}}}");
}
