"""The thin Dagster layer: assets, partitions, resources, sensors and schedules calling the library.

One module per stage, in the order data flows: ``corpus`` -> ``labels`` / ``quality`` -> ``normaliser``
-> ``mixtures``; ``automation`` holds the jobs, the shard sensor, the automation condition sensor and
the refresh schedule; ``conditions`` the assets' automation conditions (what is kept current, and why).
"""
