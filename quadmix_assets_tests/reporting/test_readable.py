"""Numbers for people, plain-language failures, the data view's rank bands and the domain palette (no pipeline)."""

from __future__ import annotations

import pytest

from quadmix_assets import cli, errors
from quadmix_assets.lineage import _fmt
from quadmix_assets.reporting.data_view import band_positions, resolve_domain, DataViewError
from quadmix_assets.reporting.numbers import fmt_num, round_sig
from quadmix_assets.reporting.plots import _colors, _line_styles


def test_four_significant_digits():
    assert _fmt(7.0) == "7.000"  # a target loss of 7 no longer prints "7"
    assert [fmt_num(x) for x in (3.258149, 0.00012346, 1234.0, 4706572.3, None, 12, float("nan"))] == [
        "3.258", "0.0001235", "1234", "4,706,572", "-", "12", "nan"]
    assert round_sig({"loss": 3.2581492, "n": 3, "xs": [0.123456]}) == {"loss": 3.258, "n": 3, "xs": [0.1235]}


def test_rank_bands_do_not_overlap():
    b = band_positions(100, 5)
    assert list(b["top"]) == [0, 1, 2, 3, 4] and list(b["bottom"]) == [95, 96, 97, 98, 99]
    assert list(b["middle"]) == [47, 48, 49, 50, 51]
    small = band_positions(7, 3)
    got = [int(p) for k in ("top", "middle", "bottom") for p in small[k]]
    assert sorted(got) == list(range(7)) and len(set(got)) == 7
    assert [len(band_positions(2, 3)[k]) for k in ("top", "middle", "bottom")] == [2, 0, 0]


def test_domain_by_name_prefix_or_index():
    names = ["Adult", "Art & Design", "Crime & Law"]
    assert resolve_domain(names, "2") == 2 and resolve_domain(names, "crime") == 2 and resolve_domain(names, "Adult") == 0
    with pytest.raises(DataViewError, match="give an index"):
        resolve_domain(names, "a")  # ambiguous prefix


def test_24_domains_get_distinct_colours_and_styles():
    colours = _colors(24)
    assert len(set(colours)) == 24
    assert len(set(zip(colours, _line_styles(24)))) == 24
    assert _line_styles(8) == ["-"] * 8


def test_failures_say_what_why_and_what_to_do():
    msg = errors.explain(FileNotFoundError(2, "No such file or directory", "/x/corpus.jsonl"), what="reading the corpus")
    assert msg.startswith("reading the corpus failed: No such file or directory: /x/corpus.jsonl.")
    assert "To fix:" in msg and "FileNotFoundError" not in msg
    assert "--preset" in errors.explain_error("OutOfMemoryError", "CUDA out of memory. Tried to allocate 2 GiB")
    assert "verbose" in errors.explain(ValueError("odd value"))  # no specific advice: how to see more
    advised = errors.plain(None, "no documents; run `quadmix run` first", ["ValueError"])
    assert advised == "no documents; run `quadmix run` first."  # already says what to do
    errors.set_verbose(True)
    try:
        assert errors.explain(ValueError("odd value")).endswith("[ValueError]")
    finally:
        errors.set_verbose(False)


def test_cli_top_level_error_is_one_plain_line(monkeypatch, capsys):
    def boom(args):
        raise PermissionError(13, "Permission denied", "/data/storage/x.parquet")

    monkeypatch.setattr(cli, "cmd_show", boom)
    assert cli.main(["show", "random"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("quadmix show: Permission denied: /data/storage/x.parquet. To fix: choose a folder you can write")
    assert "Traceback" not in err and "PermissionError" not in err
    assert cli.main(["show", "random", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "[PermissionError]" in err and "Traceback" in err
    errors.set_verbose(False)
