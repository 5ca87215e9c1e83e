"""The closed ``$``-path language of response mapping (MANIFEST §2.3).

Supported: ``$``, ``.name``, ``['name']``, ``[n]`` (negative counts from the
end), ``[*]``, ``..name``, and ``$headers.Name`` for a response header. Nothing
else is accepted — no filters, no scripts — so a manifest can never make the
host evaluate code.

A path is read once, when the manifest loads, by jsonpath-ng: its lexer splits
the text into tokens and its parser builds a tree, which :func:`_walk` turns
into a tuple of steps, refusing every node outside the subset (``where``,
unions, slices, several names or indexes in one bracket, ```this```). The tree
records neither where a node was written nor how it was spelt — ``$.*`` and
``$[*]``, ``$.a``, ``$. a`` and ``$.'a'`` all give the same tree — so the
tokens, which carry positions, are checked as well (:func:`_spell`): they must
be the subset's own spellings laid end to end, and the first that is not names
its character in the error. A member name after a dot keeps the host's rule
(letters, digits, ``_`` and ``-``), which jsonpath-ng's lexer reads differently
(``0a`` as a number and a name, ``where`` as a keyword, ``-x`` not at all), so
the tokens of such a name are joined into one before parsing.

Evaluating is a short loop over the steps and never calls jsonpath-ng, whose
``find`` builds a context object for every match and is 20 to 30 times slower
(host/engine/README.md has the figures).

A path with ``[*]`` or ``..`` yields a list (empty when nothing matches); any
other path yields one value, or :data:`MISSING` when the document has no such
member.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from jsonpath_ng import jsonpath as tree
from jsonpath_ng.exceptions import JsonPathLexerError
from jsonpath_ng.lexer import JsonPathLexer
from jsonpath_ng.parser import JsonPathParser

__all__ = ["MISSING", "JsonPath", "PathSyntaxError", "compile_path"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

SUPPORTED = "supported: $, .name, ['name'], [n], [*], ..name and $headers.Name"


class PathSyntaxError(ValueError):
    """Raised at manifest load for a path outside the closed subset."""


# A step is (kind, argument): ("key", str), ("index", int), ("all", None), ("deep", str).
Step = tuple[str, Any]

_HEADER = re.compile(r"\$headers\.([!#$%&'*+.^_`|~0-9A-Za-z-]+)")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_QUOTES = "'\""


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled path; ``source`` is the text the manifest gave."""

    source: str
    steps: tuple[Step, ...]
    header: str | None = None
    multi: bool = False
    key: str | None = None  # ``$.name``: one key, read without the general walk

    def evaluate(self, body: Any, headers: Mapping[str, str] | None = None) -> Any:
        """The value at this path in ``body`` (or in ``headers`` for ``$headers.X``)."""
        key = self.key
        if key is not None:  # the commonest path by far (ids, fields of records)
            return body.get(key, MISSING) if isinstance(body, dict) else MISSING
        if self.header is not None:
            if headers is None:
                return MISSING
            for name, value in headers.items():
                if name.lower() == self.header:
                    return value
            return MISSING
        if not self.multi:
            node = body
            for kind, arg in self.steps:
                if kind == "key":
                    if not isinstance(node, dict):
                        return MISSING
                    node = node.get(arg, MISSING)
                    if node is MISSING:
                        return MISSING
                elif isinstance(node, list) and -len(node) <= arg < len(node):
                    node = node[arg]
                else:
                    return MISSING
            return node
        nodes = [body]
        for kind, arg in self.steps:
            nodes = [found for node in nodes for found in _step_all(node, kind, arg)]
        return nodes


def _step_all(node: Any, kind: str, arg: Any) -> list[Any]:
    if kind == "all":
        if isinstance(node, list):
            return list(node)
        if isinstance(node, dict):
            return list(node.values())
        return []
    if kind == "deep":
        found: list[Any] = []
        _descend(node, arg, found)
        return found
    if kind == "key":
        return [node[arg]] if isinstance(node, dict) and arg in node else []
    if isinstance(node, list) and -len(node) <= arg < len(node):
        return [node[arg]]
    return []


def _descend(node: Any, name: str, found: list[Any]) -> None:
    if isinstance(node, dict):
        if name in node:
            found.append(node[name])
        for value in node.values():
            _descend(value, name, found)
    elif isinstance(node, list):
        for value in node:
            _descend(value, name, found)


def compile_path(source: str) -> JsonPath:
    """Parse ``source`` into a :class:`JsonPath`, or raise :class:`PathSyntaxError`."""
    if not isinstance(source, str) or not source.startswith("$"):
        raise PathSyntaxError(f"path {source!r} must start with '$' ({SUPPORTED})")
    return _compile(source)


@lru_cache(maxsize=4096)
def _compile(source: str) -> JsonPath:
    """Cached: the lint and the loader compile the same paths, jsonpath-ng takes
    a few hundred microseconds for each, and the result is immutable."""
    if source.startswith("$headers"):
        header = _HEADER.fullmatch(source)
        if not header:
            raise PathSyntaxError(
                f"path {source!r}: a header path is $headers.Name with a plain header name"
            )
        return JsonPath(source, (), header=header.group(1).lower())
    tokens, starts = _spell(source, _lex(source))
    parsed = JsonPathParser().parse_token_stream(iter(tokens))
    try:
        steps = _walk(parsed)
    except _Outside as outside:
        position = starts[outside.index] if outside.index < len(starts) else 0
        raise _syntax(source, position, "unexpected text") from None
    multi = any(kind in ("all", "deep") for kind, _ in steps)
    single = steps[0][1] if len(steps) == 1 and steps[0][0] == "key" else None
    return JsonPath(source, tuple(steps), multi=multi, key=single)


