"""Model loading draws no progress bars into the logs; the previous setting comes back afterwards."""

import io

from transformers.utils import logging as hf_logging

from quadmix_assets.scoring.transformer_common import quiet_progress_bars


def test_quiet_progress_bars_while_loading_then_restored():
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    hf_logging.enable_progress_bar()
    with quiet_progress_bars():
        assert not hf_logging.is_progress_bar_enabled()
        assert gguf_utils.tqdm(range(3)).disable  # the GGUF loader's own bar
    assert hf_logging.is_progress_bar_enabled()
    assert not gguf_utils.tqdm(range(3), file=io.StringIO()).disable
    hf_logging.disable_progress_bar()
    with quiet_progress_bars():
        pass
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
