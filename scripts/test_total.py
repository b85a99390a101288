"""Print one closing line for pytest runs made side by side: `total: N passed, N failed, N skipped`.

Usage: python scripts/test_total.py RESULTS.xml [RESULTS.xml ...] (pytest's --junitxml files).
A missing or unreadable file counts as one failed test, so a run that crashed cannot pass; exits 1 then,
or when nothing ran at all.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree


def main(paths: list[str]) -> int:
    """Sum the JUnit reports and print the total; a run that left no report counts as one failure."""
    tests = failed = skipped = 0
    for path in paths:
        try:
            suites = list(ElementTree.parse(path).getroot().iter("testsuite"))
        except (OSError, ElementTree.ParseError) as error:
            print(f"no results in {path} ({error}): that run did not finish", file=sys.stderr)
            tests, failed = tests + 1, failed + 1
            continue
        for suite in suites:
            tests += int(suite.get("tests", 0))
            failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped += int(suite.get("skipped", 0))
    passed = tests - failed - skipped
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if tests and not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
