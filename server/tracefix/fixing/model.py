"""Model settings and a small client over any OpenAI-compatible chat endpoint.

Every fault of the endpoint becomes a ModelError whose message tells the user what happened
and what to change; callers never see a half-read reply.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import urlparse

import openai
from openai.types.chat import ChatCompletionMessageParam

from tracefix.settings import LLMSettings

log = logging.getLogger(__name__)

DOCS = "docs/models.md"
MAX_TEMPERATURE = 1.2
MAX_REPLY_BYTES = 8 << 20  # a chat completion of a few functions is kilobytes; an endless body is an attack


class ReplyTooLarge(Exception):
    pass


@functools.cache
def _capped(base: type) -> type:
    """A subclass of the HTTP library's AsyncByteStream (httpx's, or httpx2's under openai 3) whose
    body ends in ReplyTooLarge past MAX_REPLY_BYTES, before they are held in memory."""

    class Capped(base):
        def __init__(self, stream: Any):
            self.stream = stream

        async def __aiter__(self) -> AsyncIterator[bytes]:
            size = 0
            async for chunk in self.stream:
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise ReplyTooLarge(f"more than {MAX_REPLY_BYTES} bytes")
                yield chunk

        async def aclose(self) -> None:
            await self.stream.aclose()

    return Capped


async def _cap(response: Any) -> None:
    """The HTTP client's response hook: it runs before the body is read."""
    library = sys.modules[type(response).__module__.partition(".")[0]]
    response.stream = _capped(library.AsyncByteStream)(response.stream)


class ModelError(Exception):
    """The model could not give a usable reply; the message is meant for the user."""


def not_configured_message() -> str:
    return (
        "No model is configured for fixes. Set tracefix.llm.model to a model name, and "
        "tracefix.llm.baseUrl (or the OPENAI_BASE_URL environment variable) to an "
        "OpenAI-compatible endpoint such as http://127.0.0.1:11434/v1 for Ollama; the API key is "
        "read from the environment variable named by tracefix.llm.apiKeyEnv (default "
        f"OPENAI_API_KEY), local servers need none. Examples for OpenAI, Azure OpenAI, Ollama, "
        f"vLLM, llama.cpp and LM Studio: {DOCS}"
    )


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def temperatures(base: float, n: int) -> list[float]:
    """n diverse temperatures from `base` up in steps of 0.4, capped: diversity finds more fixes."""
    cap = max(base, MAX_TEMPERATURE)
    return [round(min(base + 0.4 * i, cap), 2) for i in range(n)]


@dataclass
class Completion:
    text: str
    temperature: float
    tokens_in: int = 0
    tokens_out: int = 0
    index: int = 0  # which of the prompts given to complete_each it answers


