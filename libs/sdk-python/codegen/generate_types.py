#!/usr/bin/env python3
"""Generates `src/warden_sdk/_generated.py` from Warden's own OpenAPI document.

    node --no-node-snapshot services/connector/src/openapi-dump.ts \\
      | python3 libs/sdk-python/codegen/generate_types.py libs/sdk-python/src/warden_sdk/_generated.py

(`npm run sdk:generate:python`.) Standard library only, deterministic output.

Responses become frozen dataclasses on `WardenModel` (attribute access, unknown fields kept);
request bodies become TypedDicts; enum query parameters become `Literal` aliases. Names are
structural, from the method and path (`GET /api/v1/tools/scoped` -> `GetToolsScoped...`), so a
new route adds names without renaming others; `warden_sdk/types.py` gives the ones the client
uses their public names.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

Schema = Mapping[str, Any]
Side = Literal["model", "input"]

HEADER = '''\
# Generated from Warden's /openapi.json by libs/sdk-python/codegen/generate_types.py.
# Do not edit: run `npm run sdk:generate:python` and commit the result.
# pyright: reportUnusedImport=false
"""Wire types of Warden's HTTP API (generated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict, Union

from ._model import WardenModel, WardenPage
'''

METHODS = ("get", "put", "post", "delete", "patch")
# Path segments that say nothing about the resource: the version prefix of every route.
SKIPPED_SEGMENTS = frozenset({"api", "v1"})


def pascal(text: str) -> str:
    """`connected_accounts` -> `ConnectedAccounts`, `mcpServers` -> `McpServers`."""
    words = re.split(r"[^A-Za-z0-9]+", text)
    return "".join(w[:1].upper() + w[1:] for w in words if w)


def operation_name(method: str, path: str) -> str:
    parts = [method.capitalize()]
    for segment in path.strip("/").split("/"):
        if not segment or segment in SKIPPED_SEGMENTS:
            continue
        param = re.fullmatch(r"\{(.+)\}", segment)
        parts.append(f"By{pascal(param.group(1))}" if param else pascal(segment))
    return "".join(parts)


def attribute_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    if not name or name[0].isdigit():
        name = f"f_{name}"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name.startswith("_"):
        name = f"{name}_" if not name.startswith("_") else f"f{name}"
    return name


def literal(values: Sequence[Any]) -> str:
    return f"Literal[{', '.join(json.dumps(v) for v in values)}]"


def docstring(text: str, indent: str) -> str:
    body = " ".join(text.split()).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body += " "
    return f'{indent}"""{body}"""\n'


def union(types: Sequence[str]) -> str:
    unique: list[str] = []
    for t in types:
        if t not in unique:
            unique.append(t)
    if "Any" in unique:
        return "Any"
    return " | ".join(unique)


class Generator:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.components: Mapping[str, Schema] = document.get("components", {}).get("schemas", {})
        # name -> code, in emission order; every name is defined once.
        self.blocks: dict[str, str] = {}

    # ---- shared -------------------------------------------------------------------------

    def resolve(self, schema: Schema) -> tuple[str | None, Schema]:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            prefix = "#/components/schemas/"
            if not ref.startswith(prefix):
                raise ValueError(f"unsupported $ref {ref}")
            name = ref[len(prefix) :]
            return name, self.components[name]
        return None, schema

    def define(self, name: str, code: str) -> None:
        existing = self.blocks.get(name)
        if existing is not None and existing != code:
            raise ValueError(f"two different types would be named {name}")
        self.blocks[name] = code

    @staticmethod
    def types_of(schema: Schema) -> list[str]:
        t = schema.get("type")
        if isinstance(t, list):
            return [str(x) for x in cast(list[Any], t)]
        return [t] if isinstance(t, str) else []

    @staticmethod
    def alternatives(schema: Schema) -> list[Schema] | None:
        for key in ("oneOf", "anyOf"):
            value = schema.get(key)
            if isinstance(value, list):
                return cast(list[Schema], value)
        return None

    def variant_name(self, context: str, schema: Schema, index: int, count: int) -> str:
        if count == 1:
            return context
        _, target = self.resolve(schema)
        properties: Mapping[str, Schema] = target.get("properties", {})
        for prop in properties.values():
            if isinstance(prop.get("const"), str):
                return f"{context}{pascal(prop['const'])}"
        return f"{context}Variant{index + 1}"

    def scalar(self, schema: Schema, kind: str, annotate: Callable[[str], str]) -> str:
        """The annotation of one JSON type (`annotate` maps nested objects and arrays)."""
        if "const" in schema:
            return literal([schema["const"]])
        if "enum" in schema:
            return literal(cast(list[Any], schema["enum"]))
        return {
            "string": "str",
            "integer": "int",
            "number": "float",
            "boolean": "bool",
            "null": "None",
        }.get(kind) or annotate(kind)

    # ---- annotations ------------------------------------------------------------------

    def annotation(self, schema: Schema, context: str, side: Side) -> str:
        """The Python annotation of a schema; objects with properties become classes named
        `context` (dataclass models on the response side, TypedDicts on the request side)."""
        name, target = self.resolve(schema)
        if name is not None:
            # Request-side copies are distinct from the response model of the same component
            # (fastify-swagger already names most of them `...Input`).
            context = name if side == "model" or name.endswith("Input") else f"{name}Input"
        alternatives = self.alternatives(target)
        if alternatives is not None:
            non_null = [a for a in alternatives if self.types_of(a) != ["null"]]
            types = [
                self.annotation(a, self.variant_name(context, a, i, len(non_null)), side)
                for i, a in enumerate(non_null)
            ]
            if len(types) > 1 and name is not None:
                self.define(context, f"{context}: TypeAlias = Union[{', '.join(json.dumps(t) for t in types)}]\n")
                types = [context]
            if len(non_null) < len(alternatives):
                types.append("None")
            return union(types)
        kinds = self.types_of(target) or (["object"] if "properties" in target else [""])

        def nested(kind: str) -> str:
            if kind == "array":
                items = target.get("items")
                if not isinstance(items, Mapping):
                    return "list[Any]"
                return f"list[{self.annotation(cast(Schema, items), f'{context}Item', side)}]"
            if kind == "object":
                if target.get("properties"):
                    (self.model_class if side == "model" else self.typed_dict)(context, target)
                    return context
                extra = target.get("additionalProperties")
                if not isinstance(extra, Mapping) or not extra:
                    return "dict[str, Any]"
                return f"dict[str, {self.annotation(cast(Schema, extra), f'{context}Value', side)}]"
            return "Any"

        return union([self.scalar(target, kind, nested) for kind in kinds])

    # ---- response models ----------------------------------------------------------------

    def page_items(self, properties: Mapping[str, Schema]) -> str | None:
        """A listing is one array beside `next_page_token`: the array's key, or None."""
        if len(properties) != 2 or "next_page_token" not in properties:
            return None
        (key,) = [k for k in properties if k != "next_page_token"]
        return key if self.types_of(properties[key]) == ["array"] else None

    def model_class(self, name: str, schema: Schema) -> None:
        if name in self.blocks:
            return
        self.blocks[name] = ""  # reserved: recursion stops here
        properties: Mapping[str, Schema] = schema.get("properties", {})
        required = set(cast(list[str], schema.get("required", [])))
        lines: list[str] = []
        item_type = None
        page_field = self.page_items(properties)
        for key, prop in properties.items():
            annotation = self.annotation(prop, f"{name}{pascal(key)}", "model")
            if page_field == key:
                item_type = annotation[len("list[") : -1]
            attr = attribute_name(key)
            metadata: dict[str, Any] = {}
            if attr != key:
                metadata["json"] = key
            optional = key not in required
            if optional and annotation != "Any" and "None" not in annotation.split(" | "):
                annotation = f"{annotation} | None"
            if metadata:
                default = "default=None, " if optional else ""
                lines.append(f"    {attr}: {annotation} = field({default}metadata={metadata!r})\n")
            else:
                lines.append(f"    {attr}: {annotation}{' = None' if optional else ''}\n")
            if isinstance(prop.get("description"), str):
                lines.append(docstring(prop["description"], "    "))
        if page_field is not None:
            base = f'WardenPage["{item_type}"], items_field={json.dumps(page_field)}'
        else:
            base = "WardenModel"
        body = docstring(schema["description"], "    ") if isinstance(schema.get("description"), str) else ""
        body += "".join(lines) if lines or body else "    pass\n"
        code = f"@dataclass(frozen=True, kw_only=True, repr=False)\nclass {name}({base}):\n{body}"
        del self.blocks[name]
        self.define(name, code)

    # ---- request bodies -----------------------------------------------------------------

    def typed_dict(self, name: str, schema: Schema) -> None:
        if name in self.blocks:
            return
        self.blocks[name] = ""
        properties: Mapping[str, Schema] = schema.get("properties", {})
        required = set(cast(list[str], schema.get("required", [])))
        entries = [
            (key, self.annotation(prop, f"{name}{pascal(key)}", "input"), key in required)
            for key, prop in properties.items()
        ]
        del self.blocks[name]
        self.define(name, self.typed_dict_code(name, entries, schema.get("description")))

    @staticmethod
    def typed_dict_code(name: str, entries: list[tuple[str, str, bool]], description: Any) -> str:
        """A TypedDict with required and optional keys on Python 3.10 (no NotRequired): the
        required keys in a base, the optional ones in a `total=False` subclass. Keys that are not
        identifiers (`from`) need the functional form."""

        def part(part_name: str, items: list[tuple[str, str, bool]], total: bool, bases: str) -> str:
            if all(k.isidentifier() and not keyword.iskeyword(k) for k, _, _ in items):
                code = f"class {part_name}({bases}{'' if total else ', total=False'}):\n"
                if isinstance(description, str) and part_name == name:
                    code += docstring(description, "    ")
                code += "".join(f"    {k}: {t}\n" for k, t, _ in items) or "    pass\n"
                return code
            fields = ", ".join(f"{json.dumps(k)}: {json.dumps(t)}" for k, t, _ in items)
            return f'{part_name} = TypedDict("{part_name}", {{{fields}}}{"" if total else ", total=False"})\n'

        required = [e for e in entries if e[2]]
        optional = [e for e in entries if not e[2]]
        if not optional:
            return part(name, required, True, "TypedDict")
        if not required:
            return part(name, optional, False, "TypedDict")
        base = part(f"_{name}Required", required, True, "TypedDict")
        rest = part(f"_{name}Optional", optional, False, "TypedDict")
        return f"{base}\n\n{rest}\n\nclass {name}(_{name}Required, _{name}Optional):\n    pass\n"

    # ---- query parameters -----------------------------------------------------------------

    def query_literals(self, op_name: str, parameters: list[Schema]) -> None:
        for parameter in parameters:
            schema = parameter.get("schema", {})
            if parameter.get("in") == "query" and isinstance(schema, Mapping) and "enum" in schema:
                alias = f"{op_name}Query{pascal(str(parameter['name']))}"
                self.define(alias, f"{alias}: TypeAlias = {literal(cast(list[Any], schema['enum']))}\n")

    # ---- document -----------------------------------------------------------------------

    def generate(self) -> str:
        operations: list[tuple[str, str, Schema]] = []
        for path in sorted(self.document.get("paths", {})):
            item = self.document["paths"][path]
            for method in METHODS:
                if isinstance(item.get(method), Mapping):
                    operations.append((method, path, item[method]))
        for method, path, operation in operations:
            name = operation_name(method, path)
            summary = operation.get("summary")
            what = f"`{method.upper()} {path}`" + (f": {summary}" if isinstance(summary, str) else "")
            responses: Mapping[str, Any] = operation.get("responses", {})
            for status in sorted(s for s in responses if re.fullmatch(r"2\d\d", s)):
                schema = responses[status].get("content", {}).get("application/json", {}).get("schema")
                if isinstance(schema, Mapping):
                    self.response(f"{name}Response", cast(Schema, schema), what)
                    break
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if isinstance(body, Mapping):
                annotation = self.annotation(cast(Schema, body), f"{name}Body", "input")
                if annotation != f"{name}Body":
                    self.define(f"{name}Body", f"{name}Body: TypeAlias = {json.dumps(annotation)}\n")
            self.query_literals(name, cast(list[Schema], operation.get("parameters", [])))
        return HEADER + "".join(f"\n\n{code}" for code in self.blocks.values())

    def response(self, name: str, schema: Schema, what: str) -> None:
        ref, target = self.resolve(schema)
        if ref is not None or "properties" not in target:
            annotation = self.annotation(schema, name, "model")
            self.define(name, f"{name}: TypeAlias = {json.dumps(annotation)}\n")
            return
        described = dict(target)
        description = target.get("description")
        described["description"] = f"{what}." + (f" {description}" if isinstance(description, str) else "")
        self.model_class(name, described)


def generate(document: Mapping[str, Any]) -> str:
    """The source of `_generated.py` for an OpenAPI document."""
    return Generator(document).generate()


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        print("usage: generate_types.py [OUTPUT] < openapi.json", file=sys.stderr)
        return 2
    source = generate(json.load(sys.stdin))
    if len(argv) == 2:
        Path(argv[1]).write_text(source, encoding="utf-8")
    else:
        sys.stdout.write(source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
