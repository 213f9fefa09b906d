"""Where things are: the repository, the tests and their data, the examples."""

from pathlib import Path

#: The ``tests`` folder.
TESTS = Path(__file__).resolve().parent.parent
#: The repository's root (what ``PYTHONPATH`` names for a subprocess to import the package).
ROOT = TESTS.parent
#: The provider exchanges recorded for these tests (see its NOTICE.md).
RECORDED = TESTS / "fixtures" / "recorded"
#: The wider recorded corpus beside the repository (``../shared/fixtures/recorded/``).
SHARED_RECORDED = ROOT.parent / "shared" / "fixtures" / "recorded"
EXAMPLES = ROOT / "examples"
#: The Flask example the gunicorn and waitress tests serve.
FLASK_APP = EXAMPLES / "flask_app"
