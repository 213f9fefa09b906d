"""instrument() at start-up: it imports no SDK and patches each one when the application
imports it (a post-import hook), or at once if it already has; uninstrument() removes the
hook with the patches.

Import state is the subject, so each test runs its scenario in a fresh interpreter (started
through support.spawn) and checks the facts the child reports as JSON. The official SDKs'
calls go to the module's LocalLLMServer, which replays a recorded exchange: the record
must carry exactly the usage the provider reported. Timings are not asserted here; see
benchmarks/bench_startup.py.
"""

import functools
import importlib.util
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pytest
from support import spawn
from support.corpus import Exchange, cassettes, corpus_required, exchanges
from support.paths import ROOT

from steer_llm_sdk.observability.instrumentation import SDKS as REGISTRY

pytestmark = pytest.mark.timeout(180)

#: Per SDK: its package, and the corpus folder and API shape of the call the child makes.
SDKS: Dict[str, Dict[str, str]] = {
    "openai": {"package": "openai", "folder": "test_openai", "shape": "chat"},
    "anthropic": {"package": "anthropic", "folder": "test_anthropic", "shape": "messages"},
    "google_genai": {"package": "google.genai", "folder": "test_google", "shape": "gemini"},
    "bedrock": {"package": "botocore", "folder": "test_bedrock", "shape": "converse"},
}
#: Per SDK: the provider and operation its record names.
PROVIDER = {
    "openai": ("openai", "chat"),
    "anthropic": ("anthropic", "chat"),
    "google_genai": ("gcp.gemini", "generate_content"),
    "bedrock": ("aws.bedrock", "chat"),
}


def installed(sdk: str) -> bool:
    try:
        return importlib.util.find_spec(SDKS[sdk]["package"]) is not None
    except ModuleNotFoundError:  # google.genai without google
        return False


def needs(*sdks: str) -> None:
    for sdk in sdks:
        if not installed(sdk):
            pytest.skip(f"{sdk} is not installed")


@functools.cache
def recorded(sdk: str) -> Exchange:
    """A recorded exchange of ``sdk``'s main entry point, alone in its cassette: answered,
    not streamed, with usage."""
    for cassette in cassettes():
        if cassette.parent.name != SDKS[sdk]["folder"]:
            continue
        found = list(exchanges(cassette))
        if len(found) != 1:
            continue
        (exchange,) = found
        if (
            exchange.shape == SDKS[sdk]["shape"]
            and not exchange.streamed
            and not exchange.fails
            and "aiplatform" not in exchange.host
            and exchange.model
            and exchange.expected()[0] is not None
        ):
            return exchange
    if corpus_required():
        raise RuntimeError(f"no recorded {sdk} exchange in the corpus")
    pytest.skip(f"no recorded {sdk} exchange (is the corpus there?)")


@pytest.fixture
def replaying(module_server):
    """``replay(sdk)`` queues on the module's server the recorded answer to one call of
    ``sdk`` and returns that exchange (its model for the call, its usage for the record).
    What is left queued is cleared after the test."""

    def replay(sdk: str) -> Exchange:
        exchange = recorded(sdk)
        module_server.replay(str(exchange.cassette))
        return exchange

    yield replay
    module_server._replays.clear()


# ---------------------------------------------------------------------- the child


