"""Refining end to end: a scripted model server, real pytest runs in a shadow copy."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.support.fake_openai import FakeOpenAI
from tests.support.projects import ROOT_ON_PATH, write

from tracefix.fixing.engine import refine
from tracefix.fixing.model import ModelClient, ModelError, not_configured_message, temperatures
from tracefix.fixing.prompt import Feedback, FixRequest, Subject, build_messages
from tracefix.fixing.replies import Candidate, Rejected, Target, TargetError, parse_reply, targets_for
from tracefix.fixing.secrets import Redactor
from tracefix.fixing.shadow import Shadow, bubblewrap, network_prefix
from tracefix.settings import LLMSettings, merge

STATS = '''\
"""Statistics helpers."""

TOKEN = "sk-live-0123456789abcdefghijklmn"


def mean(values):
    """The arithmetic mean; 0 for no values."""
    return sum(values) / (len(values) + 1)


def total(values):
    return sum(values)
'''

TESTS = """\
from stats import mean, total


def test_mean():
    assert mean([2, 4]) == 3


def test_mean_single():
    assert mean([5]) == 5


def test_mean_empty():
    assert mean([]) == 0


def test_total():
    assert total([1, 2]) == 3
"""

RIGHT = '''\
def mean(values):
    """The arithmetic mean; 0 for no values."""
    return sum(values) / len(values) if values else 0
'''

WRONG = '''\
def mean(values):
    """The arithmetic mean; 0 for no values."""
    return sum(values) / (len(values) + 2)
'''

# fixes test_mean and test_mean_single, breaks test_mean_empty (ZeroDivisionError)
BREAKS_EMPTY = '''\
def mean(values):
    """The arithmetic mean; 0 for no values."""
    return sum(values) / len(values)
'''

AFFECTED = [
    "tests/test_stats.py::test_mean_single",
    "tests/test_stats.py::test_mean_empty",
    "tests/test_stats.py::test_total",
]


def fenced(code: str, chatter: str = "") -> str:
    return f"{chatter}```python\n{code}```\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(tmp_path / "proj", {"stats.py": STATS, "tests/test_stats.py": TESTS, **ROOT_ON_PATH})


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_fifo()
    }


def fix_request(root: Path, **changes) -> FixRequest:
    text = changes.pop("file_text", None) or (root / "stats.py").read_text()
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines, 1) if line.startswith("def mean"))
    fields = dict(
        root=root,
        python=sys.executable,
        path="stats.py",
        qualname="mean",
        function_source="".join(lines[start - 1 : start + 2]),
        function_start_line=start,
        function_end_line=start + 2,
        signature="def mean(values):",
        docstring="The arithmetic mean; 0 for no values.",
        test_nodeid="tests/test_stats.py::test_mean",
        test_source="def test_mean():\n    assert mean([2, 4]) == 3\n",
        failure_message="assert 2.0 == 3",
        expected="3",
        actual="2.0",
        trace_text="L9 mean: values=[2, 4] -> return 2.0",
        affected_tests=AFFECTED,
    )
    fields.update(changes)
    return FixRequest(**fields)


def settings_for(fake: FakeOpenAI, **changes) -> LLMSettings:
    return LLMSettings(model="fake-model", base_url=fake.base_url, **{"candidates": 1, "rounds": 2, **changes})


def client_for(fake: FakeOpenAI, **changes) -> ModelClient:
    return ModelClient(settings_for(fake, **changes), env={}, backoff=0.01)


def target(root: Path) -> Target:
    return Target.from_request(fix_request(root))


# --- end to end -----------------------------------------------------------------------------


async def test_wrong_then_right_only_the_right_one_is_verified(project, fake_openai):
    fake = fake_openai([fenced(WRONG), fenced(RIGHT)])
    before = snapshot(project)
    progress: list[str] = []
    outcome = await refine(fix_request(project), settings_for(fake), client=client_for(fake), report=progress.append)

    assert outcome.error is None
    assert [a.verdict for a in outcome.attempts] == ["fails", "verified"]
    assert outcome.best is not None and "if values else 0" in outcome.best.function_source
    assert outcome.best.rewrites[0].lines == (6, 8)
    assert "+    return sum(values) / len(values) if values else 0" in outcome.best.diff
    assert outcome.evidence.startswith("verified: 4/4 affected tests pass")
    assert outcome.model_calls == 2 and outcome.tokens_in > 0 and outcome.tokens_out > 0
    assert "round 1: candidate 1/1: 2/4 tests pass; tests/test_stats.py::test_mean: failed" in "\n".join(progress)
    # the first prompt carries the trace; the second also the first candidate and its failure
    first, second = (r.prompt for r in fake.chat_requests)
    assert "L9 mean: values=[2, 4] -> return 2.0" in first
    assert "Earlier attempt" not in first
    assert "(len(values) + 2)" in second and "test_mean: failed" in second
    assert snapshot(project) == before


async def test_candidates_alternate_the_traced_and_the_brief_prompt(project, fake_openai):
    fake = fake_openai([fenced(WRONG), fenced(RIGHT)])
    outcome = await refine(fix_request(project), settings_for(fake, candidates=2, rounds=1), client=client_for(fake))
    traced = ["L9 mean: values=[2, 4] -> return 2.0" in r.prompt for r in fake.chat_requests]
    assert sorted(traced) == [False, True]  # the requests run concurrently: either may arrive first
    assert sorted(a.view for a in outcome.attempts) == ["brief", "trace"]
    assert outcome.best is not None


async def test_a_reply_that_breaks_another_test_is_never_verified(project, fake_openai):
    fake = fake_openai([fenced(BREAKS_EMPTY)])
    before = snapshot(project)
    outcome = await refine(fix_request(project), settings_for(fake, rounds=1), client=client_for(fake))

    assert outcome.best is None
    (attempt,) = outcome.attempts
    assert attempt.verdict == "regresses" and attempt.fixes_test
    assert attempt.regressions == ["tests/test_stats.py::test_mean_empty"]
    assert outcome.unverified is attempt.candidate
    assert outcome.evidence.startswith("not verified: 3/4 tests pass; fixes tests/test_stats.py::test_mean but breaks")
    assert snapshot(project) == before


async def test_chatter_around_the_block_is_ignored(project, fake_openai):
    reply = fenced(RIGHT, "The bug: the divisor is off by one. Here is the fix:\n\n") + "\nThis handles [] too."
    fake = fake_openai([reply])
    outcome = await refine(fix_request(project), settings_for(fake), client=client_for(fake))
    assert outcome.best is not None and outcome.attempts[0].verdict == "verified"


async def test_search_replace_reply_is_verified(project, fake_openai):
    reply = (
        "<<<<<<< SEARCH\n"
        "    return sum(values) / (len(values) + 1)\n"
        "=======\n"
        "    return sum(values) / len(values) if values else 0\n"
        ">>>>>>> REPLACE\n"
    )
    fake = fake_openai([reply])
    outcome = await refine(fix_request(project), settings_for(fake), client=client_for(fake))
    assert outcome.best is not None
    assert outcome.best.size == 2  # one line out, one in


async def test_unusable_replies_are_rejected_and_explained_to_the_next_round(project, fake_openai):
    changed_signature = RIGHT.replace("def mean(values):", "def mean(values, default=0):")
    fake = fake_openai([fenced(changed_signature), "Sorry, I cannot help with that.", fenced(RIGHT)])
    outcome = await refine(fix_request(project), settings_for(fake, candidates=2, rounds=2), client=client_for(fake))
    reasons = " | ".join(a.reason for a in outcome.attempts[:2])
    assert [a.verdict for a in outcome.attempts[:2]] == ["rejected", "rejected"]
    assert "changes the signature of mean" in reasons and "no ```python block" in reasons
    assert outcome.best is not None
    assert "the reply was not usable" in fake.chat_requests[-1].prompt


async def test_an_unsaved_buffer_is_what_gets_verified(project, fake_openai):
    # on disk total() is broken too; the editor's unsaved buffer has it fixed
    broken_total = STATS.replace("return sum(values)\n", "return sum(values) + 1\n")
    (project / "stats.py").write_text(broken_total)
    before = snapshot(project)
    request = fix_request(project, file_text=STATS, overlay={"stats.py": STATS})
    fake = fake_openai([fenced(RIGHT)])
    outcome = await refine(request, settings_for(fake), client=client_for(fake))

    assert outcome.best is not None, outcome.evidence
    assert "return sum(values)\n" in outcome.best.file_text.split("def total")[1]
    assert snapshot(project) == before


async def test_secrets_are_redacted_from_the_prompt_and_restored_in_the_fix(project, fake_openai, monkeypatch):
    key = "sk-test-SECRETKEY-abcdefghijklmnop"
    monkeypatch.setenv("TRACEFIX_TEST_KEY", key)
    source = RIGHT.replace("    return", '    password = "hunter2hunter2"\n    return')

    def echo_placeholders(body: dict) -> str:
        # a model that copies the placeholders it was shown back into its fix
        prompt = body["messages"][1]["content"]
        placeholder = prompt.split('password = "')[1].split('"')[0]
        return fenced(source.replace("hunter2hunter2", placeholder))

    original = STATS.replace(
        "    return sum(values) / (len", '    password = "hunter2hunter2"\n    return sum(values) / (len'
    )
    (project / "stats.py").write_text(original)
    request = fix_request(
        project,
        function_source="".join(original.splitlines(keepends=True)[5:9]),
        function_end_line=9,
        test_source=f"API_KEY = {key!r}\n" + fix_request(project).test_source,
    )
    fake = fake_openai([echo_placeholders])
    settings = settings_for(fake, api_key_env="TRACEFIX_TEST_KEY")
    outcome = await refine(request, settings, client=ModelClient(settings))

    (sent,) = fake.chat_requests
    assert sent.headers["authorization"] == f"Bearer {key}"  # the key goes where it belongs
    for secret in (key, "hunter2hunter2", "sk-live-0123456789abcdefghijklmn"):
        assert secret not in sent.prompt and secret not in str(sent.body)
    assert outcome.best is not None
    assert 'password = "hunter2hunter2"' in outcome.best.function_source


async def test_candidate_tests_do_not_see_the_api_key_or_the_users_home(project, fake_openai, monkeypatch):
    monkeypatch.setenv("TRACEFIX_TEST_KEY", "sk-test-abcdefghijklmnopqrstuvwx")
    probe = RIGHT.replace(
        "    return",
        "    import os\n"
        '    assert "TRACEFIX_TEST_KEY" not in os.environ\n'
        f'    assert os.environ["HOME"] != {str(Path.home())!r}\n'
        "    return",
    )
    fake = fake_openai([fenced(probe)])
    settings = settings_for(fake, api_key_env="TRACEFIX_TEST_KEY", rounds=1)
    outcome = await refine(fix_request(project), settings, client=ModelClient(settings))
    assert outcome.best is not None, outcome.evidence


async def test_model_errors_end_in_outcome_error_without_an_edit(project, fake_openai):
    fake = fake_openai([{"status": 500}] * 4)
    before = snapshot(project)
    outcome = await refine(fix_request(project), settings_for(fake), client=client_for(fake))
    assert outcome.best is None and outcome.unverified is None
    assert "HTTP 500 after 4 tries" in outcome.error
    assert outcome.model_calls == 4
    assert snapshot(project) == before


async def test_without_a_model_refine_says_how_to_configure_one(project):
    outcome = await refine(fix_request(project), LLMSettings())
    assert outcome.error == not_configured_message()
    assert outcome.attempts == [] and outcome.baseline is None


async def test_a_test_that_already_passes_is_not_sent_to_the_model(project, fake_openai):
    fake = fake_openai([fenced(RIGHT)])
    request = fix_request(project, test_nodeid="tests/test_stats.py::test_total")
    outcome = await refine(request, settings_for(fake), client=client_for(fake))
    assert "passes in a fresh copy" in outcome.error
    assert fake.chat_requests == []


async def test_a_stale_request_is_refused(project, fake_openai):
    fake = fake_openai([fenced(RIGHT)])
    request = fix_request(project, function_start_line=5, function_end_line=7)
    outcome = await refine(request, settings_for(fake), client=client_for(fake))
    assert "differs from the request's function source" in outcome.error


async def test_a_missing_interpreter_is_named(project, fake_openai):
    fake = fake_openai([fenced(RIGHT)])
    request = fix_request(project, python=str(project / "no-such-python"))
    outcome = await refine(request, settings_for(fake), client=client_for(fake))
    assert "no-such-python does not exist" in outcome.error
    assert fake.chat_requests == []


async def test_cancelling_kills_the_running_tests_and_removes_the_shadow(project, fake_openai, monkeypatch):
    hang = RIGHT.replace("    return", "    import time\n    time.sleep(60)\n    return")
    fake = fake_openai([fenced(hang)])
    shadows: list[Path] = []
    original_run = Shadow.run

    async def run(self, nodeids, *, timeout):
        shadows.append(self.dir)
        return await original_run(self, nodeids, timeout=timeout)

    monkeypatch.setattr(Shadow, "run", run)
    progress: list[str] = []
    task = asyncio.create_task(
        refine(fix_request(project), settings_for(fake), client=client_for(fake), report=progress.append)
    )
    while not any(m.startswith("round 1: asking") for m in progress):
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # the candidate's run is under way
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5
    assert shadows and not shadows[0].exists()


@pytest.mark.slow  # end to end through real runs: CI runs it with -m slow
async def test_a_hanging_candidate_is_stopped_by_the_test_timeout(project, fake_openai):
    hang = RIGHT.replace("    return", "    while True:\n        pass\n    return")
    fake = fake_openai([fenced(hang)])
    outcome = await refine(
        # long enough for the baseline run on a loaded 2-core machine, short enough for the test
        fix_request(project, test_timeout=20),
        settings_for(fake, rounds=1),
        client=client_for(fake),
    )
    assert outcome.error is None
    (attempt,) = outcome.attempts
    assert attempt.verdict == "fails" and "timeout" in attempt.reason
    assert outcome.best is None


async def test_a_hanging_function_is_fixed_like_a_failing_one(project, fake_openai):
    stats = project / "stats.py"
    stats.write_text(STATS.replace("    return sum(values) / (len(values) + 1)", "    while values: pass"))
    fake = fake_openai([fenced(RIGHT)])
    outcome = await refine(fix_request(project, test_timeout=10), settings_for(fake, rounds=1), client=client_for(fake))
    assert outcome.error is None
    assert outcome.baseline.status == "timeout"
    assert outcome.best is not None and outcome.evidence.startswith("verified: 4/4 affected tests pass")


# --- the client against faults ---------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "fix it"}]


async def test_429_is_retried_after_the_servers_wait(fake_openai):
    fake = fake_openai([{"status": 429, "headers": {"Retry-After": "0"}}, "fixed"])
    (completion,) = await client_for(fake).complete(MESSAGES, n=1, temperature=0.2)
    assert completion.text == "fixed"
    assert len(fake.chat_requests) == 2


async def test_429_with_a_long_wait_gives_up_at_once(fake_openai):
    fake = fake_openai([{"status": 429, "headers": {"Retry-After": "3600"}}])
    with pytest.raises(ModelError, match=r"rate limiting requests \(429\) and asks to wait 3600 s"):
        await client_for(fake).complete(MESSAGES, n=1, temperature=0.2)
    assert len(fake.chat_requests) == 1


@pytest.mark.parametrize(
    "step, words",
    [
        ({"empty": True}, "empty reply"),
        ({"finish_reason": "length", "reply": "def mean(values):\n    return"}, "cut off"),
        ({"raw": "<html>bad gateway</html>"}, "malformed reply"),
        ({"no_choices": True}, "without choices"),
        ({"status": 401}, "$OPENAI_API_KEY is not set"),
        ({"status": 404}, "check tracefix.llm.model"),
        ({"status": 400, "message": "context length exceeded"}, "The server said: context length exceeded"),
    ],
)
async def test_faults_become_clear_model_errors(fake_openai, step, words):
    fake = fake_openai([step])
    with pytest.raises(ModelError) as caught:
        await client_for(fake).complete(MESSAGES, n=1, temperature=0.2)
    assert words in str(caught.value)


async def test_a_slow_model_times_out(fake_openai):
    fake = fake_openai([{"delay": 5, "reply": "late"}])
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"did not answer within 0.5 s; raise tracefix.llm.timeout"):
        await client_for(fake, timeout=0.5).complete(MESSAGES, n=1, temperature=0.2)
    assert time.monotonic() - started < 3


async def test_a_server_that_is_not_running_is_named():
    with FakeOpenAI([]) as fake:
        url = fake.base_url  # a port that was free a moment ago and is closed now
    client = ModelClient(LLMSettings(model="m", base_url=url), env={})
    with pytest.raises(ModelError, match=r"Cannot reach the model m at http://127\.0\.0\.1:.*Is the server running"):
        await client.complete(MESSAGES, n=1, temperature=0.2)


async def test_some_failed_candidates_still_leave_the_others(fake_openai):
    fake = fake_openai(["one", {"status": 400}, "three"])
    completions = await client_for(fake).complete(MESSAGES, n=3, temperature=0.2)
    assert sorted(c.text for c in completions) == ["one", "three"]
    assert sorted(r.body["temperature"] for r in fake.chat_requests) == [0.2, 0.6, 1.0]


def test_allow_remote_false_refuses_a_remote_endpoint():
    remote = LLMSettings(model="gpt-4o-mini", base_url="https://api.openai.com/v1", allow_remote=False)
    with pytest.raises(ModelError, match=r"allowRemote is false.*https://api\.openai\.com/v1 is not on this machine"):
        ModelClient(remote, env={})
    from_env = LLMSettings(model="m", allow_remote=False)
    with pytest.raises(ModelError, match=r"example\.com"):
        ModelClient(from_env, env={"OPENAI_BASE_URL": "http://example.com:8000/v1"})
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:1234/v1", "http://127.1.2.3/v1"):
        ModelClient(LLMSettings(model="m", base_url=url, allow_remote=False), env={})
    with pytest.raises(ModelError):
        ModelClient(LLMSettings(model="m", base_url="http://localhost.example.com/v1", allow_remote=False), env={})


# --- settings -----------------------------------------------------------------------------------


def llm_of(table) -> tuple[LLMSettings, list[str]]:
    """The model settings a `[tool.tracefix]` with this `llm` table gives, and the warnings."""
    settings, warnings = merge({"llm": table})
    return settings.llm, warnings


def test_model_settings_are_validated_with_warnings():
    settings, warnings = llm_of(
        {
            "model": "qwen2.5-coder",
            "baseUrl": "http://127.0.0.1:11434/v1",
            "apiKeyEnv": "sk-oops-a-key-not-a-name",
            "timeout": -3,
            "candidates": 2,
            "rounds": True,
            "temperature": 0.5,
            "allowRemote": "no",
            "redact": [r"INTERNAL-\d+", "("],
            "colour": "blue",
        }
    )
    assert settings.model == "qwen2.5-coder" and settings.base_url == "http://127.0.0.1:11434/v1"
    assert settings.candidates == 2 and settings.temperature == 0.5
    defaults = LLMSettings()
    assert settings.api_key_env == defaults.api_key_env and settings.timeout == defaults.timeout
    assert settings.rounds == defaults.rounds and settings.allow_remote is True
    assert settings.redact == []  # one bad pattern rejects the list
    text = "\n".join(warnings)
    for name in ("apiKeyEnv", "timeout", "rounds", "allowRemote", "redact", "colour"):
        assert f"tracefix.llm.{name}" in text
    assert len(warnings) == 6


def test_model_settings_never_raise_and_redact_patterns_add_to_the_defaults():
    settings, warnings = llm_of("gpt-4o")
    assert settings == LLMSettings() and "tracefix.llm should be a table" in warnings[0]
    assert llm_of(None) == (LLMSettings(), [])
    settings, warnings = llm_of({"redact": [r"INTERNAL-\d+"], "api_key_env": "MY_KEY"})
    assert warnings == [] and settings.api_key_env == "MY_KEY"
    redacted = Redactor(settings.redact).redact('ticket = "INTERNAL-42"; key = "AKIAIOSFODNN7EXAMPLE"')
    assert "INTERNAL-42" not in redacted and "AKIAIOSFODNN7EXAMPLE" not in redacted


def test_not_configured_message_says_what_to_set():
    message = not_configured_message()
    for words in (
        "tracefix.llm.model",
        "tracefix.llm.baseUrl",
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "tracefix.llm.apiKeyEnv",
        "docs/models.md",
    ):
        assert words in message


def test_temperatures_spread_and_cap():
    assert temperatures(0.2, 3) == [0.2, 0.6, 1.0]
    assert temperatures(0.8, 3) == [0.8, 1.2, 1.2]
    assert temperatures(1.5, 2) == [1.5, 1.5]


def test_redactor_default_patterns():
    redactor = Redactor(LLMSettings().redact)
    text = (
        'aws = "AKIAIOSFODNN7EXAMPLE"\n'
        'gh = "ghp_abcdefghijklmnopqrstuvwxyz0123"\n'
        'db_password = "correct horse"\n'
        "config = {'api_key': 'abcd1234efgh'}\n"
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n"
        "tokens = count_tokens(text)\n"
    )
    redacted = redactor.redact(text)
    for secret in ("AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghij", "correct horse", "abcd1234efgh", "MIIEow"):
        assert secret not in redacted
    assert 'db_password = "REDACTED_' in redacted  # the code around a secret stays readable
    assert "tokens = count_tokens(text)" in redacted
    assert redactor.restore(redacted) == text


# --- replies ---------------------------------------------------------------------------------


def test_the_block_that_defines_the_function_wins(project):
    reply = (
        "The original:\n```python\ndef total(values):\n    return sum(values)\n```\n"
        f"Fixed:\n```python\n{RIGHT}```\nUsage:\n```python\nprint(mean([1]))\n```"
    )
    candidate = parse_reply(reply, target(project))
    assert isinstance(candidate, Candidate)
    assert candidate.function_source == RIGHT


def test_a_missing_closing_fence_is_tolerated(project):
    candidate = parse_reply("```python\n" + RIGHT, target(project))
    assert isinstance(candidate, Candidate) and candidate.function_source == RIGHT


@pytest.mark.parametrize(
    "reply, reason",
    [
        ("```python\ndef mean(values:\n    return 0\n```", "does not parse"),
        ("```python\ndef median(values):\n    return 0\n```", "does not define mean"),
        (
            fenced(STATS.split("def mean")[0] + "def mean" + STATS.split("def mean")[1].split("\n\n\n")[0] + "\n"),
            "unchanged",
        ),
        (fenced("def mean(items):\n    return 0\n"), "changes the signature"),
        (fenced("def mean(values=()):\n    return 0\n"), "changes the signature"),
        (fenced("async def mean(values):\n    return 0\n"), "changes the signature"),
        ("<<<<<<< SEARCH\n    return nothing\n=======\n    return 0\n>>>>>>> REPLACE", "does not match"),
        ("no code here", "no ```python block"),
    ],
)
def test_unusable_replies_say_why(project, reply, reason):
    result = parse_reply(reply, target(project))
    assert isinstance(result, Rejected)
    assert reason in result.reason


def test_an_allowed_signature_change_passes(project):
    result = parse_reply(
        fenced("def mean(values, empty=0):\n    return empty\n"), target(project), allow_signature_change=True
    )
    assert isinstance(result, Candidate)


def test_a_method_is_reindented_to_its_class(tmp_path):
    text = textwrap.dedent("""\
        class Cart:
            @property
            def total(self):
                return 1

            def other(self):
                return 2
        """)
    (tmp_path / "cart.py").write_text(text)
    request = FixRequest(
        root=tmp_path,
        python=sys.executable,
        path="cart.py",
        qualname="Cart.total",
        function_source="    @property\n    def total(self):\n        return 1\n",
        function_start_line=2,
        function_end_line=4,
        signature="    def total(self):",
        test_nodeid="tests/test_cart.py::test_total",
        test_source="",
        failure_message="assert 1 == 42",
    )
    reply = fenced("@property\ndef total(self):\n    '''Sum.\n\n    Of lines.'''\n    return 42\n")
    candidate = parse_reply(reply, Target.from_request(request))
    assert isinstance(candidate, Candidate)
    assert (
        candidate.function_source
        == "    @property\n    def total(self):\n        '''Sum.\n\n        Of lines.'''\n        return 42\n"
    )
    assert candidate.file_text.endswith("\n\n    def other(self):\n        return 2\n")
    # the whole class quoted back also works
    quoted = fenced("class Cart:\n    @property\n    def total(self):\n        return 43\n")
    result = parse_reply(quoted, Target.from_request(request))
    assert isinstance(result, Candidate) and "        return 43\n" in result.function_source


def test_crlf_files_keep_their_line_endings(tmp_path):
    text = STATS.replace("\n", "\r\n")
    (tmp_path / "stats.py").write_bytes(text.encode())
    request = fix_request(tmp_path, file_text=text, overlay={"stats.py": text})
    candidate = parse_reply(fenced(RIGHT), Target.from_request(request))
    assert isinstance(candidate, Candidate)
    assert "\r\n" in candidate.file_text and "\n" not in candidate.file_text.replace("\r\n", "")
    edit = "<<<<<<< SEARCH\n    return sum(values) / (len(values) + 1)\n=======\n    return 0\n>>>>>>> REPLACE\n"
    edited = parse_reply(edit, Target.from_request(request))
    assert isinstance(edited, Candidate) and edited.function_source.endswith("    return 0\r\n")


def test_target_checks_the_request_against_the_file(project):
    with pytest.raises(TargetError, match="has 12 lines"):
        Target.from_request(fix_request(project, function_end_line=99))
    with pytest.raises(TargetError, match=r"cannot read gone\.py"):
        Target.from_request(fix_request(project, path="gone.py"))


# --- prompt ----------------------------------------------------------------------------------


def test_prompt_has_what_the_model_needs(project):
    request = fix_request(
        project,
        callers=[("report", "def report(values):\n    return f'{mean(values):.2f}'\n")],
        review_comments=["@ana: handle the empty list"],
        instruction="change type: behaviour -> location: mean's return -> edit: return 0 for []",
    )
    system, user = build_messages(request, previous=[Feedback(result="3/4 tests pass", source=WRONG)])
    assert system["role"] == "system" and "one ```python fenced block" in system["content"]
    assert "parameters (with their defaults)" in system["content"]
    content = user["content"]
    for part in (
        "stats.py, lines 6-8",
        RIGHT.splitlines()[0],
        "def report(values)",
        "test_mean",
        "expected: 3\nactual:   2.0",
        "L9 mean: values=[2, 4]",
        "@ana: handle the empty list",
        "return 0 for []",
        "Earlier attempt 1 did not work",
        "(len(values) + 2)",
        "Try a different fix",
    ):
        assert part in content
    allowed = build_messages(fix_request(project, allow_signature_change=True))[0]["content"]
    assert "parameters" not in allowed


def test_prompt_asks_for_the_wrong_line_when_there_is_a_trace(project):
    ask = build_messages(fix_request(project))[1]["content"].splitlines()[-1]
    assert ask.startswith("First say in one or two sentences which line is wrong, judging by the trace. ")
    untraced = build_messages(fix_request(project, trace_text=""))[1]["content"].splitlines()[-1]
    assert untraced == "Reply with the corrected `mean` function in one ```python block."


# --- shadow ----------------------------------------------------------------------------------


async def test_shadow_skips_environments_and_never_writes_through_links(project, tmp_path):
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref")
    env = project / "env-3.11"
    env.mkdir()
    (env / "pyvenv.cfg").write_text("home = /usr")
    (project / "node_modules").mkdir()
    outside = tmp_path / "outside.py"
    outside.write_text("x = 1\n")
    (project / "linked.py").symlink_to(outside)
    (project / "linked_dir").symlink_to(tmp_path)
    os.mkfifo(project / "pipe")
    before = snapshot(project), outside.read_text()

    async with Shadow(project, sys.executable) as shadow:
        names = {p.name for p in shadow.root.iterdir()}
        assert {"stats.py", "tests", "linked.py"} <= names
        assert not names & {".git", "env-3.11", "node_modules", "pipe"}
        assert (shadow.root / "linked.py").is_symlink()
        shadow.write("linked.py", "x = 2\n")
        assert (shadow.root / "linked.py").read_text() == "x = 2\n"
        with pytest.raises(TargetError, match="symlink that leaves the workspace"):
            shadow.write("linked_dir/new/escape.py", "x = 3\n")
        assert not (tmp_path / "new").exists()
        shadow.write("stats.py", "broken(")
        shadow.reset("stats.py")
        assert (shadow.root / "stats.py").read_text() == STATS
        assert shadow.offline == bool(bubblewrap() or network_prefix())
    assert not shadow.dir.exists()
    assert (snapshot(project), outside.read_text()) == before


@pytest.mark.skipif(
    not (bubblewrap() or network_prefix()), reason="no bubblewrap nor unprivileged network namespace here"
)
async def test_candidate_tests_have_no_network(project):
    (project / "tests" / "test_net.py").write_text(
        "import socket\n\n"
        "def test_no_network():\n"
        "    s = socket.socket()\n"
        "    s.settimeout(2)\n"
        "    assert s.connect_ex(('1.1.1.1', 53)) != 0\n"
        "    assert 'lo' in dict(socket.if_nameindex()).values()\n"
        "    assert len(socket.if_nameindex()) == 1\n"
    )
    async with Shadow(project, sys.executable) as shadow:
        report = await shadow.run(["tests/test_net.py"], timeout=30)
    assert [r.outcome for r in report.results] == ["passed"], report.output


def test_dropping_a_type_hint_is_not_a_signature_change():
    from tracefix.fixing.replies import _signature

    def sig(src):
        return _signature(ast.parse(src).body[0])

    assert sig("def f(a: float, b=2) -> int: pass") == sig("def f(a, b=2): pass")
    assert sig("def f(a, b=2): pass") != sig("def f(a, b=3): pass")
    assert sig("def f(a, *, b): pass") != sig("def f(a, b): pass")
    assert sig("def f(a, b): pass") != sig("def f(b, a): pass")


def test_a_reply_may_rewrite_several_named_functions_in_several_files(tmp_path):
    (tmp_path / "pricing.py").write_text("def discount(p):\n    return p / 10\n")
    (tmp_path / "checkout.py").write_text("from pricing import discount\n\n\ndef pay(p):\n    return discount(p) + 0\n")
    request = FixRequest(
        root=tmp_path,
        python=sys.executable,
        path="checkout.py",
        qualname="pay",
        function_source="def pay(p):\n    return discount(p) + 0\n",
        function_start_line=4,
        function_end_line=5,
        signature="def pay(p):",
        test_nodeid="test_pay.py::test_pay",
        test_source="",
        failure_message="",
        suspects=[Subject("pricing.py", "discount", "def discount(p):\n    return p / 10\n", 1, 2)],
    )
    reply = (
        "Both are wrong.\n```python\n# pricing.py::discount\ndef discount(p):\n    return p / 100\n```\n"
        "```python\n# checkout.py::pay\ndef pay(p):\n    return discount(p)\n```\n"
    )
    candidate = parse_reply(reply, targets_for(request, wide=True))
    assert isinstance(candidate, Candidate)
    assert [(r.path, r.qualname) for r in candidate.rewrites] == [("checkout.py", "pay"), ("pricing.py", "discount")]
    assert candidate.texts["pricing.py"] == "def discount(p):\n    return p / 100\n"
    assert candidate.texts["checkout.py"].endswith("def pay(p):\n    return discount(p)\n")
    assert "+++ b/pricing.py" in candidate.diff and "+++ b/checkout.py" in candidate.diff
    # the cheap first round offers the primary function only: a rewrite of the other is no candidate
    only_pay = parse_reply(reply.split("```python\n# checkout.py")[0], targets_for(request, wide=False))
    assert isinstance(only_pay, Rejected) and "does not define pay" in only_pay.reason
