"""The spec store: the one reader/writer of stored mixture specs and of the records a mixture keeps. Drawn
configs and baselines (``mixtures/configs.json``, written by ``mixture_configs``), then every spec
registered later (``mixtures/searched.json``: the configs of later search rounds and the promoted optimum),
and each mixture's scores card (``mixtures/<id>/scores.json``, written by ``mixture_scores``). Every
consumer (assets, lineage, the comparison) reads specs through these functions, never the files.

A spec entry is :meth:`MixtureSpec.to_dict` plus ``round`` (1 for the random draws, 2, 3, ... for the
rounds proposed around the regressor's best, none for baselines and the optimum) and, for search results,
``found_by``.
"""

from __future__ import annotations

from quadmix_assets.storage import StorageRoot, layout

from .specs import MixtureSpec

TRAINING_ORIGINS = ("random_draw", "round")  # the configs the regressor learns from


def configs_doc(storage: StorageRoot) -> dict:
    return storage.read_json(layout.mixture_configs())


def alpha_criteria(configs: dict) -> list[str]:
    """alpha's columns, in order, as a ``mixture_configs`` document (``configs_doc``) recorded them in its
    space: everything downstream of the configs follows this list, not today's registry or settings."""
    return list(configs["space"]["criteria"])


def searched_specs(storage: StorageRoot) -> list[dict]:
    """Spec entries registered after ``mixture_configs`` (search rounds, optimum); empty before."""
    if not storage.exists(layout.searched_configs()):
        return []
    return storage.read_json(layout.searched_configs())["configs"]


def all_spec_dicts(storage: StorageRoot) -> list[dict]:
    """Every spec entry: drawn configs and baselines, then the later ones, in registration order."""
    return configs_doc(storage)["configs"] + searched_specs(storage)


def spec_entry(storage: StorageRoot, mixture_id: str) -> dict:
    for d in all_spec_dicts(storage):
        if d["mixture_id"] == mixture_id:
            return d
    raise KeyError(
        f"mixture {mixture_id!r} is in neither {layout.mixture_configs()} nor {layout.searched_configs()}; "
        "rematerialize mixture_configs (or mixture_search)"
    )


def load_spec(storage: StorageRoot, mixture_id: str) -> tuple[MixtureSpec, dict]:
    """The spec of one mixture partition and the configs document (whose ``preset`` fixes the seeds)."""
    return MixtureSpec.from_dict(spec_entry(storage, mixture_id)), configs_doc(storage)


def load_specs(storage: StorageRoot, mixture_ids: list[str]) -> tuple[dict[str, dict], dict]:
    """The spec entries of many mixture partitions (by id, each file read once) and the configs document;
    a ``KeyError`` names the first id registered nowhere."""
    doc = configs_doc(storage)
    entries = {d["mixture_id"]: d for d in doc["configs"] + searched_specs(storage)}
    missing = [m for m in mixture_ids if m not in entries]
    if missing:
        spec_entry(storage, missing[0])  # raises, naming the files
    return {m: entries[m] for m in mixture_ids}, doc


def round_of(entry: dict) -> int | None:
    if "round" in entry:
        return int(entry["round"])
    return 1 if entry.get("origin") == "random_draw" else None


def register_specs(storage: StorageRoot, entries: list[dict]) -> str:
    """Add (or replace, by mixture id) entries in ``searched.json``; returns its URI. Every search round
    and the search itself write it (``shared``: a later writer's version is not damage to an earlier's)."""
    ids = {e["mixture_id"] for e in entries}
    kept = [d for d in searched_specs(storage) if d["mixture_id"] not in ids]
    return storage.write_json(layout.searched_configs(), {"configs": kept + list(entries)}, shared=True)


def training_entries(storage: StorageRoot, up_to_round: int | None = None) -> list[dict]:
    """The configs the regressor learns from: random draws (round 1) and later rounds' proposals, up to
    ``up_to_round``; never baselines (no domains) nor the promoted optimum (judged, not learned from)."""
    out = []
    for d in all_spec_dicts(storage):
        r = round_of(d)
        if d.get("origin") in TRAINING_ORIGINS and d.get("domain_aware", True) and r is not None:
            if up_to_round is None or r <= up_to_round:
                out.append(d)
    return out


def last_round(storage: StorageRoot) -> int:
    rounds = [round_of(d) for d in all_spec_dicts(storage)]
    return max([r for r in rounds if r is not None], default=0)


def scores_card(storage: StorageRoot, mixture_id: str) -> dict:
    """The card ``mixture_scores`` wrote for a mixture (shards, fingerprints, normaliser, sums per domain);
    ``FileNotFoundError`` naming the asset when it has not run."""
    path = layout.mixture_scores_card(mixture_id)
    if not storage.exists(path):
        raise FileNotFoundError(f"mixture {mixture_id} has no scores yet at {storage.uri(path)}: materialize "
                                "mixture_scores (`quadmix run`, or the mixtures group in the UI)")
    return storage.read_json(path)


def drawn_from(storage: StorageRoot, mixture_id: str) -> dict[str, str]:
    """The shards a mixture's scores were computed from, with their fingerprints then."""
    return dict(scores_card(storage, mixture_id)["shard_fingerprints"])
