#!/usr/bin/env python3
"""Test reader: an app reading a JDBC URL from a Java properties file refreshd rendered.

usage: .test-peers/venv/bin/python tests/readers/read_jdbc.py FILE KEY

Reads FILE as java.util.Properties reads the simple form (`key=value` or `key: value`
lines, `#` and `!` comments, no continuation lines), takes KEY's value as a JDBC URL
(`jdbc:` and a URL), splits it with urllib.parse and decodes its query strictly. Prints
{"scheme", "host", "port", "path", "user", "password_sha256", "query_keys"}: the password
only as its SHA-256, so nothing secret is printed.
"""
import hashlib
import json
import sys
from urllib.parse import parse_qs, urlsplit


def properties(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines():
            stripped = line.lstrip()
            if not stripped or stripped[0] in "#!":
                continue
            cut = min((i for i in (stripped.find("="), stripped.find(":")) if i >= 0), default=-1)
            if cut < 0:
                raise SystemExit(f"not a property line: {line[:20]!r}")
            key = stripped[:cut].strip()
            if key in out:
                raise SystemExit(f"duplicate property {key}")
            out[key] = stripped[cut + 1 :].lstrip()
    return out


def main():
    path, key = sys.argv[1], sys.argv[2]
    url = properties(path)[key]
    if not url.startswith("jdbc:"):
        raise SystemExit("not a JDBC URL")
    parts = urlsplit(url[len("jdbc:") :])
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    for name, values in query.items():
        if len(values) != 1:
            raise SystemExit(f"{name} appears {len(values)} times")
    password = query["password"][0]
    print(
        json.dumps(
            {
                "scheme": parts.scheme,
                "host": parts.hostname,
                "port": parts.port,
                "path": parts.path,
                "user": query["user"][0],
                "password_sha256": hashlib.sha256(password.encode()).hexdigest(),
                "query_keys": sorted(query),
            }
        )
    )


main()
