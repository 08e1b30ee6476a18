#!/usr/bin/python3
"""check-errors.py: the error table in docs/PROTOCOL.md against common/errors.h.

Every (status, code) row of the table must be a row of TW_ERROR_MAP, and every row of the map a
client can get (a status under 500) must be in the table; the 500 rows are listed together by
their codes.  Rows that never reach a client are named in INTERNAL.  Exit 1 with what differs."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTERNAL = {"fenced"}  # a worker's write refused by the store, never an HTTP answer


def header_rows():
    text = open(os.path.join(ROOT, "common", "errors.h")).read()
    rows = re.findall(r'XX\(\s*\w+\s*,\s*(\d{3})\s*,\s*"([a-z_]+)"', text)
    return {(int(status), code) for status, code in rows}


def doc_rows():
    rows = set()
    for line in open(os.path.join(ROOT, "docs", "PROTOCOL.md")):
        m = re.match(r"\|\s*(\d{3})\s*\|([^|]*)\|", line)
        if m:
            for code in re.findall(r"`([a-z_]+)`", m.group(2)):
                rows.add((int(m.group(1)), code))
    return rows


def main():
    header, doc = header_rows(), doc_rows()
    problems = [f"docs/PROTOCOL.md lists {s} {c}, which common/errors.h does not have"
                for s, c in sorted(doc - header)]
    problems += [f"common/errors.h has {s} {c}, which docs/PROTOCOL.md does not list"
                 for s, c in sorted(header - doc) if s < 500 and c not in INTERNAL]
    for p in problems:
        print("check-errors:", p)
    if not problems:
        print("check-errors: OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
