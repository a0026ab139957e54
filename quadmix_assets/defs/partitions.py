"""The two dynamic partition sets: one partition per corpus file, one per mixture config."""

from dagster import DynamicPartitionsDefinition

shards_partitions = DynamicPartitionsDefinition(name="shards")
mixtures_partitions = DynamicPartitionsDefinition(name="mixtures")