#: Loaded first in every child: what it reports, and how it calls each SDK.
PRELUDE = '''
import json, sys
PARAMS = json.loads(sys.argv[1])
SDK_MODULES = ("openai", "anthropic", "google.genai", "botocore", "boto3")

def loaded():
    """The SDKs' packages imported so far."""
    return [name for name in SDK_MODULES if name in sys.modules]

def our_finders():
    return [repr(f) for f in sys.meta_path if type(f).__module__.startswith("steer_llm_sdk.")]

def records():
    """The request records of the default collector, once delivered."""
    from steer_llm_sdk.observability import get_collector
    collector = get_collector()
    assert collector.flush(10)
    return [
        [r.provider, r.operation, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
         r.success]
        for r in collector.sinks[0].get_metrics(metric_type="request")
    ]

def report(**facts):
    print("REPORT " + json.dumps(facts))

def call_openai():
    import openai
    client = openai.OpenAI(base_url=PARAMS["url"] + "/v1", api_key="test", max_retries=0)
    try:
        client.chat.completions.create(
            model=PARAMS["model"]["openai"], messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        client.close()

def call_anthropic():
    import anthropic
    client = anthropic.Anthropic(base_url=PARAMS["url"], api_key="test", max_retries=0)
    try:
        client.messages.create(
            model=PARAMS["model"]["anthropic"], max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
        )
    finally:
        client.close()

def call_google_genai():
    from google import genai
    from google.genai import types
    client = genai.Client(
        api_key="test",
        http_options=types.HttpOptions(base_url=PARAMS["url"] + "/", api_version="v1beta"),
    )
    try:
        client.models.generate_content(model=PARAMS["model"]["google_genai"], contents="hi")
    finally:
        client.close()

def call_bedrock():
    import boto3
    from botocore.config import Config
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=PARAMS["url"],
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    try:
        client.converse(
            modelId=PARAMS["model"]["bedrock"],
            messages=[{"role": "user", "content": [{"text": "hi"}]}],
        )
    finally:
        client.close()
'''


def child(code: str, paths: Sequence[Path] = (), **params: Any) -> Dict[str, Any]:
    """Run :data:`PRELUDE` and ``code`` in a fresh interpreter importing the package from
    the source tree (``paths`` first on its ``PYTHONPATH``), with ``params`` as ``PARAMS``;
    the facts its one ``report()`` gave."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), str(ROOT)])}
    done = spawn.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), json.dumps(params)],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    reports = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and len(reports) == 1, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(reports[0][len("REPORT ") :])  # type: ignore[no-any-return]


def expected_record(sdk: str, exchange: Exchange) -> List[Any]:
    provider, operation = PROVIDER[sdk]
    usage = exchange.expected()[0]
    assert usage is not None
    return [provider, operation, *usage, True]


def models(url: str, **exchanges_: Exchange) -> Dict[str, Any]:
    return {"url": url, "model": {sdk: e.model for sdk, e in exchanges_.items()}}


def entry_points(paths: List[str], sdk: str) -> List[str]:
    """The patched paths of ``sdk``'s package."""
    return [p for p in paths if p.startswith(SDKS[sdk]["package"] + ".")]


# ---------------------------------------------------------------------- start-up cost


def test_instrument_imports_no_sdk_and_not_the_metrics_core():
    facts = child(
        """
        import steer_llm_sdk.observability as observability
        unwanted = (
            "requests", "steer_llm_sdk.client", "steer_llm_sdk.providers", "structlog",
            "wrapt", "steer_llm_sdk.observability.collector",
            "steer_llm_sdk.observability.lifecycle", *SDK_MODULES,
        )
        after_import = [name for name in unwanted if name in sys.modules]
        returned = observability.instrument()
        after_instrument = [name for name in unwanted if name in sys.modules]
        observability.get_collector()  # the default collector: the core, one in-memory sink
        report(
            after_import=after_import,
            after_instrument=after_instrument,
            sink_libraries=[n for n in ("structlog", "prometheus_client") if n in sys.modules]
            + [n for n in sys.modules if n.startswith("opentelemetry.sdk")],
            returned=returned,
            finders=our_finders(),
            first=repr(sys.meta_path[0]),
        )
        """
    )
    assert facts["after_import"] == []
    assert facts["after_instrument"] == []
    assert facts["sink_libraries"] == []
    # Every SDK of the registry that is installed, imported yet or not.
    assert facts["returned"] == [
        name for name, (package, _) in REGISTRY.items() if importlib.util.find_spec(package)
    ]
    if facts["returned"]:  # one finder, first
        assert len(facts["finders"]) == 1 and facts["first"] == facts["finders"][0]
    else:  # nothing to watch: no finder
        assert facts["finders"] == []