class ModelClient:
    """One chat request per candidate: llama.cpp and others ignore n > 1."""

    def __init__(
        self,
        settings: LLMSettings,
        *,
        env: Mapping[str, str] | None = None,
        retries: int = 3,
        backoff: float = 1.0,
        max_wait: float = 30.0,
    ) -> None:
        env = os.environ if env is None else env
        if not settings.model:
            raise ModelError(not_configured_message())
        self.settings = settings
        self.model = settings.model
        self.base_url = settings.endpoint(env)
        if not settings.allow_remote and not is_loopback(self.base_url):
            raise ModelError(
                f"tracefix.llm.allowRemote is false, and the model endpoint {self.base_url} is not on "
                "this machine, so no code is sent to it. Point tracefix.llm.baseUrl at a local server "
                f"(127.0.0.1, localhost or ::1) or set tracefix.llm.allowRemote to true; see {DOCS}"
            )
        self.key_set = bool(env.get(settings.api_key_env))
        self.api_key = env.get(settings.api_key_env) or "not-needed"  # local servers want any key
        self.retries, self.backoff, self.max_wait = retries, backoff, max_wait
        self.calls = 0  # HTTP requests made, retries included
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=settings.timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"response": [_cap]}),
        )

    @property
    def name(self) -> str:
        return f"model {self.settings.model} at {self.base_url}"

    async def complete(self, messages: list[dict], *, n: int, temperature: float) -> list[Completion]:
        """n completions of one prompt at diverse temperatures from `temperature` up."""
        return await self.complete_each([messages] * n, temperature=temperature)

    async def complete_each(self, prompts: list[list[dict]], *, temperature: float) -> list[Completion]:
        """One completion per prompt, at diverse temperatures from `temperature` up, concurrently.

        Requests that fail are dropped; ModelError (the first failure's) only if all fail.
        """
        results = await asyncio.gather(
            *(
                self._one(messages, t)
                for messages, t in zip(prompts, temperatures(temperature, len(prompts)), strict=True)
            ),
            return_exceptions=True,
        )
        for index, result in enumerate(results):
            if isinstance(result, Completion):
                result.index = index
        completions = [r for r in results if isinstance(r, Completion)]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ModelError):
                raise result
        if not completions:
            raise next(r for r in results if isinstance(r, ModelError))
        return completions

    async def _one(self, messages: list[dict], temperature: float) -> Completion:
        for attempt in itertools.count():
            self.calls += 1
            try:
                # the whole reply within the timeout: httpx's applies to each read, and a server that
                # sends a byte a second would never reach it
                response = await asyncio.wait_for(
                    self._client.chat.completions.create(
                        # our messages are plain {"role", "content"} dicts (fixing/prompt.py)
                        model=self.model,
                        messages=cast("list[ChatCompletionMessageParam]", messages),
                        temperature=temperature,
                    ),
                    self.settings.timeout,
                )
            except TimeoutError:
                raise self._timeout() from None
            except openai.APIStatusError as exc:
                wait = self._retry_wait(exc, attempt)
                if wait is None:
                    raise self._error(exc, attempt) from None
                log.info("%s answered %d; retrying in %.1f s", self.base_url, exc.status_code, wait)
                await asyncio.sleep(wait)
            except (openai.OpenAIError, ValueError, ReplyTooLarge) as exc:  # some versions wrap ReplyTooLarge
                raise self._error(exc, attempt) from None
            else:
                return self._completion(response, temperature)
        raise AssertionError("itertools.count() does not end")

    def _retry_wait(self, exc: openai.APIStatusError, attempt: int) -> float | None:
        """Seconds to wait before retrying a 429 or 5xx; None to give up."""
        if attempt >= self.retries or not (exc.status_code == 429 or exc.status_code >= 500):
            return None
        asked = _retry_after(exc.response)
        if asked > self.max_wait:
            return None
        return asked if asked >= 0 else self.backoff * 2**attempt

    def _error(self, exc: Exception, attempt: int) -> ModelError:
        """The user's words for a failed request."""
        tries = f" after {attempt + 1} tries" if attempt else ""
        if isinstance(exc, openai.APITimeoutError):
            return self._timeout()
        if isinstance(_root_cause(exc), ReplyTooLarge):
            return ModelError(
                f"The {self.name} sent a reply of more than {MAX_REPLY_BYTES >> 20} MB, so it was cut "
                "off and no edit is offered."
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(
                f"Cannot reach the {self.name} ({_cause(exc)}). Is the server running, and is "
                "tracefix.llm.baseUrl right?"
            )
        if isinstance(exc, openai.RateLimitError):
            asked = _retry_after(exc.response)
            wait = f" and asks to wait {asked:.0f} s" if asked > self.max_wait else ""
            return ModelError(
                f"The {self.name} is rate limiting requests (429){wait}{tries}; try again later. "
                f"{_detail(exc)}".rstrip()
            )
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            env = self.settings.api_key_env
            key = f"the key in ${env}" if self.key_set else f"no key: ${env} is not set"
            return ModelError(
                f"The {self.name} refused the request ({exc.status_code}: {key}). Set the environment "
                "variable named by tracefix.llm.apiKeyEnv to a valid key and restart the editor."
            )
        if isinstance(exc, openai.NotFoundError):
            return ModelError(
                f"The {self.name} answered 404: check tracefix.llm.model (for Azure, the deployment "
                f"name) and tracefix.llm.baseUrl (usually ends in /v1). {_detail(exc)}".rstrip()
            )
        if isinstance(exc, openai.APIStatusError):
            return ModelError(f"The {self.name} failed with HTTP {exc.status_code}{tries}. {_detail(exc)}".rstrip())
        return ModelError(f"The {self.name} sent a malformed reply ({type(exc).__name__}).")

    def _timeout(self) -> ModelError:
        return ModelError(
            f"The {self.name} did not answer within {self.settings.timeout:g} s; raise "
            "tracefix.llm.timeout for slow local models"
        )

    def _completion(self, response, temperature: float) -> Completion:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ModelError(f"The {self.name} sent a reply without choices; is it a chat model?")
        choice = choices[0]
        text = getattr(getattr(choice, "message", None), "content", None)
        if choice.finish_reason == "length":
            raise ModelError(
                f"The reply from the {self.name} was cut off at its token limit, so no edit is offered; "
                "raise the server's max tokens or context size"
            )
        if not isinstance(text, str) or not text.strip():
            raise ModelError(f"The {self.name} sent an empty reply.")
        usage = getattr(response, "usage", None)
        return Completion(
            text=text,
            temperature=temperature,
            tokens_in=getattr(usage, "prompt_tokens", 0) or 0,
            tokens_out=getattr(usage, "completion_tokens", 0) or 0,
        )

    async def close(self) -> None:
        await self._client.close()


def _retry_after(response) -> float:
    """Seconds the server asks us to wait (Retry-After, seconds or HTTP date), -1 if it doesn't say."""
    value = response.headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if value is None:
        return -1.0
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return -1.0


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    message = body.get("message") if isinstance(body, dict) else None
    return f"The server said: {str(message)[:300]}" if message else ""


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _cause(exc: BaseException) -> str:
    root = _root_cause(exc)
    return str(root) or type(root).__name__
