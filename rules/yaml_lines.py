"""YAML loading that remembers the line of every key, so errors can point at `file:line`.

PyYAML's YAML 1.1 resolver turns `on:`/`yes`/`no` into booleans; policies use `on:` as a key,
so only `true`/`false` are booleans here. Duplicate keys are an error instead of a silent
overwrite, because an ops edit that repeats a key would otherwise lose half a rule.

Aliases (`&name` ... `*name`, and `<<: *name` merges) are refused at their line: each one may
stand for a whole tree, so a few hundred bytes of nested aliases expand to millions of nodes
(`a: &a [*a]` to no end), and these files come in over the API from keys that are not the
machine's operators. A policy, a roster or a content file says each thing where it means it.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[Any, ...]


# libyaml's parser where PyYAML was built with it: ten times faster on a policy of thousands of
# rules, with the same nodes, marks and errors.
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# YAML 1.1 reads `1e6` as a text (a float needs a point there); a policy means a number, as in
# YAML 1.2 and JSON. Integers still resolve first.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789.")
)


class YamlError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass
class LoadedYaml:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    # for each text value: the line its text starts on (a block scalar's `|` line is not text)
    text_lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """Line of the deepest known prefix of `path` (1-based)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


def load_yaml(raw: bytes) -> LoadedYaml:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise YamlError(line, f"file is not UTF-8 (byte 0x{raw[err.start]:02x})") from None
    if not text.strip():
        raise YamlError(1, "file is empty")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlError(1, "file holds no YAML document")
        lines: dict[Path, int] = {}
        text_lines: dict[Path, int] = {}
        _no_aliases(node)
        data = _build(loader, node, (), lines, text_lines)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlError(line, f"broken YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise YamlError(1, f"broken YAML: {err}") from None
    finally:
        loader.dispose()
    return LoadedYaml(data, lines, text_lines)


def _no_aliases(root: yaml.Node) -> None:
    """Refuse a document whose node graph reaches one node twice: that is what an alias (or a
    merge of one) composes to. Walked without recursion, so a cycle is found, not followed; the
    line said is where the second use stands (its key's line, or its item's)."""
    seen: set[int] = set()
    todo: deque[tuple[yaml.Node, int]] = deque([(root, root.start_mark.line)])
    while todo:  # breadth first, in document order: the first use is not the one refused
        node, line = todo.popleft()
        if id(node) in seen:
            raise YamlError(line + 1, "aliases (&name, *name, <<: *name) are not allowed here: "
                                      "write the value out where it is meant")
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                todo += ((key, key.start_mark.line), (value, key.start_mark.line))
        elif isinstance(node, yaml.SequenceNode):
            todo += ((item, node.start_mark.line) for item in node.value)


def _build(loader: _Loader, node: yaml.Node, path: Path, lines: dict[Path, int],
           text_lines: dict[Path, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        text_lines[path] = node.start_mark.line + (2 if node.style in ("|", ">") else 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                raise YamlError(key_node.start_mark.line + 1, "a key must be a plain value")
            if key in out:
                raise YamlError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            out[key] = _build(loader, value_node, (*path, key), lines, text_lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), lines, text_lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
