#!/usr/bin/env python3
"""Writes the Parquet golden cases under tests/golden/ (input.parquet, converter.json,
case.json); `UPDATE_GOLDEN=1 cargo test --test golden` then writes their expectations.
Also writes tests/parquet/events.parquet, the multi-row-group object that tests/parquet_s3.rs
imports from the local S3 over several invocations.

    python3 -m venv /tmp/pqvenv && /tmp/pqvenv/bin/pip install -r tests/parquet/requirements.txt
    /tmp/pqvenv/bin/python tests/parquet/gen.py

Every file is small and written by pyarrow or by DuckDB (the two writers most exports come
from), so the cases cover both writers' layouts: dictionary pages, several row groups, nested
types, every page codec, INT96 timestamps as Spark writes them, and broken files.
"""

import base64
import datetime as dt
import decimal
import json
import os
import struct
import uuid

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
D = decimal.Decimal


def case(name, converter, writer, case_json=None):
    """Writes one case directory: `writer(path)` writes input.parquet."""
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if old.startswith("input"):
            os.remove(os.path.join(d, old))
    writer(os.path.join(d, "input.parquet"))
    with open(os.path.join(d, "converter.json"), "w") as f:
        json.dump(converter, f, indent=1)
        f.write("\n")
    path = os.path.join(d, "case.json")
    if case_json:
        with open(path, "w") as f:
            json.dump(case_json, f, indent=1)
            f.write("\n")
    elif os.path.exists(path):
        os.remove(path)


def converter(props, compression="none", **extra):
    """An event converter that copies the named columns into event_properties."""
    func = {
        "event_type": ["value", "row"],
        "user_id": ["value", "user-1"],
        "event_properties": {p: p for p in props},
    }
    func.update(extra)
    return {
        "converterConfig": {
            "fileType": "parquet",
            "compressionType": compression,
            "convertToAmplitudeFunc": func,
        }
    }


def pa_writer(table, **kw):
    return lambda path: pq.write_table(table, path, **kw)


def duck_writer(sql, **opts):
    def write(path):
        o = ", ".join(["FORMAT parquet"] + [f"{k} {v}" for k, v in opts.items()])
        duckdb.connect().execute(f"COPY ({sql}) TO '{path}' ({o})")

    return write


# --- Amplitude's documented example --------------------------------------------------------

DOCS_CONVERTER = {
    "config_name": ["Event sample converter"],
    "converterConfig": {
        "fileType": "parquet",
        "compressionType": "none",
        "convertToAmplitudeFunc": {
            "event_type": "action",
            "user_id": "user",
            "device_id": "device",
            "event_properties": {"business_id_encid": "business_id"},
            "user_properties": {
                "utm_channel_category": "utm_channel_c",
                "utm_channel_source": "utm_channel_s",
            },
            "time": "epoch",
            "session_id": "session_id",
            "app_version": "app_version",
        },
    },
    "keyValidatorConfig": {"filterPattern": "folder1/folder2/ds=202011[1-2][0-9]/.*\\.parquet"},
}
DOCS_KEY = ["--key", "folder1/folder2/ds=20201115/part-00000.parquet"]


def docs_row(**over):
    row = {
        "action": "watch tv",
        "user": "john",
        "device": "host1",
        "business_id": "123",
        "utm_channel_c": "social",
        "utm_channel_s": "twitter",
        "epoch": "1645066434189",
        "session_id": "1",
        "app_version": "1",
    }
    row.update(over)
    return row


def int96_ns(b64):
    """The nanoseconds since the epoch of a base64 INT96 (nanos of day, Julian day)."""
    raw = base64.b64decode(b64)
    nanos, julian = struct.unpack("<qi", raw)
    return (julian - 2440588) * 86_400_000_000_000 + nanos


def docs_cases():
    rows = [docs_row(), docs_row(action="buy", user="jane", epoch="1645066435000", session_id="2")]
    case(
        "example_amplitude_docs_parquet",
        DOCS_CONVERTER,
        pa_writer(pa.Table.from_pylist(rows)),
        {"args": DOCS_KEY},
    )
    # The INT96 form: `epoch` is a legacy timestamp, read with int96_time_to_ms.
    conv = json.loads(json.dumps(DOCS_CONVERTER))
    func = conv["converterConfig"]["convertToAmplitudeFunc"]
    func["time"] = ["int96_time_to_ms", "epoch"]
    func["event_properties"]["epoch_int96"] = "epoch"
    ns = [int96_ns("AP6qCz41AAAwhCUA"), int96_ns("AP6qCz41AAAwhCUA") + 1_999_999]
    table = pa.table(
        {
            "action": ["watch tv", "buy"],
            "user": ["john", "jane"],
            "device": ["host1", "host2"],
            "business_id": ["123", "456"],
            "utm_channel_c": ["social", "search"],
            "utm_channel_s": ["twitter", "google"],
            "epoch": pa.array(ns, pa.timestamp("ns")),
            "session_id": ["1", "2"],
            "app_version": ["1", "1"],
        }
    )
    case(
        "example_amplitude_docs_parquet_int96",
        conv,
        pa_writer(table, use_deprecated_int96_timestamps=True),
        {"args": DOCS_KEY},
    )


