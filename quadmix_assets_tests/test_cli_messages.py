"""What the ``quadmix`` command tells its user (no pipeline run): plain --help texts, errors that say what
to do or name the underlying error, a wrong corpus glob never saved as the last run's settings, ``quadmix
sql`` refusing a storage folder that does not exist, and the environment ``quadmix ui`` gives Dagster."""

from __future__ import annotations

import json

import pytest

from quadmix_assets import cli, errors
from quadmix_assets.dagster_support.resources import QuadmixSettings, launch_environment


def _subparsers(parser):
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return action.choices


def test_every_help_text_is_plain_and_every_run_option_is_explained():
    parser = cli.build_parser()
    texts = {"quadmix": parser.format_help(), **{name: p.format_help() for name, p in _subparsers(parser).items()}}
    assert set(texts) >= {"quadmix", "run", "ui", "lineage", "show", "sql", "compare"}
    for name, text in texts.items():
        assert "``" not in text, name
    run = _subparsers(parser)["run"]
    explained = {opt: a.help for a in run._actions for opt in a.option_strings}  # noqa: SLF001
    for opt in ("--preset", "--text-field", "--id-field", "--export-tokenizer", "--corpus", "--storage"):
        assert explained[opt] and len(explained[opt]) > 20, opt
    ui = _subparsers(parser)["ui"]
    assert all(a.help for a in ui._actions if a.option_strings and a.dest != "help")  # noqa: SLF001


def test_an_error_without_advice_names_the_underlying_error_not_rerun_with_verbose():
    def fails():
        raise ValueError("odd value")

    with pytest.raises(ValueError) as info:
        fails()
    msg = errors.explain(info.value, what="scoring")
    assert msg.startswith("scoring failed: odd value.")
    assert "rerun with --verbose" not in msg and "To fix" not in msg
    assert f"ValueError at quadmix_assets_tests/test_cli_messages.py:{fails.__code__.co_firstlineno + 1}" in msg
    # a recorded failure (no traceback): its class
    assert "The error: KeyError" in errors.explain_error("KeyError", "'x'")
    # advice where there is some
    bad_glob = errors.explain(ValueError("corpus glob '/nowhere/*.jsonl' matched no shard files"))
    assert "To fix: give --corpus" in bad_glob and "The error" not in bad_glob


def test_a_wrong_corpus_glob_fails_with_a_fix_and_is_not_saved_as_the_last_run(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # cmd_run sets it; restored after the test
    home.mkdir()
    before = {"QUADMIX_CORPUS": "/data/good/*.jsonl.gz", "QUADMIX_STORAGE": str(tmp_path / "storage")}
    (home / cli.LAST_RUN).write_text(json.dumps(before))
    code = cli.main(["run", "--corpus", str(tmp_path / "nothing" / "*.jsonl.gz"), "--storage", str(tmp_path / "storage"),
                     "--dagster-home", str(home), "--preset", "test", "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "matched no shard files" in err and "To fix: give --corpus" in err, err
    assert json.loads((home / cli.LAST_RUN).read_text()) == before  # the last good run's settings are kept


def test_sql_refuses_a_storage_folder_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "no-such-storage"
    assert cli.main(["sql", "SELECT count(*) FROM documents", "--storage", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"quadmix sql: no storage at {missing}") and "--storage" in err
    assert not missing.exists()  # nothing created


def test_ui_environment_is_the_last_runs_settings(tmp_path):
    """Every setting ``quadmix run`` saved replaces the one in the environment; a setting variable the last
    run did not set is removed; other variables pass through; without a saved run nothing changes."""
    settings = QuadmixSettings.from_env(corpus_glob="/c/*.jsonl", storage_root="/s", data_dir="/d", preset="test",
                                        text_field="body", id_field="doc_id", export_tokenizer="bundled:smollm2",
                                        max_json_depth=7)
    saved = launch_environment(settings)
    assert saved["QUADMIX_TEXT_FIELD"] == "body" and saved["QUADMIX_ID_FIELD"] == "doc_id"
    assert saved["QUADMIX_EXPORT_TOKENIZER"] == "bundled:smollm2" and saved["QUADMIX_MAX_JSON_DEPTH"] == "7"
    environ = {"PATH": "/bin", "QUADMIX_TEXT_FIELD": "text", "QUADMIX_CONFIGS": "99", "QUADMIX_REOPTIMISE": "always"}
    assert cli.ui_environment(str(tmp_path), environ) == (environ, {})
    (tmp_path / cli.LAST_RUN).write_text(json.dumps(saved))
    child, last = cli.ui_environment(str(tmp_path), environ)
    assert last == saved
    assert child == {"PATH": "/bin", **saved}  # QUADMIX_CONFIGS and QUADMIX_REOPTIMISE were not the last run's
