#!/usr/bin/env python3
"""Test reader: reads a user and password minted together from three files, over and over,
the way apps read them, until STOP exists; counts reads and pairs that do not belong together.

usage: .test-peers/venv/bin/python tests/readers/read_pairs.py ENV JSON PGPASS STOP

  ENV     a .env read with python-dotenv: DB_USER and DB_PASSWORD
  JSON    a JSON document read with json: /db/user and /db/password
  PGPASS  a .pgpass: the first line for host db, port 5432, database app (libpq's rule)

A user `app_N` belongs with a password `pw-N-…`. Prints {"reads", "mismatched", "missing",
"seen"} (seen: the distinct N read) as one JSON line when STOP appears.
"""
import json
import os
import sys

from dotenv import dotenv_values


def number(user, password):
    if not user or not password:
        return None
    u = user.removeprefix("app_")
    p = password.removeprefix("pw-").split("-")[0]
    return u if u == p else False


def pgpass_pair(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(":")
            if len(parts) == 5 and parts[:3] == ["db", "5432", "app"]:
                return parts[3], parts[4]
    return None, None


def main():
    env, doc, pgpass, stop = sys.argv[1:5]
    reads = mismatched = missing = 0
    seen = set()
    while not os.path.exists(stop):
        pairs = []
        values = dotenv_values(env) if os.path.exists(env) else {}
        pairs.append((values.get("DB_USER"), values.get("DB_PASSWORD")))
        if os.path.exists(doc):
            with open(doc, encoding="utf-8") as f:
                db = json.load(f).get("db", {})
            pairs.append((db.get("user"), db.get("password")))
        if os.path.exists(pgpass):
            pairs.append(pgpass_pair(pgpass))
        for user, password in pairs:
            n = number(user, password)
            reads += 1
            if n is None:
                missing += 1
            elif n is False:
                mismatched += 1
            else:
                seen.add(n)
    print(json.dumps({"reads": reads, "mismatched": mismatched, "missing": missing, "seen": len(seen)}))


main()