# --- Every type row of converter.md §1 ------------------------------------------------------

def pyarrow_types_table():
    utc = dt.timezone.utc
    t0 = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=utc)
    pre = dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=utc)
    u = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
    cols = {
        "n": pa.array([0, 1, 2], pa.int64()),
        "bool": pa.array([True, False, None]),
        "i8": pa.array([-128, 127, None], pa.int8()),
        "i16": pa.array([-32768, 32767, None], pa.int16()),
        "i32": pa.array([-(2**31), 2**31 - 1, None], pa.int32()),
        "i64": pa.array([-(2**63), 2**63 - 1, None], pa.int64()),
        "u8": pa.array([0, 255, None], pa.uint8()),
        "u16": pa.array([0, 65535, None], pa.uint16()),
        "u32": pa.array([0, 2**32 - 1, None], pa.uint32()),
        "u64": pa.array([0, 2**64 - 1, None], pa.uint64()),
        "f32": pa.array([0.1, float("nan"), float("inf")], pa.float32()),
        "f64": pa.array([2.5, float("-inf"), float("nan")], pa.float64()),
        "dec": pa.array([D("12.30"), D("-0.01"), None], pa.decimal128(4, 2)),
        "dec38": pa.array(
            [D("1234567890123456789012345678.0123456789"), D("-1"), None], pa.decimal128(38, 10)
        ),
        "dec0": pa.array([D("99999999999999999999"), D("-7"), None], pa.decimal128(20, 0)),
        "str": pa.array(["plain", "ünïcödé ✓ \"quoted\"\n", ""], pa.string()),
        "str_large": pa.array(["large", None, "x"], pa.large_string()),
        "str_dict": pa.array(["red", "red", None]).dictionary_encode(),
        "json": pa.array(['{"a": [1, 2]}', None, "3"], pa.json_(pa.string())),
        "bin": pa.array([b"\x00\xff\x10", b"", None], pa.binary()),
        "bin_fixed": pa.array([b"abc", b"\x00\x00\x01", None], pa.binary(3)),
        "uuid": pa.array([u.bytes, None, uuid.UUID(int=0).bytes], pa.uuid()),
        "ts_s": pa.array([t0.replace(microsecond=0), pre.replace(microsecond=0), None], pa.timestamp("s")),
        "ts_ms": pa.array([t0, pre, None], pa.timestamp("ms")),
        "ts_us": pa.array([t0, pre, None], pa.timestamp("us")),
        "ts_ns": pa.array([1_700_000_000_123_456_789, -1, None], pa.timestamp("ns")),
        "ts_us_tz": pa.array([t0, pre, None], pa.timestamp("us", tz="America/New_York")),
        "ts_ms_utc": pa.array([t0, pre, None], pa.timestamp("ms", tz="UTC")),
        "date": pa.array([dt.date(2024, 2, 29), dt.date(1900, 1, 1), None], pa.date32()),
        "date64": pa.array([dt.date(1970, 1, 1), None, dt.date(9999, 12, 31)], pa.date64()),
        "time_s": pa.array([dt.time(1, 2, 3), None, dt.time(0, 0)], pa.time32("s")),
        "time_ms": pa.array([dt.time(23, 59, 59, 999000), None, dt.time(0, 0)], pa.time32("ms")),
        "time_us": pa.array([dt.time(23, 59, 59, 999999), None, dt.time(12, 0, 0, 1)], pa.time64("us")),
        "time_ns": pa.array([86_399_999_999_999, None, 1_000_000], pa.time64("ns")),
        "nothing": pa.nulls(3),
    }
    return pa.table(cols)


