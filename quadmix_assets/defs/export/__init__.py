"""Export: a promoted mixture written for training (text shards, a Megatron indexed dataset), its check."""
