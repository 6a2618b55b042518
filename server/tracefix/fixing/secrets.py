"""Secrets kept out of what is sent to a model: replaced by placeholders, put back in replies.

Two detectors, on every text sent: our patterns (below, and the user's `llm.redact`), then the
maintained detectors of detect-secrets (keys of known services, secret-looking assignments,
credentials in URLs, JWTs, private keys).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from typing import Any

_SECRET_NAME = (
    r"\w*(?:password|passwd|passphrase|pwd|secret|api_?key|private_?key|secret_?key|access_?key|auth_?key"
    r"|token|credentials?)\w*"
)
_QUOTED = r"""["'](?P<secret>[^"'\n]{4,})["']"""
DEFAULT_REDACT = [
    r"sk-[A-Za-z0-9_\-]{16,}",  # OpenAI and Anthropic style keys
    r"AKIA[0-9A-Z]{16}",  # AWS access key ids
    r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",  # a JWT, signature included
    r"(?i)\bBearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",  # an Authorization header's token
    r"(?i)\b[a-z][a-z0-9+.\-]*://[^:/?#@\s\"']+:(?P<secret>[^@/?#\s\"']{3,})@",  # a URL's password
    # the quoted value given to a secret-looking name: `password = "…"`, `db_password: str = "…"`,
    # `os.environ["DB_PASSWORD"] = "…"`, `{"api_key": "…"}`, `token="…"`
    rf"""(?i)\b{_SECRET_NAME}["']?\]?(?:\s*:\s*[\w\[\]., |]+?)?\s*(?:=|:)\s*{_QUOTED}""",
]
# a credential-looking name given a tuple or list of strings, `auth=("user", "…")`: every string in it
_SEQUENCE = re.compile(
    r"""(?i)\b(?:\w*(?:password|passwd|secret|credential)\w*|auth)["']?\]?\s*[:=]\s*[(\[](?P<items>[^()\[\]\n]*)[)\]]"""
)
_STRING = re.compile(r"""(["'])(?P<secret>[^"'\n]{4,})\1""")
PLACEHOLDER = re.compile(r"REDACTED_\d+")

# detect-secrets' detectors, except the entropy ones and public IPs: they flag hashes, ids and
# addresses in tests, which a fix often needs to see as they are
SKIPPED_DETECTORS = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"})
_detect_lock = threading.Lock()  # detect-secrets keeps its settings in module state


@functools.cache
def _detectors() -> list[Any]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    plugins: list[type] = list(get_mapping_from_secret_type_to_class().values())
    return [plugin() for plugin in plugins if plugin.__name__ not in SKIPPED_DETECTORS]


@functools.lru_cache(maxsize=8192)  # the candidates of a round share most lines of their prompts
def detected(line: str) -> frozenset[str]:
    """The secrets detect-secrets finds in one line of code (read as Python)."""
    with _detect_lock:
        return frozenset(
            found.secret_value
            for plugin in _detectors()
            for found in plugin.analyze_line(filename="snippet.py", line=line, line_number=1)
            if found.secret_value
        )


class Redactor:
    """Replaces secrets in text sent to the model with placeholders and puts them back in replies.

    Putting them back keeps a candidate from replacing a real secret with a placeholder.
    """

    def __init__(self, patterns: Sequence[str] = (), literals: tuple[str, ...] = ()) -> None:
        """`patterns`: the user's, on top of DEFAULT_REDACT; `literals`: exact secrets (the API key)."""
        self._patterns = [re.compile(p) for p in [*DEFAULT_REDACT, *patterns]]
        self._literals = [s for s in literals if len(s) >= 4]
        self._secrets: dict[str, str] = {}  # placeholder -> secret

    def _placeholder(self, secret: str) -> str:
        for placeholder, known in self._secrets.items():
            if known == secret:
                return placeholder
        placeholder = f"REDACTED_{len(self._secrets) + 1}"
        self._secrets[placeholder] = secret
        return placeholder

    def _sub(self, match: re.Match) -> str:
        if "secret" not in match.re.groupindex or match.group("secret") is None:
            return self._placeholder(match.group(0))
        if PLACEHOLDER.fullmatch(match.group("secret")):
            return match.group(0)
        start, end = (i - match.start() for i in match.span("secret"))  # keep the code around it
        whole = match.group(0)
        return whole[:start] + self._placeholder(match.group("secret")) + whole[end:]

    def _sub_items(self, match: re.Match) -> str:
        start, end = (i - match.start() for i in match.span("items"))
        whole = match.group(0)
        return whole[:start] + _STRING.sub(self._sub, match.group("items")) + whole[end:]

    def redact(self, text: str) -> str:
        for literal in self._literals:
            text = text.replace(literal, self._placeholder(literal))
        for pattern in self._patterns:
            text = pattern.sub(self._sub, text)
        text = _SEQUENCE.sub(self._sub_items, text)
        return "".join(self._redact_detected(line) for line in text.splitlines(keepends=True))

    def _redact_detected(self, line: str) -> str:
        for secret in sorted(detected(line), key=len, reverse=True):
            if len(secret) >= 4 and not PLACEHOLDER.search(secret):
                line = line.replace(secret, self._placeholder(secret))
        return line

    def restore(self, text: str) -> str:
        # longest placeholder first, so REDACTED_1 never eats the head of REDACTED_12
        for placeholder in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(placeholder, self._secrets[placeholder])
        return text