def duckdb_types_sql():
    return """
    SELECT * FROM (VALUES
      (0, true, (-128)::TINYINT, (-32768)::SMALLINT, (-2147483648)::INTEGER, (-9223372036854775808)::BIGINT,
       255::UTINYINT, 65535::USMALLINT, 4294967295::UINTEGER, 18446744073709551615::UBIGINT,
       170141183460469231731687303715884105727::HUGEINT,
       0.1::FLOAT, 'nan'::DOUBLE, 12.30::DECIMAL(4,2), 123456789012.345::DECIMAL(18,3),
       1234567890123456789012345678.0123456789::DECIMAL(38,10),
       'plain', 'a'::ENUM('a', 'b'), '\\x00\\xFF'::BLOB, '123e4567-e89b-12d3-a456-426614174000'::UUID,
       '{"a": 1}'::JSON,
       DATE '2024-02-29', TIME '23:59:59.999999',
       TIMESTAMP '2024-02-29 23:59:59.999999', TIMESTAMP_S '2024-02-29 23:59:59',
       TIMESTAMP_MS '2024-02-29 23:59:59.999', TIMESTAMP_NS '1969-12-31 23:59:59.999999999',
       TIMESTAMPTZ '2024-02-29 23:59:59.999999+00'),
      (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       'inf'::FLOAT, (-2.5)::DOUBLE, (-0.01)::DECIMAL(4,2), NULL, NULL,
       NULL, 'b'::ENUM('a', 'b'), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
    ) t(n, bool, i8, i16, i32, i64, u8, u16, u32, u64, huge, f32, f64, dec, dec18, dec38,
        str, enum, bin, uuid, json, date, time, ts, ts_s, ts_ms, ts_ns, ts_tz)
    """


def type_cases():
    table = pyarrow_types_table()
    props = [c for c in table.column_names]
    case("parquet_types_pyarrow", converter(props), pa_writer(table))
    case(
        "parquet_types_pyarrow_preview",
        converter(["n"]),
        pa_writer(table),
        {"command": "preview", "args": ["--json"]},
    )
    sql = duckdb_types_sql()
    cols = duckdb.connect().execute(f"SELECT * FROM ({sql}) LIMIT 0").description
    case("parquet_types_duckdb", converter([c[0] for c in cols]), duck_writer(sql))


# --- Nested types ---------------------------------------------------------------------------

def nested_cases():
    point = pa.struct([("x", pa.int32()), ("tags", pa.list_(pa.string()))])
    table = pa.table(
        {
            "n": pa.array([0, 1, 2, 3], pa.int64()),
            "list": pa.array([[1, None, 3], [], None, [4]], pa.list_(pa.int64())),
            "list_nan": pa.array([[1.5, float("nan"), float("-inf")], None, [], [0.0]], pa.list_(pa.float64())),
            "large_list": pa.array([["a"], None, [], ["b", None]], pa.large_list(pa.string())),
            "fixed_list": pa.array([[1, 2], None, [3, None], [5, 6]], pa.list_(pa.int16(), 2)),
            "struct": pa.array(
                [{"a": 1, "b": "x"}, {"a": None, "b": "y"}, None, {"a": 4, "b": None}],
                pa.struct([("a", pa.int64()), ("b", pa.string())]),
            ),
            "struct_in_struct": pa.array(
                [{"inner": {"z": dt.date(2024, 1, 2)}}, {"inner": None}, None, {"inner": {"z": None}}],
                pa.struct([("inner", pa.struct([("z", pa.date32())]))]),
            ),
            "list_of_struct": pa.array(
                [[{"x": 1, "tags": ["t1", "t2"]}, None, {"x": None, "tags": []}], [], None, [{"x": 2, "tags": None}]],
                pa.list_(point),
            ),
            "list_of_list": pa.array([[[1], [], None, [2, 3]], None, [], [[None]]], pa.list_(pa.list_(pa.int8()))),
            "map": pa.array(
                [[("k1", 1), ("k2", None), ("k1", 3)], [], None, [("only", 9)]],
                pa.map_(pa.string(), pa.int64()),
            ),
            "map_int_keys": pa.array(
                [[(1, "one"), (-2, "minus two")], None, [], [(3, None)]], pa.map_(pa.int32(), pa.string())
            ),
            "map_date_keys": pa.array(
                [[(dt.date(2024, 1, 1), 1.5)], [], None, [(dt.date(1970, 1, 1), float("nan"))]],
                pa.map_(pa.date32(), pa.float64()),
            ),
            "map_of_list": pa.array(
                [[("a", [1, 2])], [("b", None)], None, [("c", [])]], pa.map_(pa.string(), pa.list_(pa.int64()))
            ),
        }
    )
    props = table.column_names
    case("parquet_nested_pyarrow", converter(props), pa_writer(table, row_group_size=2))
    sql = """
    SELECT * FROM (VALUES
      (0, [1, NULL, 3], {'a': 1, 'b': 'x'}, MAP {'k1': 1, 'k2': NULL}, [{'x': 1, 'tags': ['t']}], [[1], []]),
      (1, [], {'a': NULL, 'b': 'y'}, MAP {}, [], NULL),
      (2, NULL, NULL, NULL, NULL, [[NULL]])
    ) t(n, list, struct, map, list_of_struct, list_of_list)
    """
    case(
        "parquet_nested_duckdb",
        converter(["n", "list", "struct", "map", "list_of_struct", "list_of_list"]),
        duck_writer(sql, ROW_GROUP_SIZE=2),
    )