@dataclass(frozen=True, slots=True)
class _Token:
    """One token of jsonpath-ng's lexer and the characters it covers."""

    kind: str  # the lexer's token type: "$", ".", "DOUBLEDOT", "[", "ID", "NUMBER", …
    start: int
    end: int
    quoted: bool
    lexed: Any  # the lexer's own token, handed on to the parser


def _lex(source: str) -> list[_Token]:
    """jsonpath-ng's tokens of ``source``, laid end to end.

    The lexer skips blanks and line breaks, which the subset never allows, and
    stops at a character it does not know. The list ends at either with an
    ``error`` token, except at a ``-``, which a member name may hold: the lexer
    starts again after it.
    """
    found: list[_Token] = []
    position = 0
    while position < len(source):
        offset = position
        try:
            for lexed in JsonPathLexer().tokenize(source[offset:]):
                quoted = getattr(lexed, "quoted", False)
                start = position if quoted else lexed.lexpos + offset
                if start != position or (quoted and source[position] not in _QUOTES):
                    break  # something was skipped at ``position``
                # A token made by a rule function carries its lexer, which has
                # just stopped after it; the others are their value.
                end = offset + (lexed.lexer.lexpos if hasattr(lexed, "lexer")
                                else lexed.lexpos + len(str(lexed.value)))
                found.append(_Token(lexed.type, start, end, quoted, lexed))
                position = end
        except JsonPathLexerError:
            if source[position] == "-":
                found.append(_Token("error", position, position + 1, False, None))
                position += 1
                continue
        break
    if position < len(source):
        found.append(_Token("error", position, position + 1, False, None))
    return found


def _spell(source: str, tokens: list[_Token]) -> tuple[list[Any], list[int]]:
    """Check that ``tokens`` spell ``$`` and then steps of the subset.

    Returns the tokens for the parser, each dotted member name as one ``ID``,
    and where each step starts. Raises at the first token out of place, with
    the message the host has always given there.
    """
    lexed: list[Any] = [tokens[0].lexed]  # "$": the source starts with it
    starts: list[int] = []
    index = 1
    while index < len(tokens):
        token = tokens[index]
        starts.append(token.start)
        if token.kind in (".", "DOUBLEDOT"):
            name_end = token.end
            while name_end < len(source) and source[name_end] in _NAME_CHARS:
                name_end += 1
            if name_end == token.end:
                dots = "'..'" if token.kind == "DOUBLEDOT" else "'.'"
                raise _syntax(source, token.end, f"{dots} must be followed by a member name")
            following = index + 1
            while following < len(tokens) and tokens[following].start < name_end:
                following += 1
            if tokens[following - 1].end != name_end:
                raise _syntax(source, name_end, "unexpected text")
            name = copy.copy(token.lexed)
            name.type, name.value, name.lexpos = "ID", source[token.end:name_end], token.end
            lexed += [token.lexed, name]
            index = following
        elif (token.kind == "[" and index + 2 < len(tokens)
              and tokens[index + 2].kind == "]" and _bracketed(tokens[index + 1])):
            lexed += [t.lexed for t in tokens[index:index + 3]]
            index += 3
        else:
            raise _syntax(source, token.start, "unexpected text")
    return lexed, starts


def _bracketed(token: _Token) -> bool:
    """What ``[…]`` may hold: an index, ``*`` or a quoted name."""
    return token.kind in ("NUMBER", "*") or (token.kind == "ID" and token.quoted)


class _Outside(Exception):
    """A node of the tree outside the subset; ``index`` counts the steps before it."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def _walk(node: tree.JSONPath) -> list[Step]:
    """The steps of jsonpath-ng's tree, in order; :class:`_Outside` at any other node."""
    if isinstance(node, tree.Root):
        return []
    if isinstance(node, (tree.Child, tree.Descendants)):
        return _relative(node.right, isinstance(node, tree.Descendants), _walk(node.left))
    raise _Outside(0)


def _relative(node: tree.JSONPath, deep: bool, steps: list[Step]) -> list[Step]:
    """``steps`` followed by those of ``node``, a path from where they end.

    ``.`` binds tighter than ``..`` in jsonpath-ng, so ``$..a.b`` is
    ``Descendants(Root, Child(a, b))``: only the first name found is the deep one.
    """
    if isinstance(node, tree.Child):
        return _relative(node.right, False, _relative(node.left, deep, steps))
    if isinstance(node, tree.Fields) and len(node.fields) == 1:
        return [*steps, ("deep" if deep else "key", node.fields[0])]
    if not deep and isinstance(node, tree.Index) and len(node.indices) == 1:
        return [*steps, ("index", node.indices[0])]
    if not deep and isinstance(node, tree.Wildcard):
        return [*steps, ("all", None)]
    raise _Outside(len(steps))


def _syntax(source: str, position: int, reason: str) -> PathSyntaxError:
    return PathSyntaxError(
        f"path {source!r} at character {position + 1}: {reason} "
        f"(filters and scripts are not allowed; {SUPPORTED})"
    )
