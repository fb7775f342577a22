"""The table of `swift sft` argument names and kinds, so YAMLs are checked without importing swift.

Usage: ``python -m swift_configs.argtable --write`` (after upgrading ms-swift); ``load()`` reads it.

Importing swift's argument classes takes seconds (torch, transformers); the generator must stay
fast and fail before anything heavy starts. tests/test_swift_configs.py re-derives the table from
the installed ms-swift and fails if the committed one is stale.
"""
from __future__ import annotations

import argparse
import json
import typing
from pathlib import Path

TABLE = Path(__file__).with_name("swift_sft_args.json")


def _kind(tp):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return {"choices": [a for a in args if a is not None]}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _kind(inner[0]) if len(inner) == 1 else "any"
    if origin in (list, typing.List):
        return "list"
    for t, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if tp is t:
            return name
    return "any"


def derive() -> dict:
    import dataclasses

    from swift.arguments import SftArguments
    from swift.utils.utils import _patch_get_type_hints

    with _patch_get_type_hints():
        hints = typing.get_type_hints(SftArguments)
    import swift

    fields = {f.name: _kind(hints.get(f.name, f.type)) for f in dataclasses.fields(SftArguments)}
    return {"ms_swift": swift.__version__, "fields": dict(sorted(fields.items()))}


def load() -> dict:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true")
    a = p.parse_args(argv)
    table = derive()
    if a.write:
        TABLE.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {TABLE} ({len(table['fields'])} fields, ms-swift {table['ms_swift']})")
    else:
        print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