# --- Codecs, row groups, dictionary pages ---------------------------------------------------

CODECS = ["snappy", "gzip", "brotli", "lz4", "zstd", "none"]


def codec_table(rows=12):
    return pa.table(
        {
            "n": pa.array(range(rows), pa.int64()),
            "event": pa.array([["open", "click", "close"][i % 3] for i in range(rows)]),
            "user": pa.array([f"user-{i % 4}" for i in range(rows)]),
            "amount": pa.array([i * 1.25 if i % 5 else None for i in range(rows)], pa.float64()),
        }
    )


def codec_converter():
    return {
        "converterConfig": {
            "fileType": "parquet",
            "compressionType": "none",
            "convertToAmplitudeFunc": {
                "event_type": "event",
                "user_id": "user",
                "event_properties": {"n": "n", "amount": "amount"},
            },
        }
    }


def codec_cases():
    table = codec_table()
    for codec in CODECS:
        case(
            f"parquet_codec_{codec}_pyarrow",
            codec_converter(),
            pa_writer(table, compression=codec, row_group_size=5, use_dictionary=True),
        )
        duck = {"none": "uncompressed"}.get(codec, codec)
        sql = (
            "SELECT range AS n, ['open', 'click', 'close'][range % 3 + 1] AS event, "
            "'user-' || (range % 4) AS user, CASE WHEN range % 5 = 0 THEN NULL ELSE range * 1.25 END AS amount "
            "FROM range(12)"
        )
        case(
            f"parquet_codec_{codec}_duckdb",
            codec_converter(),
            duck_writer(sql, COMPRESSION=duck, ROW_GROUP_SIZE=5),
        )


def row_group_cases():
    # Several row groups, dictionary-encoded strings; the default insert_id numbers rows
    # across groups. `auto` compression is accepted for Parquet.
    table = codec_table(23)
    conv = codec_converter()
    conv["converterConfig"]["compressionType"] = "auto"
    case(
        "parquet_row_groups",
        conv,
        pa_writer(table, row_group_size=5, data_page_size=64, write_batch_size=2),
    )
    case("parquet_empty", codec_converter(), pa_writer(codec_table(0)))
    # Spark writes timestamps as INT96 and names its schema spark_schema.
    spark = pa.table(
        {
            "event_time": pa.array([int96_ns("AP6qCz41AAAwhCUA"), 0, None], pa.timestamp("ns")),
            "user": ["user-1", "user-2", "user-3"],
        }
    )
    conv = {
        "converterConfig": {
            "fileType": "parquet",
            "compressionType": "none",
            "convertToAmplitudeFunc": {
                "event_type": ["value", "spark"],
                "user_id": "user",
                "time": ["int96_time_to_ms", "event_time"],
                "event_properties": {"raw": "event_time"},
            },
        }
    }
    case("parquet_spark_int96", conv, pa_writer(spark, flavor="spark", compression="snappy"))


# --- Broken files and rejected configs ------------------------------------------------------

