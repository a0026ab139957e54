"""Operations: the jobs (selections by asset key), the shard sensor, the automation condition sensor and
the ``quadmix_loop`` sensor. Nothing here imports an asset module: jobs and sensors name assets by key
(:mod:`quadmix_assets.keys`)."""
