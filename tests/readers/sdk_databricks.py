"""The Databricks SDK for Python, `metadata-service` auth, against a refreshd endpoint.

Usage: sdk_databricks.py HOST METADATA_SERVICE_URL

Prints `auth TYPE`, then `token TOKEN UNIX_TIME` with the bearer its `authenticate()` header
carries. On a line `next` on stdin, calls `authenticate()` every 0.2 s until the bearer
changes (the SDK asks the endpoint again only once its cached token is about to expire) and
prints the new one the same way. Exits 1 if none comes within 120 s.
"""
import sys
import time

from databricks.sdk.core import Config


def bearer(cfg):
    kind, _, token = cfg.authenticate()["Authorization"].partition(" ")
    assert kind == "Bearer", kind
    return token


def main():
    host, url = sys.argv[1], sys.argv[2]
    cfg = Config(host=host, metadata_service_url=url)
    print("auth", cfg.auth_type, flush=True)
    first = bearer(cfg)
    print("token", first, time.time(), flush=True)
    if sys.stdin.readline().strip() != "next":
        return 0
    deadline = time.time() + 120
    while time.time() < deadline:
        token = bearer(cfg)
        if token != first:
            print("token", token, time.time(), flush=True)
            return 0
        time.sleep(0.2)
    print("no new token within 120 s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
