"""The comparison read from a pipeline's storage root (what ``quadmix compare`` runs; no Dagster).

Inputs, all written by ``quadmix run`` (see :mod:`quadmix_assets.storage.layout`):

* the pool: ``documents/<shard>.parquet`` (id, row, n_tokens) with ``attributes/domain/<shard>.parquet``;
* the baselines: ``mixtures/configs.json`` entries named ``random``, ``<criterion>-only``,
  ``criteria-mean`` and their ``mixtures/<id>/manifest.parquet``;
* the QuaDMix optimum: the last ``origin == "search"`` entry of ``mixtures/searched.json`` and its
  manifest (absent: the row is left out and a message says so);
* ``targets/examples.parquet`` (target half for DSIR and RegMix, held-out half for judging),
  ``models/proxy_tokenizer/tokenizer.json``, ``models/domain_classifier/model.json`` (domain names).

DSIR and RegMix select as many ``n_tokens`` as the stored ``random`` baseline holds (the run's
``baseline_keep_fraction`` of the pool), so every method selects a pool of the same size; the evaluation
models then all train on the same number of tokens drawn from their pools.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quadmix_assets.config import preset_keys, resolve_config
from quadmix_assets.presets import DEFAULT_PRESET, Preset
from quadmix_assets.proxy.model import ProxyConfig, run_proxy_config, preset as model_preset
from quadmix_assets.proxy.tokenizer import eos_id
from quadmix_assets.mixing.features import duplicate_rows
from quadmix_assets.mixing.store import searched_specs, spec_entry
from quadmix_assets.storage import StorageRoot, layout
from quadmix_assets.storage.texts import ShardTexts

from .compare import Comparison, across_seeds, compare_methods, optimum_vs_controls
from .dsir import dsir_select
from .regmix import regmix_select

SELECTED = ("dsir", "regmix", "quadmix")


class CompareError(RuntimeError):
    """The comparison cannot run as asked (reported as a message, exit code 2)."""


class MissingInput(CompareError):
    """A stored file the comparison needs is not there."""


def _need(storage: StorageRoot, rel: str, what: str) -> None:
    if not storage.exists(rel):
        raise MissingInput(f"{storage.uri(rel)} is missing ({what}); run `quadmix run` on this storage root first")


def run_preset(storage: StorageRoot) -> Preset:
    """The preset the stored run used (its recorded values over the named preset's defaults)."""
    doc = storage.read_json(layout.mixture_configs())
    stored = doc.get("preset") or {}
    keys = preset_keys()
    return resolve_config(stored.get("name", DEFAULT_PRESET), {k: v for k, v in stored.items() if k in keys},
                          none_keeps=False).preset


def pool_table(storage: StorageRoot) -> pa.Table:
    """Every stored document: id, shard, row, n_tokens, domain (0 where no domain attribute exists); the
    normaliser's cross-shard text duplicates are left out, as in every mixture."""
    parts = []
    rels = storage.list("documents", ".parquet")
    dropped = duplicate_rows(storage, [rel.rsplit("/", 1)[-1][: -len(".parquet")] for rel in rels])
    for rel in rels:
        shard = rel.rsplit("/", 1)[-1][: -len(".parquet")]
        docs = storage.read_parquet(rel, columns=["id", "row", "n_tokens"])
        dom_rel = layout.attribute("domain", shard)
        if storage.exists(dom_rel):
            dom = storage.read_parquet(dom_rel, columns=["domain"])["domain"]
            if len(dom) != docs.num_rows:
                raise ValueError(f"{dom_rel}: {len(dom)} rows, documents have {docs.num_rows}")
        else:
            dom = pa.array(np.zeros(docs.num_rows, np.int16))
        t = pa.table({"id": docs["id"].cast(pa.string()), "shard": pa.array([shard] * docs.num_rows, pa.string()),
                      "row": docs["row"].cast(pa.int64()), "n_tokens": docs["n_tokens"].cast(pa.int64()),
                      "domain": pc.cast(dom, pa.int16())})
        if shard in dropped:
            keep = np.ones(docs.num_rows, dtype=bool)
            keep[dropped[shard]] = False
            t = t.filter(pa.array(keep))
        parts.append(t)
    if not parts:
        raise MissingInput(f"no documents under {storage.uri('documents')}; run `quadmix run` first")
    return pa.concat_tables(parts)


def domain_names(storage: StorageRoot, n_domains: int) -> list[str]:
    rel = layout.model_card("domain_classifier")
    if storage.exists(rel):
        names = storage.read_json(rel).get("domain_names")
        if names and len(names) == n_domains:
            return [str(n) for n in names]
    return [f"domain_{m}" for m in range(n_domains)]


def baseline_entries(storage: StorageRoot) -> dict[str, dict]:
    """Stored baseline specs in table order: random, each ``<criterion>-only``, criteria-mean."""
    doc = storage.read_json(layout.mixture_configs())
    by_name = {d["name"]: d for d in doc["configs"] if d.get("origin") == "baseline"}
    order = (["random"] + [n for n in by_name if n.endswith("-random")] + [n for n in by_name if n.endswith("-only")]
             + ["criteria-mean"])
    return {n: by_name[n] for n in order if n in by_name}


def searched_entry(storage: StorageRoot) -> tuple[dict | None, str]:
    """The QuaDMix result of the stored run: the last ``search`` entry (the promoted optimum), or, when the
    search was not promoted or the export rule preferred it to the optimum (docs/method.md, "Which mixture is
    exported"), the exported best *measured* config (its spec entry with ``selected_as``).
    Returns (entry, "") or (None, why not)."""
    entries = [d for d in searched_specs(storage) if d.get("origin") == "search"]
    if not entries:
        for rel in storage.list("exports", "manifest.json"):
            doc = storage.read_json(rel)
            if str(doc.get("selected_as", "")).startswith("best measured"):
                entry = spec_entry(storage, doc["mixture_id"]) | {"selected_as": doc["selected_as"]}
                return entry, ""
        why = "the search asset has not run"
        if storage.exists(layout.regressor_report()):
            rep = storage.read_json(layout.regressor_report())
            gate = (rep.get("gate") or {}).get("reason", "")
            why = f"the search did not register an optimum ({gate}) and no best-measured export exists"
        return None, f"no QuaDMix optimum: {why}"
    entry = entries[-1]
    for rel in storage.list("exports", "manifest.json"):  # the export rule preferred the best measured config
        doc = storage.read_json(rel)
        if ((doc.get("selection") or {}).get("optimum") == entry["mixture_id"]
                and str(doc.get("selected_as", "")).startswith("best measured")):
            return spec_entry(storage, doc["mixture_id"]) | {"selected_as": doc["selected_as"]}, ""
    if not storage.exists(layout.mixture_manifest(entry["mixture_id"])):
        return None, (f"no QuaDMix optimum manifest: {entry['name']} ({entry['mixture_id']}) is registered in searched.json "
                      f"but {layout.mixture_manifest(entry['mixture_id'])} has not been materialized")
    return entry, ""


def stored_judge(storage: StorageRoot, targets: pa.Table) -> dict[str, float]:
    """The judge the run recorded in its target card (sets and weights); a card written before judges
    existed: every set with a held-out half, weight 1."""
    card = storage.read_json(layout.target_card()) if storage.exists(layout.target_card()) else {}
    if card.get("judge_weights"):
        return {str(k): float(v) for k, v in card["judge_weights"].items()}
    held = targets.filter(pc.equal(targets["half"], "heldout"))
    return {s: 1.0 for s in sorted(set(held["set"].to_pylist()))}


def compare_judge(storage: StorageRoot, targets: pa.Table, sources, log: Callable[[str], None] = print
                  ) -> tuple[pa.Table, dict[str, float], dict[str, dict]]:
    """A judge given to ``quadmix compare`` (``--judge``; quadmix_assets.proxy.objective): each file is used
    whole as held-out examples, after dropping exact duplicates and every example whose normalised text is
    in the target half the proxies were scored on (the judge never sees it); a bundled name takes the
    stored held-out half of that set. Each set is validated (size) and checked for corpus leaks (reported,
    kept). Returns the judge's table, its weights and what was found per set."""
    from quadmix_assets.proxy.objective import (corpus_leaks, drop_duplicates, load_source, normalise_text,
                                                validate_set)
    from quadmix_assets.proxy.targets import TargetSet, target_table

    scored = {normalise_text(t) for t in pc.filter(targets["text"], pc.equal(targets["half"], "target")).to_pylist()}
    held = targets.filter(pc.equal(targets["half"], "heldout"))
    parts, weights, found = [], {}, {}
    for src in sources:
        name = src.set_name
        weights[name] = src.weight
        if src.path is None:
            part = held.filter(pc.equal(held["set"], name))
            if part.num_rows == 0:
                raise CompareError(f"--judge {name}: the stored run has no held-out examples of a set {name!r}; "
                                   f"stored: {sorted(set(held['set'].to_pylist()))}")
            parts.append(part)
            found[name] = {"source": "stored held-out half", "examples": part.num_rows}
            continue
        ts, dups = drop_duplicates(load_source(src))
        kept = [ex for ex in ts.examples if normalise_text(ex.text) not in scored]
        seen_by_proxies = len(ts.examples) - len(kept)
        ts = TargetSet(name=name, examples=kept)
        validate_set(ts, "judge", {"heldout": len(ts)})
        parts.append(target_table({name: ts}, {name: "judge"}))
        found[name] = {"source": src.path, "examples": len(ts), "duplicates_dropped": dups,
                       "dropped_in_proxy_target_half": seen_by_proxies}
    by_set = {n: [] for n in found}
    table = pa.concat_tables([p.select(parts[-1].column_names).cast(parts[-1].schema) for p in parts])
    for n, t in zip(table["set"].to_pylist(), table["text"].to_pylist()):
        by_set[n].append(t)
    shards = [rel.rsplit("/", 1)[-1][: -len(".parquet")] for rel in storage.list("documents", ".parquet")]

    def documents():
        for sh in shards:
            yield from storage.read_parquet(layout.documents(sh), columns=["text"])["text"].to_pylist()

    for n, v in corpus_leaks(by_set, documents()).items():
        found[n]["corpus_leaks"] = int(v.sum())
    for n, f in found.items():
        log(f"judge {n} (weight {weights[n]:g}): {f['examples']} examples from {f['source']}"
            + (f"; {f['duplicates_dropped']} duplicates dropped" if f.get("duplicates_dropped") else "")
            + (f"; {f['dropped_in_proxy_target_half']} dropped: in the proxies' target half" if f.get("dropped_in_proxy_target_half") else "")
            + (f"; WARNING {f['corpus_leaks']} also in the corpus (kept)" if f.get("corpus_leaks") else ""))
    return table, weights, found


def manifest_tokens(table: pa.Table) -> int:
    return int((table["n_tokens"].to_numpy().astype(np.int64) * table["copies"].to_numpy().astype(np.int64)).sum())


def target_half_texts(target_table: pa.Table, *, max_per_set: int | None = None, seed: int = 0) -> dict[str, list[str]]:
    """Texts of the *target* half per set (optionally a seeded subset of ``max_per_set``)."""
    t = target_table.filter(pc.equal(target_table["half"], "target"))
    out = {}
    for name in sorted(set(t["set"].to_pylist())):
        texts = pc.filter(t["text"], pc.equal(t["set"], name)).to_pylist()
        if max_per_set is not None and len(texts) > max_per_set:
            pick = np.sort(np.random.default_rng(seed).choice(len(texts), max_per_set, replace=False))
            texts = [texts[i] for i in pick]
        out[name] = texts
    return out


def token_seqs(tokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    """EOS + token ids of each text (as the proxy runs score the target sets)."""
    eos = eos_id(tokenizer)
    return [np.asarray([eos, *e.ids], dtype=np.int64) for e in tokenizer.encode_batch(list(texts))]


def seed_of(seed: int, i: int) -> int:
    """Seed ``i`` of a multi-seed comparison: another data order and other initial weights, same methods.
    ``quadmix compare --seed seed_of(s, i)`` alone trains exactly seed ``i`` of ``--seed s --seeds S``."""
    return (int(seed) + 7919 * int(i)) % (2**31)


@dataclass(frozen=True)
class _SeedWork:
    """One seed's evaluation models: everything but the data, which the caller (or a worker) holds."""

    index: int
    seed: int
    eval_preset: str | ProxyConfig
    budget_tokens: int | None
    max_examples: int | None
    group_size: int | None
    device: object
    judge: dict | None = None

    def run(self, ordered, texts, tokenizer, targets, log) -> Comparison:
        cfg = (replace(self.eval_preset, seed=self.seed) if isinstance(self.eval_preset, ProxyConfig)
               else model_preset(self.eval_preset, seed=self.seed))
        return compare_methods(ordered, texts, tokenizer, targets, cfg, budget_tokens=self.budget_tokens,
                               max_examples=self.max_examples, seed=self.seed, group_size=self.group_size,
                               device=self.device, judge=self.judge, log=log)


def _seed_worker(work: _SeedWork, ordered, storage_url: str, tokenizer_json: str, targets, threads) -> Comparison:
    """One seed in a worker process (spawned: a fresh interpreter, its own torch threads)."""
    from tokenizers import Tokenizer

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    tag = f"[seed {work.index + 1}, {work.seed}]"
    return work.run(ordered, ShardTexts(StorageRoot(storage_url), max_shards=64), Tokenizer.from_str(tokenizer_json),
                    targets, lambda line: print(f"{tag} {line}", flush=True))


def _seeds_in_processes(work: list[_SeedWork], ordered, storage_url: str, tokenizer_json: str, targets, threads,
                        jobs: int, log: Callable[[str], None]) -> list[Comparison]:
    """The seeds on ``jobs`` spawned workers, which die with this process (:mod:`quadmix_assets.worker_pool`:
    a killed ``quadmix compare`` leaves no evaluation model training)."""
    from quadmix_assets.worker_pool import process_pool

    jobs = min(int(jobs), len(work))
    log(f"{len(work)} seeds in {jobs} worker processes ({threads or 'default'} torch thread(s) each)")
    with process_pool(jobs) as pool:
        futures = [pool.submit(_seed_worker, w, ordered, storage_url, tokenizer_json, targets, threads) for w in work]
        comps = [f.result() for f in futures]
    for w in work:
        log(f"seed {w.index + 1} of {len(work)} ({w.seed}) done")
    return comps


def run_stored_comparison(storage: StorageRoot, *, eval_preset: str | ProxyConfig = "cpu-eval", budget_tokens: int | None = None,
                          methods: Sequence[str] | None = None, max_examples: int | None = 100, seed: int | None = None,
                          regmix_proxies: int | None = None, group_size: int | None = None, device=None,
                          threads: int | None = None, seeds: int = 1, jobs: int = 1, judge=None,
                          log: Callable[[str], None] = print) -> tuple[Comparison, dict]:
    """Build DSIR and RegMix selections, collect the stored baselines and the QuaDMix optimum, train one
    evaluation model per method and judge them on the held-out half. Returns the comparison and a report
    (method sources, selection info, messages, wall time per phase).

    With ``seeds`` > 1 each seed is one more evaluation model per method (:func:`seed_of`); ``jobs`` > 1 trains
    the seeds in that many worker processes at once (``threads`` torch threads each). A seed's models are a
    function of their seed alone, so the table is the same bytes whichever way the seeds were run."""
    from tokenizers import Tokenizer

    if threads:
        import torch

        torch.set_num_threads(int(threads))
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    for rel, what in ((layout.mixture_configs(), "mixture specs"), (layout.target_examples(), "target sets"),
                      (layout.tokenizer_file(), "proxy tokenizer")):
        _need(storage, rel, what)
    preset = run_preset(storage)
    seed = int(preset.seed if seed is None else seed) % (2**31)
    with storage.local_file(layout.tokenizer_file()) as p:
        tokenizer = Tokenizer.from_file(str(p))
    targets = storage.read_parquet(layout.target_examples())
    judge_found: dict[str, dict] = {}
    if judge:
        judge_table, judge_weights, judge_found = compare_judge(storage, targets, judge, log)
    else:
        judge_table, judge_weights = targets, stored_judge(storage, targets)
        card = storage.read_json(layout.target_card()) if storage.exists(layout.target_card()) else {}
        judge_found = {n: {"corpus_leaks": c.get("corpus_leaks"), "duplicates_dropped": c.get("duplicates_dropped"),
                           "role": c.get("role", "both")} for n, c in (card.get("sets") or {}).items() if n in judge_weights}
    pool = pool_table(storage)
    n_domains = int(pool["domain"].to_numpy().max()) + 1 if pool.num_rows else 1
    names = domain_names(storage, max(n_domains, 1))
    if len(names) > n_domains:
        n_domains = len(names)
    texts = ShardTexts(storage, max_shards=64)
    baselines = baseline_entries(storage)
    wanted = list(methods) if methods else list(baselines) + list(SELECTED)
    unknown = [m for m in wanted if m not in baselines and m not in SELECTED]
    if unknown:
        raise CompareError(f"unknown methods {unknown}; available: {list(baselines) + list(SELECTED)}")
    messages: list[str] = []
    manifests: dict[str, pa.Table] = {}
    sources: dict[str, dict] = {}
    for name in wanted:
        if name in baselines:
            mid = baselines[name]["mixture_id"]
            rel = layout.mixture_manifest(mid)
            if not storage.exists(rel):
                messages.append(f"left out {name}: {rel} has not been materialized")
                continue
            manifests[name] = storage.read_parquet(rel, columns=["id", "shard", "row", "n_tokens", "domain", "copies"])
            sources[name] = {"mixture_id": mid, "origin": "baseline", "description": baselines[name].get("description", "")}
        elif name == "quadmix":
            entry, why = searched_entry(storage)
            if entry is None:
                messages.append(f"left out quadmix: {why}")
                continue
            rel = layout.mixture_manifest(entry["mixture_id"])
            manifests[name] = storage.read_parquet(rel, columns=["id", "shard", "row", "n_tokens", "domain", "copies"])
            sources[name] = {"mixture_id": entry["mixture_id"], "origin": entry["origin"], "name": entry["name"],
                             "selected_as": entry.get("selected_as", "search optimum"),
                             "description": entry.get("description", ""), "found_by": entry.get("found_by")}
    if "random" in baselines and storage.exists(layout.mixture_manifest(baselines["random"]["mixture_id"])):
        sel_budget = manifest_tokens(storage.read_parquet(layout.mixture_manifest(baselines["random"]["mixture_id"]),
                                                          columns=["n_tokens", "copies"]))
    else:
        sel_budget = int(preset.baseline_keep_fraction * pool["n_tokens"].to_numpy().sum())
    phases["load"] = time.perf_counter() - t0
    log(f"pool: {pool.num_rows:,} documents, {int(pool['n_tokens'].to_numpy().sum()):,} tokens; selections of "
        f"{sel_budget:,} tokens (the random baseline's size); seed {seed}")
    if "dsir" in wanted:
        t = time.perf_counter()
        res = dsir_select(pool, texts, target_half_texts(targets), budget_tokens=sel_budget, seed=seed)
        manifests["dsir"] = res.manifest
        sources["dsir"] = res.info
        phases["dsir"] = time.perf_counter() - t
        log(f"dsir: {res.info['selected_documents']:,} documents, {res.info['selected_tokens']:,} tokens in {phases['dsir']:.0f}s")
    if "regmix" in wanted:
        t = time.perf_counter()
        pcfg = run_proxy_config(preset, tokenizer.get_vocab_size())
        tseqs = {s: token_seqs(tokenizer, tx) for s, tx in
                 target_half_texts(targets, max_per_set=preset.target_examples, seed=preset.seed).items()}
        res = regmix_select(pool, texts, tokenizer, tseqs, pcfg, n_proxies=int(regmix_proxies or preset.n_configs),
                            final_budget_tokens=sel_budget, seed=seed, n_domains=n_domains, domain_names=names,
                            n_search=preset.search_samples, top_k=preset.search_top_k,
                            group_size=preset.proxy_group_size, valid_fraction=preset.regressor_valid_fraction,
                            device=device, log=log)
        manifests["regmix"] = res.manifest
        sources["regmix"] = res.info
        phases["regmix"] = time.perf_counter() - t
        r = res.info["regressor"]
        log(f"regmix: {res.info['n_proxies']} proxies; regressor held-out Spearman {r['spearman']:.3f}, MAE {r['mae']:.4f} "
            f"(constant predictor {r['mae_constant']:.4f}); in {phases['regmix']:.0f}s")
        floor = preset.regressor_min_spearman
        if floor is not None and not (r["spearman"] >= floor):
            messages.append(f"regmix kept, but its regressor's held-out Spearman {r['spearman']:.3f} (n={r['n_valid']}) is "
                            f"below the run's floor {floor} that the QuaDMix search applies: its weights are barely "
                            f"better informed than a random draw")
    for m in messages:
        log(m)
    ordered = {m: manifests[m] for m in wanted if m in manifests}
    t = time.perf_counter()
    work = [_SeedWork(i, seed_of(seed, i), eval_preset, budget_tokens, max_examples, group_size, device, judge_weights)
            for i in range(int(seeds))]
    leaks = {n: f["corpus_leaks"] for n, f in judge_found.items() if f.get("corpus_leaks")}
    if leaks:
        messages.append(f"judge examples that also appear in the corpus (kept; a method that selects them is favoured): {leaks}")
    if int(jobs or 1) > 1 and len(work) > 1:
        comps = _seeds_in_processes(work, ordered, storage.url, tokenizer.to_str(), judge_table, threads, int(jobs), log)
    else:
        comps = []
        for w in work:
            if seeds > 1:
                log(f"seed {w.index + 1} of {seeds} ({w.seed})")
            comps.append(w.run(ordered, texts, tokenizer, judge_table, log))
    comp = comps[0]
    comp.info["optimum_vs_controls"] = optimum_vs_controls(comps)
    if seeds > 1:
        comp.info["across_seeds"] = across_seeds(comps)
        comp.info["per_seed_rows"] = [c.rows for c in comps]
    phases["compare"] = time.perf_counter() - t
    for k, v in comp.timings.items():
        phases[f"compare.{k}"] = v
    phases["total"] = time.perf_counter() - t0
    for name in ordered:
        sources.setdefault(name, {})["selected_tokens"] = manifest_tokens(ordered[name])
    report = {"storage": storage.url, "eval_preset": eval_preset if isinstance(eval_preset, str) else "custom",
              "eval_config": asdict(comp.config),
              "budget_tokens": comp.budget_tokens, "selection_tokens": sel_budget, "seed": seed,
              "run_preset": preset.to_dict(), "methods": sources, "messages": messages, "phases_s": phases,
              "judge": {"weights": judge_weights, "sets": judge_found, "given_to_compare": bool(judge)},
              **comp.info}
    return comp, report


def phases_text(phases: dict[str, float]) -> str:
    return "\n".join(f"  {k:<26} {v:8.1f} s" for k, v in phases.items())


def compare_command(storage_url: str, *, eval_preset: str = "cpu-eval", budget_tokens: int | None = None,
                    methods: Sequence[str] | None = None, max_examples: int | None = 100, seed: int | None = None,
                    regmix_proxies: int | None = None, group_size: int | None = None, device=None,
                    threads: int | None = None, seeds: int = 1, jobs: int = 1, out: str | None = None,
                    judge=None, log: Callable[[str], None] = print) -> int:
    """``quadmix compare``: run the stored comparison, print the tables and the wall time per phase, and
    write ``<out>/selection_table.md`` and ``.json`` when ``out`` is given. Returns an exit code."""
    import json
    from pathlib import Path

    from .compare import controls_table, markdown_tables, seeds_table

    from quadmix_assets.proxy.objective import ObjectiveError, parse_sources

    storage = StorageRoot(storage_url)
    try:
        judge = parse_sources(judge, "judge") if judge else None
        comp, report = run_stored_comparison(storage, eval_preset=eval_preset, budget_tokens=budget_tokens,
                                             methods=methods, max_examples=max_examples, seed=seed,
                                             regmix_proxies=regmix_proxies, group_size=group_size, device=device,
                                             threads=threads, seeds=seeds, jobs=jobs, judge=judge, log=log)
    except (CompareError, ObjectiveError) as exc:
        log(f"quadmix compare: {exc}")
        return 2
    c = comp.config
    header = (f"Selection comparison on {storage.url}: {len(comp.rows) - 1} methods, one {eval_preset} model each "
              f"({report['parameters_per_model'] / 1e6:.2f}M parameters, {c.n_layers} layers, d_model {c.d_model}), "
              f"{comp.budget_tokens:,} training tokens each, judged on the held-out half only "
              f"(at most {max_examples} examples per set); device {report['device']}\n\nJudge (avg = weighted mean of "
              f"held-out losses): " + ", ".join(f"{n} x{w:g}" for n, w in report["judge"]["weights"].items()))
    head = header + "\n\n" + (controls_table(report["optimum_vs_controls"]) + "\n" if report.get("optimum_vs_controls") else "")
    text = head + markdown_tables(comp)
    if "across_seeds" in report:
        text = head + seeds_table(report["across_seeds"]) + "\nFirst seed in detail:\n\n" + markdown_tables(comp)
    if report["messages"]:
        text += "\nNotes:\n" + "\n".join(f"- {m}" for m in report["messages"]) + "\n"
    text += "\nWall time per phase:\n" + phases_text(report["phases_s"]) + "\n"
    log("")
    log(text)
    if out:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "selection_table.md").write_text(text)
        (d / "selection_table.json").write_text(json.dumps({"rows": comp.rows, "sets": comp.sets, "mc_sets": comp.mc_sets,
                                                            **report}, indent=2, default=str) + "\n")
        log(f"wrote {d / 'selection_table.md'} and {d / 'selection_table.json'}")
    return 0