def corrupt_page(src, dst, row_group, column):
    """Copies `src` with the data of one column chunk's first page overwritten."""
    md = pq.ParquetFile(src).metadata.row_group(row_group).column(column)
    data = bytearray(open(src, "rb").read())
    start = md.data_page_offset
    # Keep the page header (thrift, at the start); wreck the second half of the payload.
    for i in range(start + md.total_compressed_size // 2, start + md.total_compressed_size):
        data[i] = 0xFF
    open(dst, "wb").write(bytes(data))


def fail_cases():
    def not_parquet(path):
        with open(path, "w") as f:
            f.write('{"event": "open", "user": "u1"}\n')

    case("parquet_fail_not_parquet", codec_converter(), not_parquet, {"exit": 2})
    case(
        "parquet_fail_truncated",
        codec_converter(),
        pa_writer(codec_table()),
        {"transform": [{"truncate": 300}], "exit": 2},
    )

    def corrupt(path):
        tmp = path + ".tmp"
        pq.write_table(codec_table(), tmp, compression="snappy", row_group_size=5, use_dictionary=False)
        corrupt_page(tmp, path, 1, 1)
        os.remove(tmp)

    case("parquet_fail_corrupt_page", codec_converter(), corrupt, {"exit": 2})
    f16 = pa.table({"n": pa.array([1], pa.int64()), "half": pa.array([1.5], pa.float16())})
    case("parquet_fail_unsupported_type", codec_converter(), pa_writer(f16), {"exit": 2})
    case(
        "parquet_fail_unsupported_interval_duckdb",
        codec_converter(),
        duck_writer("SELECT 1 AS n, INTERVAL 1 DAY AS wait"),
        {"exit": 2},
    )
    case(
        "fail_parquet_compression_gzip",
        codec_converter() | {"converterConfig": codec_converter()["converterConfig"] | {"compressionType": "gzip"}},
        pa_writer(codec_table(2)),
        {"exit": 2},
    )


# --- Decimals of any width, checked against the writer's own values ----------------------

def reference(path, columns):
    """Writes reference.jsonl beside the case: each row's exact decimal text per column, as the
    writer's own reader gives it back (pyarrow's Decimal, fixed-point with the column's scale).
    tests/golden.rs checks the converted output against it: a reference our code did not write."""
    rows = pq.read_table(os.path.join(os.path.dirname(path), "input.parquet")).to_pylist()
    with open(os.path.join(os.path.dirname(path), "reference.jsonl"), "w") as f:
        for row in rows:
            ref = {
                c: json.dumps(row[c]) if isinstance(row[c], str) else format(row[c], "f")
                for c in columns
                if row[c] is not None
            }
            f.write(json.dumps(ref, sort_keys=True) + "\n")


def wide_decimal_cases():
    # The widest value decimal(76, 38) holds: 38 digits on each side of the point.
    big = D("57896044618658097711785492504343953926.63499233282028201972879200395656481996")
    bignumeric = pa.decimal256(76, 38)  # BigQuery BIGNUMERIC as exported to Parquet
    table = pa.table(
        {
            "n": pa.array(range(6), pa.int64()),
            "bignumeric": pa.array(
                [big, big.copy_negate(), D("123.45"), D("0"), D("-0.00000000000000000000000000000000000001"), None],
                bignumeric,
            ),
            "d256_50_0": pa.array(
                [D(10**49 + 1), D(-(10**49) + 7), D(0), D(1), None, D(2**127)], pa.decimal256(50, 0)
            ),
            "d256_40_5": pa.array(
                [D("12345678901234567890123456789012345.67890"), D("-0.00001"), None, D("1.10000"),
                 D("99999999999999999999999999999999999.99999"), D("7")],
                pa.decimal256(40, 5),
            ),
            "d128_38_38": pa.array(
                [D("0.12345678901234567890123456789012345678"), D("-0.99999999999999999999999999999999999999"),
                 None, D("0"), D("0.1"), D("-0.5")],
                pa.decimal128(38, 38),
            ),
            # Strings that look like numbers stay strings.
            "s": pa.array(["00501", "1e5", "12.30", "-0", "18446744073709551616", None], pa.string()),
        }
    )
    cols = [c for c in table.column_names if c != "n"]

    def write_pa(path):
        pq.write_table(table, path)
        reference(path, cols)

    case("parquet_decimal_wide_pyarrow", converter(table.column_names), write_pa)

    sql = """
    SELECT * FROM (VALUES
      (0, 1234567890123456789012345678.0123456789::DECIMAL(38,10), '0.12345678901234567890123456789012345678'::DECIMAL(38,38),
       99999999999999999999999999999999999999::DECIMAL(38,0)),
      (1, (-0.0000000001)::DECIMAL(38,10), (-0.5)::DECIMAL(38,38), (-99999999999999999999999999999999999999)::DECIMAL(38,0)),
      (2, NULL, NULL, 0::DECIMAL(38,0))
    ) t(n, d38_10, d38_38, d38_0)
    """
    duck = duck_writer(sql)

    def write_duck(path):
        duck(path)
        reference(path, ["d38_10", "d38_38", "d38_0"])

    case("parquet_decimal_wide_duckdb", converter(["n", "d38_10", "d38_38", "d38_0"]), write_duck)


# --- Warehouse exports, as their writers make them --------------------------------------------

def plain(t):
    """`t` with every timestamp replaced by int64 (so that the reference reads raw counts)."""
    if pa.types.is_timestamp(t):
        return pa.int64()
    if pa.types.is_map(t):
        return pa.map_(plain(t.key_type), plain(t.item_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        f = t.value_field
        make = pa.list_ if pa.types.is_list(t) else pa.large_list
        return make(pa.field(f.name, plain(f.type), f.nullable))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, plain(f.type), f.nullable) for f in t])
    return t


PER_MS = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}


def int96_b64(ns):
    """The base64 of the INT96 (nanos of day, Julian day) of `ns` since the epoch."""
    days, nanos = divmod(ns, 86_400_000_000_000)
    return base64.b64encode(struct.pack("<qi", nanos, days + 2440588)).decode()