# ---------------------------------------------------------------------- SDKs imported later


@pytest.mark.parametrize("sdk", list(SDKS))
def test_an_sdk_imported_after_instrument_is_measured_exactly_once(sdk, module_server, replaying):
    needs(sdk)
    exchange = replaying(sdk)
    facts = child(
        f"""
        import importlib
        import steer_llm_sdk.observability as observability
        from steer_llm_sdk.observability.instrumentation import SDKS, instrumented
        observability.instrument()
        before = loaded()
        core_before = "steer_llm_sdk.observability.lifecycle" in sys.modules
        call_{sdk}()  # imports the SDK, then calls it once
        ours = importlib.import_module(
            "steer_llm_sdk.observability.instrumentation." + SDKS[{sdk!r}][1]
        )
        watched = [SDKS[{sdk!r}][0], *{{target[0] for target in ours.targets()}}]
        report(
            before=before,
            core_before=core_before,
            loaded=loaded(),
            patched=instrumented(),
            records=records(),
            loaders=[
                [name, type(sys.modules[name].__loader__).__name__,
                 sys.modules[name].__spec__.loader is sys.modules[name].__loader__]
                for name in watched if name in sys.modules
            ],
        )
        """,
        **models(module_server.url, **{sdk: exchange}),
    )
    assert facts["before"] == [] and facts["core_before"] is False
    assert facts["records"] == [expected_record(sdk, exchange)]
    assert facts["patched"] and entry_points(facts["patched"], sdk) == facts["patched"]
    own = {"bedrock": ["botocore", "boto3"]}.get(sdk, [SDKS[sdk]["package"]])
    assert sorted(facts["loaded"]) == sorted(own)  # no other SDK came along
    # The modules were found and loaded as without the hook: their own loaders, no wrapper.
    assert facts["loaders"] and all(
        kind == "SourceFileLoader" and same for _, kind, same in facts["loaders"]
    ), facts["loaders"]


@pytest.mark.parametrize("imported", ["packages", "entry-point modules"])
def test_sdks_imported_before_instrument_are_patched_at_once(imported, module_server, replaying):
    """anthropic imports its entry points' module with its package, openai (2.x and
    later) on first use: a module imported before instrument() is patched at once, the
    others when imported."""
    needs("openai", "anthropic")
    openai_exchange, anthropic_exchange = replaying("openai"), replaying("anthropic")
    first_import = (
        "import openai" if imported == "packages" else "import openai.resources.chat.completions"
    )
    facts = child(
        f"""
        import anthropic
        {first_import}
        import steer_llm_sdk.observability as observability
        from steer_llm_sdk.observability.instrumentation import instrumented
        entry_modules = [
            name in sys.modules
            for name in ("openai.resources.chat.completions", "anthropic.resources.messages")
        ]
        returned = observability.instrument("openai", "anthropic")
        at_once = instrumented()
        call_openai()
        call_anthropic()
        report(
            returned=returned, entry_modules=entry_modules, at_once=at_once, records=records()
        )
        """,
        **models(module_server.url, openai=openai_exchange, anthropic=anthropic_exchange),
    )
    assert facts["returned"] == ["openai", "anthropic"]
    # Patched at once where the entry points' module was imported, else once it is.
    openai_imported, anthropic_imported = facts["entry_modules"]
    assert anthropic_imported and (openai_imported or imported == "packages")
    openai_at_once = entry_points(facts["at_once"], "openai")
    assert any(p.endswith(".Completions.create") for p in openai_at_once) is openai_imported
    assert any(p.endswith(".Messages.create") for p in entry_points(facts["at_once"], "anthropic"))
    assert facts["records"] == [
        expected_record("openai", openai_exchange),
        expected_record("anthropic", anthropic_exchange),
    ]


# ---------------------------------------------------------------------- uninstrument


