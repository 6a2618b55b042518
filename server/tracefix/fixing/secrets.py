"""Secrets kept out of what is sent to a model: replaced by placeholders, put back in replies."""

from __future__ import annotations

import re

DEFAULT_REDACT = [
    r"sk-[A-Za-z0-9_\-]{16,}",  # OpenAI and Anthropic style keys
    r"AKIA[0-9A-Z]{16}",  # AWS access key ids
    r"gh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    # the quoted value of an assignment to a secret-looking name: password = "..."
    r"""(?i)\b\w*(?:password|passwd|secret|api_?key|token)\w*["']?\s*[:=]\s*["'](?P<secret>[^"'\n]{4,})["']""",
]


class Redactor:
    """Replaces secrets in text sent to the model with placeholders and puts them back in replies.

    Putting them back keeps a candidate from replacing a real secret with a placeholder.
    """

    def __init__(self, patterns: list[str] = (), literals: tuple[str, ...] = ()) -> None:
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
        start, end = (i - match.start() for i in match.span("secret"))  # keep the code around it
        whole = match.group(0)
        return whole[:start] + self._placeholder(match.group("secret")) + whole[end:]

    def redact(self, text: str) -> str:
        for literal in self._literals:
            text = text.replace(literal, self._placeholder(literal))
        for pattern in self._patterns:
            text = pattern.sub(self._sub, text)
        return text

    def restore(self, text: str) -> str:
        # longest placeholder first, so REDACTED_1 never eats the head of REDACTED_12
        for placeholder in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(placeholder, self._secrets[placeholder])
        return text
