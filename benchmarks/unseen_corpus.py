"""Builds a corpus the project was never developed on, from real text this machine ships, to check the loop on
a corpus of another kind (the export rule: the exported config's measured proxy loss within the noise of the
best measured config's, benchmarks/RESULTS.md):

* ``python-docs``: the documentation of the Python standard library, from its sources (never imported): per
  module, its docstring and the docstrings of its public classes, functions and methods, in pydoc's order;
* ``debian-docs``: the README files and copyright statements of the Debian packages installed here
  (``/usr/share/doc``; compressed ones too).

Documents shorter than 400 characters are skipped, longer ones are cut at 10,000 characters (as the bundled
corpus is). Shards are JSONL.gz with ``{"id", "url", "text", "source"}``, in a seeded order, written with mtime 0
(the same bytes on every run on the same machine).

    .venv/bin/python benchmarks/unseen_corpus.py OUT_DIR [SHARDS (4)]
    .venv/bin/quadmix run --corpus 'OUT_DIR/*.jsonl.gz' --configs 8 --storage runs/unseen/storage
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import sys
import sysconfig
from pathlib import Path

MIN_CHARS, MAX_CHARS = 400, 10_000
SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "__pycache__", "turtledemo", "ensurepip"}


def python_docs() -> list[dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIP_PARTS & set(rel.parts) or any(p.startswith("_") and p != "__init__.py" for p in rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        parts = [f"{name}\n\n{ast.get_docstring(tree) or ''}"]
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(f"{node.name}\n    {doc}")
                if isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                            d = ast.get_docstring(item)
                            if d:
                                parts.append(f"{node.name}.{item.name}\n    {d}")
        docs.append({"url": f"python-stdlib:{name}", "text": "\n\n".join(parts), "source": "python-docs"})
    return docs


def debian_docs() -> list[dict]:
    docs = []
    for path in sorted(Path("/usr/share/doc").glob("*/*")):
        low = path.name.lower()
        if not (low.startswith("readme") or low == "copyright") or not path.is_file():
            continue
        try:
            raw = gzip.open(path).read() if low.endswith(".gz") else path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        docs.append({"url": f"file:///usr/share/doc/{path.parent.name}/{path.name}", "text": text, "source": "debian-docs"})
    return docs


def main() -> None:
    out = Path(sys.argv[1])
    shards = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    out.mkdir(parents=True, exist_ok=True)
    docs = [d for d in python_docs() + debian_docs() if len(d["text"].strip()) >= MIN_CHARS]
    seen, unique = set(), []
    for d in docs:
        d["text"] = d["text"][:MAX_CHARS]
        h = hashlib.sha256(d["text"].encode()).hexdigest()
        if h not in seen:  # the same licence text ships with many packages
            seen.add(h)
            unique.append(dict(d, id=h[:16]))
    unique.sort(key=lambda d: hashlib.blake2b(f"unseen|{d['id']}".encode(), digest_size=8).digest())
    for k in range(shards):
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
            for d in unique[k::shards]:
                gz.write((json.dumps({f: d[f] for f in ("id", "url", "text", "source")}, ensure_ascii=False) + "\n").encode())
        (out / f"shard-{k:05d}.jsonl.gz").write_bytes(buf.getvalue())
    by_source = {s: sum(d["source"] == s for d in unique) for s in ("python-docs", "debian-docs")}
    chars = sum(len(d["text"]) for d in unique)
    print(f"{len(unique):,} documents ({by_source}), {chars:,} characters, {shards} shards in {out}")


if __name__ == "__main__":
    main()