def test_uninstrument_removes_the_hook_and_the_patches(module_server, replaying):
    needs("openai", "anthropic")
    openai_exchange = replaying("openai")
    anthropic_exchange = replaying("anthropic")
    replaying("anthropic")
    facts = child(
        """
        import steer_llm_sdk.observability as observability
        from steer_llm_sdk.observability.instrumentation import instrumented
        observability.instrument()
        observability.uninstrument()
        finders_after_uninstrument = our_finders()
        call_openai()  # imported after uninstrument(): not patched
        not_patched = records()
        observability.instrument("anthropic")
        call_anthropic()
        measured = records()
        observability.uninstrument()
        from anthropic.resources.messages import Messages
        call_anthropic()
        report(
            finders_after_uninstrument=finders_after_uninstrument,
            not_patched=not_patched,
            measured=measured,
            after=records(),
            finders=our_finders(),
            patched=instrumented(),
            restored=type(Messages.__dict__["create"]).__name__,
        )
        """,
        **models(module_server.url, openai=openai_exchange, anthropic=anthropic_exchange),
    )
    assert facts["finders_after_uninstrument"] == [] and facts["finders"] == []
    assert facts["not_patched"] == []
    assert facts["measured"] == [expected_record("anthropic", anthropic_exchange)]
    assert facts["after"] == facts["measured"]  # the third call: no record
    assert facts["patched"] == [] and facts["restored"] == "function"


# ---------------------------------------------------------------------- threads


# Holds the import of module PARAMS["gate"] in another thread, before the module runs (it
# is in sys.modules, empty), until the main thread asks importlib for that module, as
# instrument() does to wait for an import in progress (or until instrument() returned).
RACE = """
import importlib.machinery, threading
import steer_llm_sdk.observability as observability
from steer_llm_sdk.observability.instrumentation import instrumented

GATED = PARAMS["gate"]
reached, release = threading.Event(), threading.Event()

class Held:
    def __init__(self, loader):
        self.loader = loader
    def create_module(self, spec):
        return self.loader.create_module(spec)
    def exec_module(self, module):
        reached.set()
        release.wait(60)
        self.loader.exec_module(module)

class Gate:
    def find_spec(self, fullname, path, target=None):
        if fullname != GATED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        spec.loader = Held(spec.loader)
        return spec

def released_when_waited_for(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "import_module":
        if frame.f_locals.get("name") == GATED:
            release.set()

sys.meta_path.insert(0, Gate())
failures = []
def importing():
    try:
        import openai.resources.chat.completions
    except BaseException as exc:
        failures.append(repr(exc))
importer = threading.Thread(target=importing)
importer.start()
assert reached.wait(60)
sys.setprofile(released_when_waited_for)
returned = observability.instrument("openai")
sys.setprofile(None)
at_return = instrumented()
release.set()
importer.join(60)
call_openai()
report(
    returned=returned, at_return=at_return, patched=instrumented(), records=records(),
    failures=failures, alive=importer.is_alive(),
)
"""


