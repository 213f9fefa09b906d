"""Packaging for steer-llm-sdk.

Runtime dependencies stay small; everything tests, lint and benchmarks need lives in the
``dev`` extra so that ``pip install -e .[dev]`` gives a complete development environment.
"""

from pathlib import Path

from setuptools import find_packages, setup

TOKENIZER = ["bpe-openai>=0.1.4"]
CELERY = ["celery[redis]>=5.3"]
FLASK = ["flask>=2.2"]
DJANGO = ["django>=4.2"]
PROMETHEUS = ["prometheus-client>=0.20"]
PRICES = ["genai-prices>=0.0.30"]

DEV = (
    TOKENIZER
    + CELERY
    + PRICES
    + [
        "pytest>=8",
        "pytest-timeout>=2.3",
        # `make test` runs the suite on several workers (many tests wait on subprocesses).
        "pytest-xdist>=3.5",
        # instrument() reaches these too (each needs Python >= 3.10).
        "groq>=1.7; python_version >= '3.10'",
        "mistralai>=3.7; python_version >= '3.10'",
        "cohere>=7.3; python_version >= '3.10'",
        # Pinned: the tests lean on LiteLLM's routing tables and error classes, which change
        # from release to release.
        "litellm==1.110.2; python_version >= '3.10'",
        "hypothesis>=6.100",
        "ruff>=0.6",
        "mypy>=1.10",
        "tox>=4",
        "prometheus-client>=0.20",
        "PyYAML>=6",
        # Independent checks that the local server speaks the wire protocols.
        "openai>=1.40",
        "anthropic>=0.34",
        # instrument() is tested against every SDK it reaches, and beside OpenTelemetry's own
        # openai instrumentor (2.4b0 needs an unreleased opentelemetry-util-genai; 2.3b0 imports
        # httpx and calls wrapt 1.x's wrap_function_wrapper(module=...)).
        "google-genai>=1.0",
        "boto3>=1.34",
        "opentelemetry-instrumentation-openai-v2==2.3b0",
        "httpx>=0.27",
        "wrapt>=1.14,<2",
        # Framework integrations, tested for real.
        "flask>=2.2",
        "django>=4.2",
        "gunicorn>=21",
        # The background threads stay real OS threads in a monkey-patched process.
        "gevent>=24.2",
        # A real uWSGI for the pre-fork tests (pip compiles it: gcc and Python headers).
        "uwsgi>=2.0.26",
        "waitress>=2.1",
        # The layer and no-cycle contracts in pyproject.toml.
        "import-linter>=2.1",
    ]
)

setup(
    name="steer-llm-sdk",
    version="0.1.0.dev0",
    description="Metrics for every LLM call in synchronous, thread-per-request Python.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["steer_llm_sdk", "steer_llm_sdk.*"]),
    package_data={"steer_llm_sdk": ["py.typed"]},
    install_requires=[
        "requests>=2.28",
        "structlog>=23.1",
        "opentelemetry-sdk>=1.25",
        "opentelemetry-exporter-otlp>=1.25",
        "typing_extensions>=4.1; python_version < '3.11'",
        # Transparent proxies for instrument(): the SDKs' own objects keep their type. Both
        # majors are tested: 1.x in every tox environment, 2.x in the wrapt2 one.
        "wrapt>=1.14,<3",
    ],
    extras_require={
        "tokenizer": TOKENIZER,
        "celery": CELERY,
        "flask": FLASK,
        "django": DJANGO,
        "prometheus": PROMETHEUS,
        "prices": PRICES,
        "all": TOKENIZER + CELERY + FLASK + DJANGO + PROMETHEUS + PRICES,
        "dev": DEV,
    },
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Framework :: Django",
        "Framework :: Flask",
        "Topic :: System :: Monitoring",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX",
        "Typing :: Typed",
    ],
)
