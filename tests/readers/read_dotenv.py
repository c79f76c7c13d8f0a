#!/usr/bin/env python3
"""Test reader: how python-dotenv (pinned in requirements.txt) reads a .env file.

usage: .test-peers/venv/bin/python tests/readers/read_dotenv.py FILE

Prints json.dumps(dotenv_values(FILE)) as one line on stdout: a dict of every key, with None
for a key that has no "=" at all. dotenv_values defaults apply (interpolate=True: ${VAR} is
expanded, from the file and from os.environ, even inside single quotes).
"""
import json
import sys

from dotenv import dotenv_values


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: read_dotenv.py FILE", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(dotenv_values(sys.argv[1])) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
