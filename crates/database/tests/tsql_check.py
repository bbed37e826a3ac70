"""Parses T-SQL with two independent parsers and reports what they saw, as JSON.

Input (stdin): {"statements": ["...", ...], "scripts": ["...", ...]}
Output (stdout): {"statements": [report, ...], "scripts": [report, ...]}

Per statement:
  sqlglot  - its T-SQL tokenizer: every token's type and decoded text (bracketed
             identifiers and N'...' strings come back unescaped), so the caller can check
             that a name stayed one token and nothing follows the final `;`.
  sqlfluff - its tsql grammar (a full parse): the top-level statement types, the raw
             quoted identifiers and literals, or the parse error. sqlfluff's lexer does not
             accept `]]` inside brackets, so such statements are reported as skipped and
             rest on sqlglot alone.
Per script (GO-separated batches): sqlfluff's batches and statement types.
The caller (tests/tsql_parse.rs) decides what is right; this file only reports.
"""

import json
import sys

import sqlfluff
from sqlfluff.api.simple import APIParsingError
from sqlglot.dialects.tsql import TSQL


def tokens(sql):
    try:
        return [{"type": t.token_type.name, "text": t.text} for t in TSQL().tokenize(sql)]
    except Exception as e:  # noqa: BLE001 - any tokenizer failure is the finding
        return {"error": str(e)}


def walk(node, key=None):
    """Yields (key, value) for every leaf and every subtree of a sqlfluff parse tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def children(node, key):
    """The values stored under `key` directly in `node` (a dict or a list of dicts)."""
    items = node if isinstance(node, list) else [node]
    out = []
    for item in items:
        if isinstance(item, dict) and key in item:
            value = item[key]
            out.extend(value if isinstance(value, list) else [value])
    return out


def statement_types(batch):
    return [next(iter(s)) if isinstance(s, dict) and s else str(s) for s in children(batch, "statement")]


def fluff(sql):
    if "]]" in sql:
        return {"skipped": "sqlfluff's lexer rejects ]] inside brackets"}
    try:
        tree = sqlfluff.parse(sql, dialect="tsql")
    except APIParsingError as e:
        return {"error": str(e)}
    batches = children(tree["file"], "batch")
    leaves = list(walk(tree))
    return {
        "batches": [statement_types(b) for b in batches],
        "identifiers": [v for k, v in leaves if k == "quoted_identifier"],
        "literals": [v for k, v in leaves if k == "quoted_literal"],
        "keywords": [v.upper() for k, v in leaves if k == "keyword"],
    }


def main():
    request = json.load(sys.stdin)
    out = {
        "statements": [{"sqlglot": tokens(s), "sqlfluff": fluff(s)} for s in request.get("statements", [])],
        "scripts": [fluff(s) for s in request.get("scripts", [])],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
