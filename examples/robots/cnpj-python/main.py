"""Checks the check digits of a CNPJ, speaking the Regente robot protocol.

Protocol: read the variables from the JSON file named by REGENTE_VARIABLES; print
lines to stdout; `::progress::N`, `::return::VALUE`, `::warning::msg` and
`::error::msg` are understood by the orchestrator; exit 0 for success.
"""

import json
import os
import sys


def report(kind, value):
    print(f"::{kind}::{value}", flush=True)


def check_digit(digits, weights):
    total = sum(int(d) * w for d, w in zip(digits, weights))
    rest = total % 11
    return "0" if rest < 2 else str(11 - rest)


def main():
    with open(os.environ["REGENTE_VARIABLES"], encoding="utf-8") as f:
        variables = json.load(f)
    cnpj = variables["CNPJ"]
    strict = variables["STRICT"]
    print(f"checking CNPJ {cnpj}", flush=True)
    digits = "".join(c for c in cnpj if c.isdigit())
    report("progress", 30)
    if len(digits) != 14:
        report("error", f"a CNPJ has 14 digits, got {len(digits)}")
        report("return", json.dumps({"cnpj": cnpj, "valid": False}))
        return 2 if strict else 0
    first = check_digit(digits[:12], [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    report("progress", 60)
    second = check_digit(digits[:12] + first, [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    valid = digits[12:] == first + second
    report("progress", 90)
    if not valid:
        report("warning", f"check digits should be {first}{second}")
    report("return", json.dumps({"cnpj": cnpj, "valid": valid, "root": digits[:8]}))
    return 3 if strict and not valid else 0


if __name__ == "__main__":
    sys.exit(main())