def ref_text(v, t, int96=False):
    """The JSON text converter.md §1 maps value `v` of Arrow type `t` to (as our output writes
    it: `, ` and `: ` separators), or None when the value is absent."""
    if v is None:
        return None
    if int96:
        return json.dumps(int96_b64(v))
    if pa.types.is_timestamp(t):
        return str(v * 1000 if t.unit == "s" else v // PER_MS[t.unit])
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return None if v != v or v in (float("inf"), float("-inf")) else repr(v)
    if isinstance(v, D):
        return format(v, "f")
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bytes):
        return json.dumps(base64.b64encode(v).decode())
    if isinstance(v, dt.date):
        return json.dumps(v.isoformat())
    if isinstance(v, dt.time):
        return json.dumps(v.strftime("%H:%M:%S.") + f"{v.microsecond // 1000:03}")
    if pa.types.is_map(t):
        entries = {}
        for k, x in v:
            key = k if isinstance(k, str) else ref_text(k, t.key_type)
            x = ref_text(x, t.item_type)
            if x is not None:
                entries[key] = x
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {x}" for k, x in entries.items()) + "}"
    if pa.types.is_struct(t):
        parts = [(f.name, ref_text(v[f.name], f.type)) for f in t]
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {x}" for k, x in parts if x is not None) + "}"
    if isinstance(v, list):
        items = [ref_text(x, t.value_type) for x in v]
        return "[" + ", ".join("null" if x is None else x for x in items) + "]"
    raise TypeError(f"no reference mapping for {t}: {v!r}")


def typed_reference(path, columns, reader="pyarrow"):
    """Writes reference.jsonl beside the case: per row, each named column's exact JSON text as
    converter.md maps the value the writer's own reader gives back (pyarrow's, or DuckDB's
    for a file DuckDB wrote). INT96 columns (found in the file's Parquet schema) are the base64
    of their 12 bytes, rebuilt from the nanoseconds the reader gives."""
    src = os.path.join(os.path.dirname(path), "input.parquet")
    if reader == "duckdb":
        table = duckdb.connect().sql(f"SELECT * FROM read_parquet('{src}')").to_arrow_table()
    else:
        table = pq.read_table(src)
    pschema = pq.ParquetFile(src).schema
    int96 = {
        pschema.column(i).path for i in range(len(pschema)) if pschema.column(i).physical_type == "INT96"
    }
    types = {f.name: f.type for f in table.schema}
    rows = table.cast(pa.schema([pa.field(f.name, plain(f.type)) for f in table.schema])).to_pylist()
    with open(os.path.join(os.path.dirname(path), "reference.jsonl"), "w") as f:
        for row in rows:
            ref = {c: ref_text(row[c], types[c], c in int96) for c in columns}
            f.write(json.dumps({c: x for c, x in ref.items() if x is not None}, sort_keys=True, ensure_ascii=False) + "\n")


def with_reference(write, columns, reader="pyarrow"):
    def w(path):
        write(path)
        typed_reference(path, columns, reader)

    return w


