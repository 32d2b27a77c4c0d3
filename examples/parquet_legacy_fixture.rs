//! Writes the golden fixture tests/golden/parquet_warehouse_spark_legacy/input.parquet: the
//! legacy layouts that pyarrow cannot write, as old parquet-mr, Hive and Spark's
//! `spark.sql.parquet.writeLegacyFormat=true` (Databricks too) emit them, under the root name
//! `spark_schema`, snappy, with INT96 timestamps. tests/parquet/gen.py runs it
//! (`cargo run --example parquet_legacy_fixture -- OUT.parquet`) and then writes the case's
//! reference from pyarrow's own reading of the file.
//!
//! The layouts (Parquet LogicalTypes.md, "Backward-compatibility rules"):
//! - `two_level`: `repeated int32 array` directly in the LIST (parquet-mr/Hive, and Spark's
//!   legacy format for non-nullable elements);
//! - `two_level_struct`: a repeated group named `array` that is itself the struct element;
//! - `tuple_list`: a repeated group named `<list>_tuple` (parquet-thrift) as the element;
//! - `spark_legacy`: `repeated group bag { optional … array; }` (Spark's legacy format for
//!   nullable elements);
//! - `legacy_map`: `repeated group map (MAP_KEY_VALUE)` (Spark's legacy format, Hive);
//! - `bare_repeated`, `bare_group`: repeated fields without a LIST annotation
//!   (protobuf-style writers);
//! - `legacy_decimal`: a decimal(38, 2) as FIXED_LEN_BYTE_ARRAY(16), as the legacy format
//!   writes every decimal.

use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{
    ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int32Type, Int64Type,
    Int96, Int96Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

const SCHEMA: &str = "
message spark_schema {
  required binary event_id (UTF8);
  optional int96 event_time;
  optional group two_level (LIST) {
    repeated int32 array;
  }
  optional group two_level_struct (LIST) {
    repeated group array {
      optional binary name (UTF8);
      optional int32 n;
    }
  }
  optional group tuple_list (LIST) {
    repeated group tuple_list_tuple {
      required binary str (UTF8);
    }
  }
  optional group spark_legacy (LIST) {
    repeated group bag {
      optional binary array (UTF8);
    }
  }
  optional group legacy_map (MAP) {
    repeated group map (MAP_KEY_VALUE) {
      required binary key (UTF8);
      optional int64 value;
    }
  }
  repeated int64 bare_repeated;
  repeated group bare_group {
    optional binary k (UTF8);
  }
  optional fixed_len_byte_array(16) legacy_decimal (DECIMAL(38, 2));
}
";

/// One leaf column's values (only the present ones) and its levels, one per triplet.
enum Data {
    Str(Vec<&'static str>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    I96(Vec<Int96>),
    Fixed(Vec<i128>),
}

struct Col {
    data: Data,
    defs: Vec<i16>,
    reps: Vec<i16>,
}

fn col(data: Data, defs: &[i16], reps: &[i16]) -> Col {
    Col {
        data,
        defs: defs.to_vec(),
        reps: reps.to_vec(),
    }
}

/// An INT96 timestamp: nanoseconds of the day, then the Julian day.
fn int96(epoch_ns: i64) -> Int96 {
    let day = 86_400_000_000_000i64;
    let (days, nanos) = (epoch_ns.div_euclid(day), epoch_ns.rem_euclid(day));
    let julian = (days + 2_440_588) as u32;
    Int96::from(vec![nanos as u32, (nanos >> 32) as u32, julian])
}

/// Three rows: values, then nulls and empty lists, then the remaining mixes.
fn columns() -> Vec<Col> {
    use Data::*;
    vec![
        col(Str(vec!["e-0", "e-1", "e-2"]), &[], &[]),
        col(
            I96(vec![int96(1_710_057_599_999_999_999), int96(-1)]),
            &[1, 0, 1],
            &[],
        ),
        // two_level: [1, 2, 3], null, []
        col(I32(vec![1, 2, 3]), &[2, 2, 2, 0, 1], &[0, 1, 1, 0, 0]),
        // two_level_struct: [{a, 1}, {null, 2}], [], null
        col(Str(vec!["a"]), &[3, 2, 1, 0], &[0, 1, 0, 0]),
        col(I32(vec![1, 2]), &[3, 3, 1, 0], &[0, 1, 0, 0]),
        // tuple_list: [{x}], null, []
        col(Str(vec!["x"]), &[2, 0, 1], &[0, 0, 0]),
        // spark_legacy: ["a", null], [], null
        col(Str(vec!["a"]), &[3, 2, 1, 0], &[0, 1, 0, 0]),
        // legacy_map: {k: 1, n: null}, {}, null
        col(Str(vec!["k", "n"]), &[2, 2, 1, 0], &[0, 1, 0, 0]),
        col(I64(vec![1]), &[3, 2, 1, 0], &[0, 1, 0, 0]),
        // bare_repeated: [10, 20], [], [7]
        col(I64(vec![10, 20, 7]), &[1, 1, 0, 1], &[0, 1, 0, 0]),
        // bare_group: [{k: v}], [], [{k: null}, {k: w}]
        col(Str(vec!["v", "w"]), &[2, 0, 1, 2], &[0, 0, 0, 1]),
        // legacy_decimal: 12.30, null, -1234567890123456789012345678901234.56
        col(
            Fixed(vec![1230, -123_456_789_012_345_678_901_234_567_890_123_456]),
            &[1, 0, 1],
            &[],
        ),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: parquet_legacy_fixture OUT.parquet")?;
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(&out)?;
    let mut writer = SerializedFileWriter::new(file, schema, Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    let mut cols = columns().into_iter();
    while let Some(mut w) = group.next_column()? {
        let c = cols.next().ok_or("more columns in the schema than data")?;
        let defs = (!c.defs.is_empty()).then_some(&c.defs[..]);
        let reps = (!c.reps.is_empty()).then_some(&c.reps[..]);
        match c.data {
            Data::Str(v) => {
                let v: Vec<ByteArray> = v.into_iter().map(ByteArray::from).collect();
                w.typed::<ByteArrayType>().write_batch(&v, defs, reps)?
            }
            Data::I32(v) => w.typed::<Int32Type>().write_batch(&v, defs, reps)?,
            Data::I64(v) => w.typed::<Int64Type>().write_batch(&v, defs, reps)?,
            Data::I96(v) => w.typed::<Int96Type>().write_batch(&v, defs, reps)?,
            Data::Fixed(v) => {
                let v: Vec<FixedLenByteArray> = v
                    .into_iter()
                    .map(|x| FixedLenByteArray::from(x.to_be_bytes().to_vec()))
                    .collect();
                w.typed::<FixedLenByteArrayType>()
                    .write_batch(&v, defs, reps)?
            }
        };
        w.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}
