"""Bounds on the JSON schemas a caller hands the guided decoder (``response_format``, tools).

ONNX Runtime GenAI 0.15.2's guided decoding builds its grammar eagerly and natively: an
array schema with ``minItems: 1000000000`` (or ``maxItems: 10000000``) expands to ~140
bytes per item before any deadline check runs, and the process dies (SIGABRT or the
kernel's OOM killer) without an ``except`` running. So every schema is measured here,
before it reaches the decoder, and refused with a ``BadInput`` naming the keyword and
where it sits when it exceeds a bound:

- the schema's serialized size and its nesting depth,
- array bounds (``minItems``/``maxItems``/``prefixItems``), string bounds
  (``minLength``/``maxLength``), counted repetitions inside ``pattern``, object sizes
  (``properties``, ``minProperties``/``maxProperties``), ``enum`` sizes,
- an estimate of the grammar's expansion: each node costs one unit times the product of
  the array bounds above it (plus its string bound), so nested arrays multiply.

The limits are generous for real structured output (OpenAI's own strict mode allows 5,000
properties in all and 10 levels of nesting) and far below what hurts a 3 GB function.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hflambda.errors import BadInput

__all__ = ["SchemaLimits", "check_schema_bounds"]

# schema keywords whose value is one subschema / a list of them / a name → subschema map
_ONE = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "additionalItems",
)
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
# what x-guidance may carry from a caller (the rest tunes the native parser itself)
GUIDANCE_KEYS = frozenset({"whitespace_flexible"})


@dataclass(frozen=True, slots=True)
class SchemaLimits:
    """The bounds a schema must stay within (defaults sized for a 3 GB predict function)."""

    max_bytes: int = 65_536
    max_depth: int = 12
    max_items: int = 1_000
    max_length: int = 8_192
    max_pattern: int = 1_000
    max_repeat: int = 1_000
    max_properties: int = 256
    max_enum: int = 1_000
    max_expansion: int = 100_000


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _Walker:
    def __init__(self, root: dict[str, Any], where: str, limits: SchemaLimits) -> None:
        self.root = root
        self.where = where
        self.limits = limits
        self.units = 0

    def refuse(self, keyword: str, path: str, message: str) -> BadInput:
        at = f"{self.where}{path}" if path else self.where
        return BadInput(f"{at}: {keyword} {message}", field=self.where, keyword=keyword, path=path or "/")

    def _bound(self, node: dict[str, Any], keyword: str, path: str, limit: int) -> int:
        value = node.get(keyword)
        if value is None:
            return 0
        number = _int(value)
        if number is None or number < 0:
            raise self.refuse(keyword, path, f"must be a non-negative integer, got {value!r}")
        if number > limit:
            raise self.refuse(
                keyword, path, f"is {number}; the limit is {limit} (the guided decoder expands it eagerly)"
            )
        return number

    def _children(self, node: dict[str, Any], path: str) -> Iterator[tuple[str, Any]]:
        for key in _ONE:
            if isinstance(node.get(key), dict):
                yield f"{path}/{key}", node[key]
        for key in _MANY:
            value = node.get(key)
            if isinstance(value, list):
                if len(value) > self.limits.max_properties:
                    raise self.refuse(
                        key, path, f"has {len(value)} schemas; the limit is {self.limits.max_properties}"
                    )
                for i, item in enumerate(value):
                    yield f"{path}/{key}/{i}", item
        for key in _MAP:
            value = node.get(key)
            if isinstance(value, dict):
                if len(value) > self.limits.max_properties:
                    raise self.refuse(
                        key, path, f"has {len(value)} entries; the limit is {self.limits.max_properties}"
                    )
                for name, item in value.items():
                    yield f"{path}/{key}/{name}", item

    def _pattern(self, node: dict[str, Any], path: str) -> None:
        pattern = node.get("pattern")
        if not isinstance(pattern, str):
            return
        if len(pattern) > self.limits.max_pattern:
            raise self.refuse(
                "pattern", path, f"is {len(pattern)} characters; the limit is {self.limits.max_pattern}"
            )
        for match in _REPEAT.finditer(pattern):
            counts = [int(g) for g in match.groups() if g]
            if counts and max(counts) > self.limits.max_repeat:
                raise self.refuse(
                    "pattern",
                    path,
                    f"repeats {max(counts)} times ({match.group(0)}); the limit is {self.limits.max_repeat}",
                )

    def _ref(self, node: dict[str, Any], path: str) -> Any:
        ref = node.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        target: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise self.refuse("$ref", path, f"{ref!r} does not resolve inside the schema")
            target = target[part]
        return target

    def walk(self, node: Any, path: str, depth: int, multiplier: int, refs: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return  # true/false schemas
        if depth > self.limits.max_depth:
            raise self.refuse("nesting", path, f"is deeper than {self.limits.max_depth} levels")
        minimum = self._bound(node, "minItems", path, self.limits.max_items)
        maximum = self._bound(node, "maxItems", path, self.limits.max_items)
        length = max(
            self._bound(node, "minLength", path, self.limits.max_length),
            self._bound(node, "maxLength", path, self.limits.max_length),
        )
        self._bound(node, "minProperties", path, self.limits.max_properties)
        self._bound(node, "maxProperties", path, self.limits.max_properties)
        self._pattern(node, path)
        for keyword in ("enum", "required"):
            values = node.get(keyword)
            if isinstance(values, list) and len(values) > self.limits.max_enum:
                raise self.refuse(
                    keyword, path, f"has {len(values)} values; the limit is {self.limits.max_enum}"
                )
        self.units += multiplier * (1 + length // 16)
        inner = multiplier * max(1, maximum or minimum)
        if (maximum or minimum) and not isinstance(node.get("items"), dict):
            self.units += inner  # items of any shape still expand once per bounded item
        if self.units > self.limits.max_expansion:
            raise self.refuse(
                "expansion",
                path,
                f"the schema's grammar would expand to over {self.limits.max_expansion} units (nested array and string bounds multiply); lower minItems/maxItems/maxLength",
            )
        target = self._ref(node, path)
        if target is not None and node["$ref"] not in refs:  # a recursive $ref is walked once
            self.walk(target, f"{path}/$ref", depth + 1, multiplier, (*refs, node["$ref"]))
        for child_path, child in self._children(node, path):
            grows = child_path.endswith(("/items", "/additionalItems", "/unevaluatedItems"))
            self.walk(child, child_path, depth + 1, inner if grows else multiplier, refs)


def check_schema_bounds(schema: dict[str, Any], *, where: str, limits: SchemaLimits | None = None) -> None:
    """Refuse (``BadInput`` naming the keyword and its place) a schema the decoder cannot afford."""
    limits = limits or SchemaLimits()
    size = len(json.dumps(schema, separators=(",", ":")))
    if size > limits.max_bytes:
        raise BadInput(
            f"{where}: the schema is {size} bytes; the limit is {limits.max_bytes}",
            field=where,
            keyword="size",
        )
    guidance = schema.get("x-guidance")
    if guidance is not None and (
        not isinstance(guidance, dict)
        or set(guidance) - GUIDANCE_KEYS
        or not all(isinstance(v, bool) for v in guidance.values())
    ):
        raise BadInput(
            f"{where}: x-guidance may only set whitespace_flexible (true or false)",
            field=where,
            keyword="x-guidance",
        )
    _Walker(schema, where, limits).walk(schema, "", 0, 1, ())