def warehouse_cases():
    utc = dt.timezone.utc
    # Spark / Databricks (spark.sql.parquet.outputTimestampType=INT96, writeLegacyFormat=true):
    # INT96 timestamps, names sanitized, snappy, small decimals as integers, no Arrow schema in
    # the footer, legacy (non-compliant) list element names.
    t0 = dt.datetime(2024, 3, 10, 7, 59, 59, 999999, tzinfo=utc)
    spark = pa.table(
        {
            "event_id": ["e-1", "e-2", "e-3"],
            "user_id": ["user-0001", None, "user-0003"],
            "event_time": pa.array([t0, dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=utc), None],
                                   pa.timestamp("us", tz="UTC")),
            "event_date": pa.array([dt.date(2024, 3, 10), dt.date(1969, 12, 31), None], pa.date32()),
            "amount": pa.array([D("12.30"), D("-0.01"), None], pa.decimal128(9, 2)),
            "revenue": pa.array([D("123456789012.345678"), None, D("0.000001")], pa.decimal128(18, 6)),
            "tags": pa.array([["a", None, "b"], [], None], pa.list_(pa.string())),
            "counts": pa.array([[1, 2], None, [None]], pa.list_(pa.int32())),
            "attrs": pa.array([[("k", "v"), ("k2", None)], None, []], pa.map_(pa.string(), pa.string())),
            "device": pa.array([{"os": "ios", "ver": 17}, {"os": None, "ver": None}, None],
                               pa.struct([("os", pa.string()), ("ver", pa.int32())])),
            "items": pa.array([[{"sku": "s1", "qty": 2}], [], None],
                              pa.list_(pa.struct([("sku", pa.string()), ("qty", pa.int64())]))),
            "bad name (x)": ["x", "y", "z"],  # flavor='spark' renames it to bad_name__x_
        }
    )
    cols = [n.replace(" ", "_").replace("(", "_").replace(")", "_") for n in spark.column_names]
    conv = converter(
        cols,
        compression="auto",
        time=["int96_time_to_ms", "event_time"],
        insert_id="event_id",
        user_id=["any", "user_id", ["value", "anonymous-user"]],
    )
    case(
        "parquet_warehouse_spark",
        conv,
        with_reference(
            pa_writer(spark, flavor="spark", use_deprecated_int96_timestamps=True, compression="snappy",
                      use_compliant_nested_type=False, store_decimal_as_integer=True, store_schema=False),
            cols,
        ),
    )

    # BigQuery EXPORT DATA (format PARQUET): BIGNUMERIC decimal(76, 38), NUMERIC decimal(38, 9),
    # DATETIME a zone-less timestamp, TIMESTAMP in UTC, DATE, TIME, GEOGRAPHY (WKT) and JSON as
    # strings, REPEATED RECORD a list of structs, a RECORD holding a REPEATED field.
    big = D("57896044618658097711785492504343953926.63499233282028201972879200395656481996")
    line = pa.struct([("sku", pa.string()), ("price", pa.decimal128(38, 9)), ("qty", pa.int64())])
    bq = pa.table(
        {
            "insert_id": ["bq-0", "bq-1", "bq-2"],
            "user_id": ["user-0000", "user-0001", None],
            "event_timestamp": pa.array([t0, dt.datetime(2000, 1, 1, tzinfo=utc), None], pa.timestamp("us", tz="UTC")),
            "event_datetime": pa.array([dt.datetime(2024, 3, 10, 7, 59, 59, 999999), dt.datetime(1900, 1, 1), None],
                                       pa.timestamp("us")),
            "event_date": pa.array([dt.date(2024, 3, 10), None, dt.date(1, 1, 1)], pa.date32()),
            "event_clock": pa.array([dt.time(23, 59, 59, 999999), dt.time(0, 0), None], pa.time64("us")),
            "numeric": pa.array([D("99999999999999999999999999999.999999999"), D("-0.000000001"), None],
                                pa.decimal128(38, 9)),
            "bignumeric": pa.array([big, big.copy_negate(), D("1")], pa.decimal256(76, 38)),
            "int64": pa.array([2**63 - 1, -(2**63), None], pa.int64()),
            "float64": pa.array([0.1, float("nan"), 1e300], pa.float64()),
            "bytes": pa.array([b"\x00\x01", None, b""], pa.binary()),
            "geography": pa.array(["POINT(-122.35 47.62)", None, "LINESTRING(0 0, 1 1)"], pa.string()),
            "json": pa.array(['{"plan":"pro","seats":3}', "null", None], pa.string()),
            "lines": pa.array([[{"sku": "a", "price": D("1.500000000"), "qty": 2}, {"sku": "b", "price": None, "qty": None}],
                               [], None], pa.list_(line)),
            "geo": pa.array([{"country": "NZ", "cities": ["Auckland", "Wellington"]},
                             {"country": None, "cities": []}, None],
                            pa.struct([("country", pa.string()), ("cities", pa.list_(pa.string()))])),
        }
    )
    cols = bq.column_names
    conv = converter(cols, time="event_timestamp", insert_id="insert_id", user_id=["any", "user_id", ["value", "anonymous-user"]])
    case(
        "parquet_warehouse_bigquery",
        conv,
        with_reference(pa_writer(bq, compression="snappy", store_schema=False), cols),
    )

    # Snowflake COPY INTO @stage FILE_FORMAT=(TYPE=PARQUET) HEADER=TRUE: upper-case names,
    # TIMESTAMP_NTZ/LTZ in microseconds (LTZ adjusted to UTC), NUMBER(38,0) as decimal(38, 0)
    # (values beyond 64 bits too), VARIANT/OBJECT/ARRAY as JSON text, snappy.
    sf = pa.table(
        {
            "EVENT_ID": pa.array([D(1), D(2), D(3)], pa.decimal128(38, 0)),
            "USER_ID": ["user-0001", "user-0002", None],
            "TS_NTZ": pa.array([dt.datetime(2024, 3, 10, 7, 59, 59, 999999), dt.datetime(1969, 12, 31, 23, 59, 59, 999001),
                                None], pa.timestamp("us")),
            "TS_LTZ": pa.array([t0, None, dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=utc)], pa.timestamp("us", tz="UTC")),
            "BIG_NUMBER": pa.array([D(2**64), D(-(10**37)), D(0)], pa.decimal128(38, 0)),
            "PRICE": pa.array([D("19.99"), D("-0.50"), None], pa.decimal128(10, 2)),
            "PAYLOAD": ['{"plan":"pro","tags":["a","b"],"n":1.5}', '"just text"', None],
            "OBJ": ['{"k":{"nested":true}}', "{}", None],
            "ARR": ["[1,2,3]", "[]", None],
        }
    )
    cols = sf.column_names
    conv = converter(
        cols,
        time="TS_NTZ",
        insert_id=["concat", ["value", "sf-"], "EVENT_ID"],
        user_id=["any", "USER_ID", ["value", "anonymous-user"]],
        user_properties=["parse_json_element", "OBJ"],
    )
    conv["converterConfig"]["convertToAmplitudeFunc"]["event_properties"]["PAYLOAD_PARSED"] = [
        "parse_json_element", "PAYLOAD"]
    conv["converterConfig"]["convertToAmplitudeFunc"]["event_properties"]["ARR_PARSED"] = [
        "parse_json_element", "ARR"]
    case(
        "parquet_warehouse_snowflake",
        conv,
        with_reference(pa_writer(sf, compression="snappy", store_schema=False), cols),
    )

    # DuckDB COPY ... TO 'x.parquet' (FORMAT parquet): its defaults (snappy, its row groups),
    # with HUGEINT, TIMESTAMP_NS, UUID, ENUM, MAP, LIST, STRUCT. Read back by DuckDB itself.
    sql = """
    SELECT * FROM (VALUES
      ('123e4567-e89b-12d3-a456-426614174000'::UUID, 'user-0001', TIMESTAMPTZ '2024-03-10 07:59:59.999999+00',
       TIMESTAMP_NS '2024-03-10 07:59:59.999999999', 170141183460469231731687303715884105727::HUGEINT,
       12345678901234.56::DECIMAL(18,2), 'click'::ENUM('click', 'view'), DATE '2024-03-10',
       MAP {'k': 'v', 'e': NULL}, ['a', NULL], {'os': 'ios', 'ver': 17}),
      (NULL, NULL, NULL, TIMESTAMP_NS '1969-12-31 23:59:59.999999999', (-1)::HUGEINT,
       (-0.01)::DECIMAL(18,2), 'view'::ENUM('click', 'view'), NULL, MAP {}, [], {'os': NULL, 'ver': NULL})
    ) t(event_id, user_id, event_time, event_time_ns, total, amount, kind, day, props, tags, device)
    """
    cols = ["event_id", "user_id", "event_time", "event_time_ns", "total", "amount", "kind", "day", "props",
            "tags", "device"]
    conv = converter(cols, time="event_time", insert_id="event_id", user_id=["any", "user_id", ["value", "anonymous-user"]])
    case(
        "parquet_warehouse_duckdb",
        conv,
        with_reference(duck_writer(sql), cols, reader="duckdb"),
    )


