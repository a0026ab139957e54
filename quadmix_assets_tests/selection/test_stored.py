import json

import numpy as np
import pytest
import pyarrow as pa

from quadmix_assets.cli import main
from quadmix_assets.proxy.targets import TargetExample, TargetSet, target_table
from quadmix_assets.storage import StorageRoot, layout

from .conftest import DOMAINS, make_pool, topical_text


def _storage(tmp_path, tokenizer):
    """A storage root holding what `quadmix run` writes that the comparison reads (tiny, synthetic)."""
    st = StorageRoot(str(tmp_path / "storage"))
    table, shards, _ = make_pool((30, 30, 30), seed=0)
    for s, texts in shards.items():
        rows = np.flatnonzero(np.array(table["shard"].to_pylist()) == s)
        rows = rows[np.argsort(table["row"].to_numpy()[rows])]
        docs = pa.table({"id": table["id"].take(pa.array(rows)), "row": table["row"].take(pa.array(rows)),
                         "n_tokens": table["n_tokens"].take(pa.array(rows)), "text": pa.array(texts)})
        st.write_parquet(layout.documents(s), docs, {})
        st.write_parquet(layout.attribute("domain", s), pa.table({"domain": table["domain"].take(pa.array(rows))}), {})
    rng = np.random.default_rng(0)
    n = table.num_rows
    baselines = {"random": rng.permutation(n)[: n // 4], "a-only": np.arange(0, n, 4), "criteria-mean": np.arange(1, n, 4)}
    configs = []
    for i, (name, idx) in enumerate(baselines.items()):
        mid = f"{i:016x}"
        configs.append({"mixture_id": mid, "name": name, "origin": "baseline", "description": name})
        m = table.take(pa.array(np.sort(idx))).append_column("copies", pa.array(np.ones(len(idx), np.int32)))
        st.write_parquet(layout.mixture_manifest(mid), m, {})
    configs.append({"mixture_id": "d" * 16, "name": "draw-0000", "origin": "random_draw"})
    st.write_json(layout.mixture_configs(), {"configs": configs, "preset": {"name": "test", "n_configs": 4, "seed": 7}})
    sets = {"plain": TargetSet("plain", [TargetExample(text=topical_text(rng, "math")) for _ in range(30)]),
            "quiz": TargetSet("quiz", [TargetExample(text="the answer is oven", choices=("oven", "goal"), gold=0,
                                                     prefix="the answer is") for _ in range(30)], multiple_choice=True)}
    st.write_parquet(layout.target_examples(), target_table(sets), {})
    st.write_bytes(layout.tokenizer_file(), tokenizer.to_str().encode())
    st.write_json(layout.model_card("domain_classifier"), {"domain_names": DOMAINS})
    return st, configs


ARGS = ["--eval-preset", "cpu-tiny", "--budget-tokens", str(2 * 16 * 129), "--max-examples", "6", "--regmix-proxies", "4"]


def test_compare_command_on_a_storage_root(tmp_path, tokenizer, capsys):
    st, configs = _storage(tmp_path, tokenizer)
    out = tmp_path / "out"
    assert main(["compare", "--storage", st.url, *ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "left out quadmix: no QuaDMix optimum" in printed and "the search asset has not run" in printed
    assert "Wall time per phase" in printed and "regmix" in printed
    doc = json.loads((out / "selection_table.json").read_text())
    assert [r["method"] for r in doc["rows"]] == ["random", "a-only", "criteria-mean", "dsir", "regmix", "chance"]
    assert doc["mc_sets"] == ["quiz"] and doc["sets"] == ["plain", "quiz"]
    assert doc["budget_tokens"] == 2 * 16 * 129 and doc["eval_config"]["steps"] == 2
    assert {r["train_tokens"] for r in doc["rows"][:-1]} == {2 * 16 * 129}
    assert np.isclose(sum(doc["methods"]["regmix"]["weights"].values()), 1.0)
    assert doc["methods"]["regmix"]["n_proxies"] == 4
    assert doc["methods"]["dsir"]["selected_tokens"] <= doc["selection_tokens"]
    assert set(doc["phases_s"]) >= {"load", "dsir", "regmix", "compare", "total"}
    assert (out / "selection_table.md").read_text().startswith("Selection comparison")

    # the optimum, once the search has registered it and its manifest exists, gets its row
    st.write_json(layout.searched_configs(), {"configs": [{"mixture_id": configs[2]["mixture_id"], "name": "search-x",
                                                           "origin": "search"}]})
    assert main(["compare", "--storage", st.url, *ARGS, "--methods", "random,quadmix", "--out", str(out)]) == 0
    doc = json.loads((out / "selection_table.json").read_text())
    assert [r["method"] for r in doc["rows"]] == ["random", "quadmix", "chance"]
    assert doc["methods"]["quadmix"]["mixture_id"] == configs[2]["mixture_id"] and not doc["messages"]


def test_compare_command_missing_inputs(tmp_path, tokenizer, capsys):
    st, _ = _storage(tmp_path, tokenizer)
    assert main(["compare", "--storage", st.url, *ARGS, "--methods", "random,nope"]) == 2
    assert "unknown methods ['nope']" in capsys.readouterr().out
    st.fs.rm(st.path(layout.tokenizer_file()))
    assert main(["compare", "--storage", st.url, *ARGS]) == 2
    assert "proxy tokenizer" in capsys.readouterr().out


def test_searched_entry_says_why_it_is_missing(tmp_path):
    from quadmix_assets.selection.stored import searched_entry

    st = StorageRoot(str(tmp_path / "s"))
    entry, why = searched_entry(st)
    assert entry is None and "search asset has not run" in why
    st.write_json(layout.regressor_report(), {"regressor_version": "abc", "gate": {"reason": "CV Spearman 0.120 is below 0.300"}})
    entry, why = searched_entry(st)
    assert entry is None and "CV Spearman 0.120 is below 0.300" in why
    # a blocked search whose run exported the best measured config: that is the QuaDMix row, labelled
    st.write_json(layout.mixture_configs(), {"configs": [{"mixture_id": "e" * 16, "name": "draw-0003", "origin": "random_draw"}]})
    st.write_json(f"{layout.export_dir('e' * 16)}/manifest.json", {"mixture_id": "e" * 16, "selected_as": "best measured config (x)"})
    entry, why = searched_entry(st)
    assert entry["name"] == "draw-0003" and entry["selected_as"] == "best measured config (x)" and why == ""
    st.fs.rm(st.path(layout.export_dir("e" * 16)), recursive=True)
    st.write_json(layout.searched_configs(), {"configs": [{"mixture_id": "f" * 16, "name": "search-f", "origin": "search"}]})
    entry, why = searched_entry(st)
    assert entry is None and "has not been materialized" in why
    st.write_parquet(layout.mixture_manifest("f" * 16), pa.table({"id": ["a"]}), {})
    entry, why = searched_entry(st)
    assert entry["name"] == "search-f" and why == ""
    # the export rule preferred the best measured config to this optimum: that export is the QuaDMix row
    st.write_json(f"{layout.export_dir('e' * 16)}/manifest.json",
                  {"mixture_id": "e" * 16, "selected_as": "best measured config (proxy loss 6.864); the search optimum ...",
                   "selection": {"optimum": "f" * 16, "worse": True}})
    entry, why = searched_entry(st)
    assert entry["name"] == "draw-0003" and entry["selected_as"].startswith("best measured config") and why == ""
    from quadmix_assets.reporting import data_view

    st.write_json(f"{layout.export_dir('f' * 16)}/manifest.json", {"mixture_id": "f" * 16, "selected_as": "search optimum"})
    st.write_json(layout.search_result(), {"mixture_id": "f" * 16})
    assert data_view.exported_mixture(st) == "e" * 16  # `optimum` names what the rule exported for this search


def test_seeds_in_worker_processes_give_the_same_table(tmp_path, tokenizer, capsys):
    """`--jobs 2` trains the seeds in two processes at once: the same per-seed rows and the same mean ± SE as one
    process; and `--seed seed_of(s, 1)` alone trains exactly the second seed of `--seed s --seeds 2`."""
    from quadmix_assets.selection.stored import seed_of

    st, _ = _storage(tmp_path, tokenizer)
    small = [*ARGS, "--methods", "random,a-only,criteria-mean", "--threads", "1", "--seed", "11", "--seeds", "2"]
    docs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        assert main(["compare", "--storage", st.url, *small, "--jobs", jobs, "--out", str(out)]) == 0
        docs[jobs] = json.loads((out / "selection_table.json").read_text())
    assert "2 seeds in 2 worker processes" in capsys.readouterr().out
    assert docs["1"]["per_seed_rows"] == docs["2"]["per_seed_rows"]
    assert docs["1"]["across_seeds"] == docs["2"]["across_seeds"]
    assert docs["1"]["per_seed_rows"][0] != docs["1"]["per_seed_rows"][1]  # two seeds, two different models
    one_seed = small[:-4]  # without "--seed 11 --seeds 2"
    lone = [*one_seed, "--seed", str(seed_of(11, 1)), "--seeds", "1"]
    assert main(["compare", "--storage", st.url, *lone, "--out", str(tmp_path / "lone")]) == 0
    assert json.loads((tmp_path / "lone" / "selection_table.json").read_text())["rows"] == docs["1"]["per_seed_rows"][1]
    # separate runs of single seeds merge into the table of the multi-seed run (benchmarks/merge_compare_seeds.py)
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("merge_compare_seeds", Path(__file__).resolve().parents[2]
                                                  / "benchmarks" / "merge_compare_seeds.py")
    merger = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merger)
    first = [*one_seed, "--seed", "11", "--seeds", "1"]
    assert main(["compare", "--storage", st.url, *first, "--out", str(tmp_path / "first")]) == 0
    parts = [json.loads((tmp_path / d / "selection_table.json").read_text()) for d in ("lone", "first")]
    rows, seeds = merger.merge(parts)
    assert seeds == [11, seed_of(11, 1)] and rows == docs["1"]["across_seeds"]
    with pytest.raises(SystemExit, match="appears twice"):
        merger.merge([parts[0], parts[0]])
