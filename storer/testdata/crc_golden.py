#!/usr/bin/env python3
"""One-off generator of crc_golden.csv: Kamailio's mt_mode=hash table choice computed
independently of our Rust code, with Python's zlib.crc32 (behaviour doc §3: crc32_uint is the
standard reflected CRC-32, i.e. zlib.crc32, for ASCII input).

Columns: source (call_id | from_user | to_user), value (the field as stored in the record),
crc32 (of the hashed input), mod2, mod3, mod5 (the table index for 2, 3 and 5 tables).
For call_id the hashed input is Kamailio's trimmed first token: leading whitespace skipped,
cut at the first whitespace. Values never contain commas. Deterministic (fixed seed).

Run: python3 storer/testdata/crc_golden.py > storer/testdata/crc_golden.csv
"""
import random
import string
import zlib

rng = random.Random(20261126)


def token(n, alphabet=string.ascii_lowercase + string.digits):
    return "".join(rng.choice(alphabet) for _ in range(n))


def call_ids():
    out = ["a84b4c76e66710@pc33.atlanta.com"]
    hosts = ["pc33.atlanta.com", "192.0.2.10", "biloxi.example.com", "[2001:db8::1]", "sbc-1.local"]
    for i in range(130):
        kind = i % 5
        if kind == 0:
            v = f"{token(14, '0123456789abcdef')}@{rng.choice(hosts)}"
        elif kind == 1:  # UUID style (many SBCs)
            v = "-".join(token(n, "0123456789abcdef") for n in (8, 4, 4, 4, 12))
        elif kind == 2:  # Asterisk style
            v = f"{token(32, '0123456789abcdef')}@{rng.choice(hosts)}:5060"
        elif kind == 3:  # FreeSWITCH/other, mixed case
            v = token(rng.randint(6, 40), string.ascii_letters + string.digits + ".-_~!%*+`'")
        else:  # whitespace around: Kamailio hashes the first token only
            v = f"  {token(12)}@{rng.choice(hosts)} trailing{token(3)}"
        out.append(v)
    return out


def users():
    out = []
    for i in range(60):
        kind = i % 3
        if kind == 0:
            v = "+" + token(rng.randint(8, 14), string.digits)
        elif kind == 1:
            v = token(rng.randint(3, 12), string.ascii_lowercase) + rng.choice(["", ".", "_"]) + token(3)
        else:
            v = token(rng.randint(2, 10), string.digits)
        out.append(v)
    return out


def hashed(source, value):
    if source == "call_id":
        parts = value.split()
        return parts[0] if parts else ""
    return value


print("source,value,crc32,mod2,mod3,mod5")
rows = [("call_id", v) for v in call_ids()] + [("from_user", v) for v in users()] + [
    ("to_user", v) for v in users()
]
for source, value in rows:
    assert "," not in value
    h = zlib.crc32(hashed(source, value).encode("ascii"))
    print(f"{source},{value},{h},{h % 2},{h % 3},{h % 5}")