def legacy_layout_cases():
    """Spark's / Hive's / parquet-mr's legacy list and map layouts, which pyarrow cannot write:
    examples/parquet_legacy_fixture.rs writes the file with the `parquet` crate from a schema
    string; pyarrow's reading of it is the reference. Needs cargo."""
    import subprocess

    cols = ["event_time", "two_level", "two_level_struct", "tuple_list", "spark_legacy", "legacy_map",
            "bare_repeated", "bare_group", "legacy_decimal"]

    def write(path):
        root = os.path.join(ROOT, "..", "..")
        subprocess.run(["cargo", "run", "-q", "--example", "parquet_legacy_fixture", "--", path], cwd=root, check=True)

    conv = converter(cols, time=["int96_time_to_ms", "event_time"], insert_id="event_id")
    case("parquet_warehouse_spark_legacy", conv, with_reference(write, cols))


def s3_fixture():
    """4,000 events in 40 row groups of 100 rows (snappy, dictionary strings, a column of
    incompressible notes so that row groups are ~10 KB and the file is far bigger than the
    footer read): tests/parquet_s3.rs imports it from LocalStack."""
    import random

    rnd = random.Random(11)
    n = 4000
    table = pa.table(
        {
            "id": [f"pq-{i}" for i in range(n)],
            "type": ["Played" if i % 7 else "Paused" for i in range(n)],
            "device": [f"device-{i % 50}" for i in range(n)],
            "ts": pa.array([1_790_000_000_000 + i for i in range(n)], pa.int64()),
            "note": ["".join(rnd.choice("0123456789abcdef") for _ in range(100)) for _ in range(n)],
        }
    )
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "events.parquet")
    pq.write_table(table, path, row_group_size=100, compression="snappy")


if __name__ == "__main__":
    import sys

    if sys.argv[1:]:  # only the named groups, e.g. `gen.py wide_decimal_cases`
        for name in sys.argv[1:]:
            globals()[name]()
        sys.exit(0)
    wide_decimal_cases()
    s3_fixture()
    docs_cases()
    type_cases()
    nested_cases()
    codec_cases()
    row_group_cases()
    fail_cases()
    warehouse_cases()
    legacy_layout_cases()
