"""Print one closing line for pytest runs made side by side: `total: N passed, N failed, N skipped`.

Usage: python scripts/test_total.py RESULTS.xml [RESULTS.xml ...] (pytest's --junitxml files).
Exits 1 when a file is missing or holds no test, so a run that never started cannot pass.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree


def main(paths: list[str]) -> int:
    """Sum the JUnit reports and print the total."""
    tests = failed = skipped = 0
    for path in paths:
        try:
            suites = ElementTree.parse(path).getroot().iter("testsuite")
        except (OSError, ElementTree.ParseError) as error:
            print(f"total: no results in {path} ({error})")
            return 1
        for suite in suites:
            tests += int(suite.get("tests", 0))
            failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skipped += int(suite.get("skipped", 0))
    passed = tests - failed - skipped
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if tests and not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
