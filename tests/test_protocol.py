"""The protocol has one list of names, server/tracefix/protocol.py: docs/protocol.md documents
every command and method, and the extension's src/protocol.ts mirrors the names and payload
types (field by field, type by type)."""

from __future__ import annotations

import re
import types
import typing
from enum import StrEnum
from pathlib import Path

import pytest

from tracefix import protocol
from tracefix.running.results import Outcome, RunStatus, Verdict

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "protocol.md").read_text()
TS = (ROOT / "editors" / "vscode" / "src" / "protocol.ts").read_text()
PAYLOADS = {name: t for name, t in vars(protocol).items() if typing.is_typeddict(t)}
ENUMS: dict[str, type[StrEnum]] = {
    "Outcome": Outcome,
    "RunStatus": RunStatus,
    "Verdict": Verdict,
}  # TS may narrow a str to one


def ts_const(name: str) -> dict[str, str]:
    body = re.search(rf"export const {name} = \{{(.*?)\}} as const;", TS, re.S)
    assert body, f"protocol.ts has no `export const {name}`"
    return dict(re.findall(r'^\s*(\w+): "([^"]+)",', body.group(1), re.M))


def ts_interfaces() -> dict[str, dict[str, str]]:
    found = {}
    for name, body in re.findall(r"export interface (\w+) \{\n(.*?)\n\}", TS, re.S):
        fields = re.findall(r"^\s*(\w+\??): (.+?);$", body, re.M)
        found[name] = dict(fields)
    return found


def ts_aliases() -> dict[str, str]:
    return {name: " ".join(body.split()) for name, body in re.findall(r"export type (\w+) =(.+?);", TS, re.S)}


def members(ts_type: str, aliases: dict[str, str]) -> set[str]:
    """The members of a TS union, with type aliases expanded."""
    out: set[str] = set()
    for member in (m.strip() for m in ts_type.split("|")):
        out |= members(aliases[member], aliases) if member in aliases else {member}
    return out


def ts_of(annotation) -> str:
    """A Python annotation as the TS type that carries the same JSON."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(ts_of(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' for a in args)
    if origin is list:
        return f"{ts_of(args[0])}[]"
    if typing.is_typeddict(annotation):
        return annotation.__name__
    return {str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}[annotation]


def test_the_commands_table_lists_every_command():
    section = DOC[DOC.index("## Commands") :]
    section = section[: section.index("\n## ")]
    listed = re.findall(r"^\| `(tracefix\.\w+)` \|", section, re.M)
    assert sorted(listed) == sorted(c.value for c in protocol.Command)


def test_the_doc_names_every_method_and_no_other():
    named = set(re.findall(r"`(tracefix/\w+)`", DOC))
    assert named == {m.value for m in protocol.Method}


def test_the_extension_has_the_same_command_and_method_names():
    assert ts_const("Command") == {c.name: c.value for c in protocol.Command}
    assert ts_const("Method") == {m.name: m.value for m in protocol.Method}


def test_the_extension_has_every_payload_type_and_no_other():
    assert set(ts_interfaces()) == set(PAYLOADS)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_each_payload_type_has_the_same_fields_and_types(name):
    interface, aliases = ts_interfaces()[name], ts_aliases()
    hints = typing.get_type_hints(PAYLOADS[name])
    assert list(interface) == list(hints), "same fields, in the same order, none optional"
    for field, annotation in hints.items():
        expected, actual = members(ts_of(annotation), aliases), members(interface[field], aliases)
        if "string" in expected and "string" not in actual:  # narrowed to the values it takes
            actual = {m for m in actual if not m.startswith('"')} | {"string"}
        assert actual == expected, f"{name}.{field}: {interface[field]} for {annotation}"


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_a_narrowed_string_has_the_values_of_its_enum(name):
    assert members(name, ts_aliases()) == {f'"{value}"' for value in ENUMS[name]}
