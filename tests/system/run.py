"""Run the black-box tests (test_*.py here, or the names given) and print a summary
line "system: N passed, N failed, N skipped"."""
import sys
import time
import unittest


def main():
    loader = unittest.TestLoader()
    if len(sys.argv) > 1:
        suite = loader.loadTestsFromNames(sys.argv[1:])
    else:
        suite = loader.discover(".", pattern="test_*.py")
    started = time.time()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    good = max(0, result.testsRun - bad - skipped)
    print("system: %d passed, %d failed, %d skipped (%.0f s)"
          % (good, bad, skipped, time.time() - started))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
