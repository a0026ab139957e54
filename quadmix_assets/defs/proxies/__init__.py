"""Proxies: the target sets, the proxies' tokenizer, one proxy run per mixture and the noise ceiling."""
