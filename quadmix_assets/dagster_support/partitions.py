"""The dynamic partition sets: one partition per corpus file, one per mixture config, and one per mixture
promoted for export (the search optimum, or the best measured config when the regressor is not promoted),
so the export's partitions are only the mixtures meant to be exported.

Partition keys become file names under the storage root, so quadmix only ever adds safe keys
(:func:`add_partitions` checks each with ``quadmix_assets.storage.check_key``). A key added by hand in
the UI is not checked by Dagster; a run of such a partition is refused when its settings resource is set
up, and again where the path would be built.
"""

from collections.abc import Iterable

from dagster import DagsterInstance, DynamicPartitionsDefinition

from quadmix_assets.storage import check_key

shards_partitions = DynamicPartitionsDefinition(name="shards")
mixtures_partitions = DynamicPartitionsDefinition(name="mixtures")
exports_partitions = DynamicPartitionsDefinition(name="exports")  # keys: mixture keys promoted for export


def checked_keys(keys: Iterable[str], kind: str) -> list[str]:
    """``keys`` as a list, each a safe key (else ``UnsafeKeyError``, and nothing is added)."""
    return [check_key(k, kind) for k in keys]


def add_partitions(instance: DagsterInstance, partitions_def: DynamicPartitionsDefinition, keys: Iterable[str]) -> list[str]:
    """Add the keys of ``partitions_def`` that the instance does not know yet, after checking every one;
    returns the keys added."""
    wanted = checked_keys(keys, partitions_def.name.rstrip("s"))
    known = set(instance.get_dynamic_partitions(partitions_def.name))
    new = [k for k in dict.fromkeys(wanted) if k not in known]
    if new:
        instance.add_dynamic_partitions(partitions_def.name, new)
    return new
