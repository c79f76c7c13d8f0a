#!/usr/bin/env python3
"""Test reader: how real programs read an INI, TOML or JSON file refreshd wrote.

usage: .test-peers/venv/bin/python tests/readers/read_formats.py READER FILE [ARGS]

  configparser FILE SECTION KEY  {"basic": value or {"error": name}, "raw": value}:
                                 configparser.ConfigParser() (default interpolation, the
                                 one apps get) and RawConfigParser (botocore's)
  databricks FILE PROFILE        {"token", "host", "auth_type"} of
                                 databricks.sdk.core.Config(profile=, config_file=)
  botocore FILE PROFILE          {"access_key", "secret_key", "token", "method"} of a
                                 botocore session reading AWS_SHARED_CREDENTIALS_FILE=FILE
  tomllib FILE                   the document (dates as strings)
  json FILE                      the document

Prints one JSON value on stdout. Run it with a cleared environment: the SDKs read theirs.
"""
import configparser
import json
import os
import sys


def read_configparser(path, section, key):
    out = {}
    basic = configparser.ConfigParser()
    basic.read(path, encoding="utf-8")
    try:
        out["basic"] = basic.get(section, key)
    except configparser.Error as e:
        out["basic"] = {"error": type(e).__name__}
    raw = configparser.RawConfigParser()
    raw.read(path, encoding="utf-8")
    out["raw"] = raw.get(section, key)
    return out


def read_databricks(path, profile):
    from databricks.sdk.core import Config

    # The SDK probes the host's /.well-known/databricks-config; the test's host is a closed
    # loopback port, and a short retry budget keeps that probe from waiting five minutes.
    config = Config(
        profile=profile,
        config_file=path,
        retry_timeout_seconds=1,
        http_timeout_seconds=1,
    )
    return {"token": config.token, "host": config.host, "auth_type": config.auth_type}


def read_botocore(path, profile):
    import botocore.session

    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = path
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    session = botocore.session.Session(profile=profile)
    credentials = session.get_credentials()
    frozen = credentials.get_frozen_credentials()
    return {
        "access_key": frozen.access_key,
        "secret_key": frozen.secret_key,
        "token": frozen.token,
        "method": credentials.method,
    }


def read_tomllib(path):
    import tomllib

    with open(path, "rb") as f:
        return tomllib.load(f)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


READERS = {
    "configparser": (read_configparser, 3),
    "databricks": (read_databricks, 2),
    "botocore": (read_botocore, 2),
    "tomllib": (read_tomllib, 1),
    "json": (read_json, 1),
}


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] not in READERS:
        print(__doc__, file=sys.stderr)
        return 2
    reader, arity = READERS[sys.argv[1]]
    args = sys.argv[2:]
    if len(args) != arity:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(reader(*args), default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
