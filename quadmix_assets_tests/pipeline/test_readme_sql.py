"""The ``quadmix sql`` examples of the README and docs/inspecting.md, read from the documents themselves, run
as written against the session's finished test-preset run (``demo_run``), each checked against what its
comment claims, computed here from the stored files without the SQL views. A new example without a check
here fails the test."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from quadmix_assets.cli import main
from quadmix_assets.mixing.store import load_spec
from quadmix_assets.scoring.criteria import attribute_name
from quadmix_assets.storage import layout

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "inspecting.md"]
EXAMPLE = re.compile(r'^quadmix sql "(?P<query>[^"]+)"(?P<args>[^\n]*)$', re.M)


def examples() -> list[tuple[str, str, list[str]]]:
    """(document, query, extra arguments) of every ``quadmix sql "..."`` line in a bash block of the docs."""
    found = []
    for doc in DOCS:
        blocks = re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S)
        for block in blocks:
            for m in EXAMPLE.finditer(block):
                if m.group("query").strip() == "SELECT ...":  # the usage line, not an example
                    continue
                found.append((doc.name, " ".join(m.group("query").split()), shlex.split(m.group("args"))))
    return found


def _run(storage, query: str, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["sql", query, "--storage", storage.url, *args])
    assert code == 0, out.getvalue()
    return out.getvalue()


def _domain_names(storage) -> list[str]:
    return storage.read_json(layout.model_card("domain_classifier"))["domain_names"]


def _shards(storage) -> list[str]:
    return sorted(rel.split("/")[-1].removesuffix(".parquet") for rel in storage.list("documents", ".parquet"))


def check_tokens_per_domain(storage, got):
    """'tokens per domain of a mixture (copies counted)', for the mixture named random."""
    random_id = next(rel.split("/")[1] for rel in storage.list("mixtures", "/manifest.parquet")
                     if load_spec(storage, rel.split("/")[1])[0].name == "random")
    m = storage.read_parquet(layout.mixture_manifest(random_id))
    names = _domain_names(storage)
    ref = np.bincount(m["domain"].to_numpy().astype(np.int64), weights=m["n_tokens"].to_numpy() * m["copies"].to_numpy(),
                      minlength=len(names))
    want = {names[i]: int(v) for i, v in enumerate(ref) if v > 0}
    assert dict(zip(got["domain_name"].to_pylist(), got["tokens"].to_pylist())) == want
    assert got["tokens"].to_pylist() == sorted(want.values(), reverse=True)  # ORDER BY 2 DESC


def check_top_documents(storage, got, domain: str):
    """'the 20 highest-scored documents of a domain, with the start of their text'."""
    names = _domain_names(storage)
    scores, texts = [], {}
    for shard in _shards(storage):
        dom = storage.read_parquet(layout.attribute("domain", shard), columns=["domain"])["domain"].to_numpy()
        dclm = storage.read_parquet(layout.attribute(attribute_name("dclm"), shard), columns=["score"])["score"].to_numpy()
        docs = storage.read_parquet(layout.documents(shard), columns=["id", "text"])
        ids, text = docs["id"].to_pylist(), docs["text"].to_pylist()
        for i in np.flatnonzero(dom == names.index(domain)):
            scores.append(float(dclm[i]))
            texts[ids[i]] = text[i]
    assert scores, f"no document of {domain} in the test run: the example would answer nothing"
    assert got.num_rows == min(20, len(scores))
    assert got["dclm_score"].to_pylist() == sorted(scores, reverse=True)[:20]
    for doc_id, start in zip(got["id"].to_pylist(), got["text"].to_pylist()):
        assert texts[doc_id][:60] == start


def check_duplicates_across_shards(storage, got):
    """'duplicates across shards (the same text in more than one shard)'."""
    by_text: dict[str, list[str]] = {}
    for shard in _shards(storage):
        for text in storage.read_parquet(layout.documents(shard), columns=["text"])["text"].to_pylist():
            by_text.setdefault(hashlib.md5(text.encode("utf-8")).hexdigest(), []).append(shard)
    want = {h: len(s) for h, s in by_text.items() if len(set(s)) > 1}
    assert dict(zip(got["text_md5"].to_pylist(), got["copies"].to_pylist())) == want


def check_training_with_set_losses(storage, got):
    """'the regressor's training table with the proxies' per-set losses (one row per mixture and target
    set ...)': every training mixture once per target set, with the loss its (repeat 0) proxy run recorded."""
    from quadmix_assets.proxy.optimise import training_set

    ids = [s.mixture_id for s in training_set(storage).specs]
    noise = storage.read_json(layout.proxy_noise())
    assert set(noise["mixture_ids"]) & set(ids), "no repeated proxy among the training mixtures: nothing to double-count"
    want = {(k, s): v for k in ids for s, v in storage.read_json(layout.proxy_run(k))["target_losses"].items()}
    pairs = list(zip(got["mixture_id"].to_pylist(), got["target_set"].to_pylist()))
    assert len(pairs) == len(set(pairs)) == len(want)  # no noise repeat counted twice
    assert dict(zip(pairs, got["set_loss"].to_pylist())) == want
    assert {"round", "loss"} <= set(got.column_names)


def _checker(query: str):
    if "sum(m.n_tokens * m.copies)" in query and "x.name = 'random'" in query:
        return check_tokens_per_domain
    if m := re.search(r"f\.domain_name = '([^']+)' ORDER BY f\.dclm_score DESC LIMIT 20", query):
        return lambda storage, got: check_top_documents(storage, got, m.group(1))
    if "md5(text)" in query and "count(DISTINCT shard) > 1" in query:
        return check_duplicates_across_shards
    if "regressor_training" in query and "proxy_set_losses" in query:
        return check_training_with_set_losses
    return None


def test_every_documented_sql_example_returns_what_it_claims(demo_run, tmp_path):
    storage = demo_run[0].storage()
    found = examples()
    assert {doc for doc, _, _ in found} == {"README.md", "inspecting.md"}
    assert len(found) >= 5
    for n, (doc, query, args) in enumerate(found):
        check = _checker(query)
        assert check is not None, f"{doc}: no check for the example {query!r}"
        if "--out" not in args:  # as written: printed
            assert "rows)" in _run(storage, query, *args)
        out = tmp_path / f"example-{n}.parquet"
        args = [a for i, a in enumerate(args) if a != "--out" and (i == 0 or args[i - 1] != "--out")]
        assert "rows written" in _run(storage, query, *args, "--out", str(out))
        check(storage, pq.read_table(out))
