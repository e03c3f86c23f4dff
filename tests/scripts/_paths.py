"""Import path and locations shared by the script tests."""

import os
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(TESTS))
SCRIPTS = os.path.join(ROOT, "scripts")
FIXTURES = os.path.join(TESTS, "fixtures")

if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)


def fixture(name):
    return os.path.join(FIXTURES, name)
