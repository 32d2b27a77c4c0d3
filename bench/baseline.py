"""The baseline: the same conversion as bench/converter.json, written the way a user would
write it in a Python Lambda (gzip + json.loads + dicts + json.dumps per 2000-event batch).

Usage: python3 bench/baseline.py FILE.jsonl.gz > /dev/null
"""
import gzip
import json
import sys
from datetime import datetime


def iso_to_ms(text):
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except (ValueError, AttributeError):
        return None


def convert(rec):
    out = {
        "event_type": rec.get("event_type"),
        "user_id": rec.get("user_id"),
        "device_id": None if rec.get("device_id") == "" else rec.get("device_id"),
        "time": iso_to_ms(rec.get("event_time")),
        "session_id": rec.get("session_id"),
        "insert_id": rec.get("insert_id"),
        "platform": rec.get("platform"),
        "os_name": rec.get("os_name"),
        "os_version": rec.get("os_version"),
        "app_version": rec.get("app_version"),
        "country": rec.get("country"),
        "city": rec.get("city"),
        "language": rec.get("language"),
        "ip": rec.get("ip"),
        "event_properties": rec.get("event_properties"),
    }
    up = rec.get("user_properties") or {}
    out["user_properties"] = {"plan": up.get("plan"), "cohort": up.get("cohort"), "beta": (up.get("flags") or {}).get("beta")}
    if rec.get("event_type") == "Order Completed":
        out["price"] = (rec.get("event_properties") or {}).get("price")
    out["$skip_user_properties_sync"] = True
    return {k: v for k, v in out.items() if v is not None}


def main():
    batch, n = [], 0
    write = sys.stdout.write
    with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            batch.append(convert(json.loads(line)))
            n += 1
            if len(batch) == 2000:
                write(json.dumps({"api_key": "x", "events": batch}))
                batch = []
    if batch:
        write(json.dumps({"api_key": "x", "events": batch}))
    print(json.dumps({"records": n}), file=sys.stderr)


if __name__ == "__main__":
    main()