@pytest.mark.parametrize("gate", ["openai", "openai.resources.chat.completions"])
def test_an_import_in_another_thread_racing_instrument(gate, module_server, replaying):
    """instrument() while another thread is inside the import of openai's package, or of
    the module of its chat entry points: both end patched, and an entry point's module
    imported before instrument() is patched by the time instrument() returns."""
    needs("openai")
    exchange = replaying("openai")
    facts = child(RACE, gate=gate, **models(module_server.url, openai=exchange))
    assert facts["failures"] == [] and facts["alive"] is False
    assert facts["returned"] == ["openai"]
    assert any(p.endswith(".Completions.create") for p in facts["patched"])
    if gate == "openai.resources.chat.completions":
        assert any(p.endswith(".Completions.create") for p in facts["at_return"])
    assert facts["records"] == [expected_record("openai", exchange)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
def test_a_child_forked_while_a_thread_held_the_locks_still_patches_on_import(tmp_path):
    """The hooks take the registry's locks inside the SDKs' imports: a child forked while
    another thread held them must have its own, or its first import of an SDK hangs."""
    fake = write(
        tmp_path,
        {
            "openai/__init__.py": "",
            "openai/resources/__init__.py": "",
            "openai/resources/chat/__init__.py": "",
            "openai/resources/chat/completions.py": """
                class Completions:
                    def create(self, **kwargs):
                        return None
            """,
        },
    )
    facts = child(
        """
        import os, signal, threading
        import steer_llm_sdk.observability as observability
        from steer_llm_sdk.observability.instrumentation import _hooks, _registry, instrumented
        observability.instrument("openai")
        holding, done = threading.Event(), threading.Event()
        def hold():
            with _registry._lock, _hooks._lock:
                holding.set()
                done.wait(60)
        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(60)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: bounded, in case it hangs
            signal.alarm(20)
            import openai.resources.chat.completions
            os.write(write, json.dumps(instrumented()).encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        patched = os.read(read, 65536).decode()
        done.set()
        holder.join(60)
        report(status=status, patched=json.loads(patched) if patched else None)
        """,
        paths=[fake],
    )
    assert facts["status"] == 0
    assert facts["patched"] == ["openai.resources.chat.completions.Completions.create"]


# ---------------------------------------------------------------------- failing imports


def write(root: Path, files: Dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_a_broken_import_raises_the_applications_own_error(tmp_path):
    """A watched package that fails to run raises its own exception, each time, as without
    the hook; a watched module that is not there raises the import system's own error."""
    fake = write(
        tmp_path,
        {
            "openai/__init__.py": """
                import os
                if os.environ.get("FAKE_OPENAI_BROKEN", "1") == "1":
                    raise ImportError("the application's own error")
            """,
            "openai/resources/__init__.py": "",
            "openai/resources/chat/__init__.py": "",
        },
    )
    facts = child(
        """
        import os, traceback
        import steer_llm_sdk.observability as observability

        def attempt(name):
            try:
                __import__(name)
            except BaseException as exc:
                frames = traceback.extract_tb(exc.__traceback__)
                return [type(exc).__name__, str(exc), getattr(exc, "name", None),
                        frames[-1].filename, name in sys.modules]
            return None

        unhooked = attempt("openai")
        observability.instrument("openai")
        hooked = [attempt("openai"), attempt("openai")]
        os.environ["FAKE_OPENAI_BROKEN"] = "0"
        import openai  # runs now
        missing = attempt("openai.resources.chat.completions")
        observability.uninstrument()
        report(
            unhooked=unhooked, hooked=hooked, missing=missing,
            missing_unhooked=attempt("openai.resources.chat.completions"),
            fake=openai.__file__,
        )
        """,
        paths=[fake],
    )
    assert facts["unhooked"][:3] == ["ImportError", "the application's own error", None]
    assert facts["unhooked"][3].endswith("__init__.py") and facts["unhooked"][4] is False
    assert facts["hooked"] == [facts["unhooked"], facts["unhooked"]]
    assert facts["fake"].startswith(str(fake))  # found where it is found without the hook
    assert facts["missing"][:3] == [
        "ModuleNotFoundError",
        "No module named 'openai.resources.chat.completions'",
        "openai.resources.chat.completions",
    ]
    assert facts["missing"] == facts["missing_unhooked"]


def test_a_failure_of_ours_never_fails_the_applications_import(tmp_path):
    """Patching a module that misbehaves fails inside the hook: logged, and the module is
    imported as without it."""
    fake = write(
        tmp_path,
        {
            "openai/__init__.py": "",
            "openai/resources/__init__.py": "",
            "openai/resources/chat/__init__.py": "",
            "openai/resources/chat/completions.py": """
                LOADED = True
                def __getattr__(name):
                    raise RuntimeError("no attribute can be looked up")
            """,
        },
    )
    facts = child(
        """
        import logging
        import steer_llm_sdk.observability as observability
        from steer_llm_sdk.observability.instrumentation import instrumented
        messages = []
        handler = logging.Handler()
        handler.emit = lambda record: messages.append(record.getMessage())
        logging.getLogger("steer_llm_sdk").addHandler(handler)
        observability.instrument("openai")
        import openai.resources.chat.completions as completions
        report(loaded=completions.LOADED, patched=instrumented(), messages=messages)
        """,
        paths=[fake],
    )
    assert facts["loaded"] is True and facts["patched"] == []
    assert len(facts["messages"]) == 1
    assert "openai.resources.chat.completions" in facts["messages"][0]
    assert "RuntimeError: no attribute can be looked up" in facts["messages"][0]


# ---------------------------------------------------------------------- reload, repeats


def test_a_reloaded_module_is_patched_again():
    needs("bedrock")
    facts = child(
        """
        import importlib
        import steer_llm_sdk.observability as observability
        from steer_llm_sdk.observability.instrumentation import instrumented
        observability.instrument("bedrock")
        import botocore.client
        first = botocore.client.BaseClient
        importlib.reload(botocore.client)
        second = botocore.client.BaseClient
        def kinds():
            return [type(c.__dict__["_make_api_call"]).__name__ for c in (first, second)]
        wrapped = kinds()
        patched = instrumented()
        observability.uninstrument()
        report(
            new_class=second is not first, wrapped=wrapped, patched=patched,
            restored=kinds(),
            loader=type(botocore.client.__loader__).__name__,
        )
        """
    )
    assert facts["new_class"] is True
    assert facts["wrapped"] == ["FunctionWrapper", "FunctionWrapper"]
    assert facts["patched"] == ["botocore.client.BaseClient._make_api_call"]
    assert facts["restored"] == ["function", "function"]
    assert facts["loader"] == "SourceFileLoader"


def test_what_instrument_returns_and_raises():
    needs("openai")
    facts = child(
        """
        import steer_llm_sdk.observability as observability
        sys.modules["anthropic"] = None  # as if not installed: imports of it fail
        results = {}
        for args in (("openai", "anthropic"), ("nope",)):
            try:
                observability.instrument(*args)
            except (ImportError, ValueError) as exc:
                results[",".join(args)] = [type(exc).__name__, our_finders()]
        results["all"] = observability.instrument()
        results["openai twice"] = observability.instrument("openai", "openai")
        report(results=results, finders=our_finders())
        """
    )
    results = facts["results"]
    assert results["openai,anthropic"] == ["ImportError", []]  # nothing armed
    assert results["nope"] == ["ValueError", []]
    assert results["all"] == [
        name
        for name, (package, _) in REGISTRY.items()
        if importlib.util.find_spec(package) and name != "anthropic"
    ]
    assert results["openai twice"] == ["openai"]
    assert len(facts["finders"]) == 1


# ---------------------------------------------------------------------- public names


def test_public_names_load_on_first_use():
    facts = child(
        """
        import types
        import steer_llm_sdk, steer_llm_sdk.observability as observability
        listed = [sorted(set(m.__all__) - set(dir(m))) for m in (steer_llm_sdk, observability)]
        client_loaded = "steer_llm_sdk.client" in sys.modules
        from steer_llm_sdk import SteerLLMClient
        import steer_llm_sdk.observability.doctor  # binds the submodule on the package...
        from steer_llm_sdk.observability import doctor  # ...which exports the function
        report(
            listed=listed,
            client_loaded=client_loaded,
            same=SteerLLMClient is steer_llm_sdk.client.SteerLLMClient,
            errors=steer_llm_sdk.errors.__name__,
            doctor=type(doctor).__name__,
            unknown=hasattr(steer_llm_sdk, "nothing_of_that_name"),
        )
        """
    )
    assert facts["listed"] == [[], []]
    assert facts["client_loaded"] is False and facts["same"] is True
    assert facts["errors"] == "steer_llm_sdk.errors"
    assert facts["doctor"] == "function"
    assert facts["unknown"] is False
