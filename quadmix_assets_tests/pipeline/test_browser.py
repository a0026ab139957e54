"""The Dagster UI as a person uses it: `dagster dev` on loopback over the demo run, driven in headless Chromium.

A copy of the shared demo run (its Dagster home and its storage) is served by ``dagster dev -w workspace.yaml``
on 127.0.0.1 and a free port; Debian's ``/usr/bin/chromium`` (driven by Playwright, no browser download)
materializes ``mixture_configs`` from its asset page and opens one mixture's ``mixture_manifest`` partition and
lineage. Screenshots go to the test's tmp dir, and to ``$QUADMIX_SCREENSHOTS`` when set. The server and all its
child processes (webserver, daemon, code servers, run workers) are stopped in the fixture's teardown.

Without Chromium (or Playwright) the test is skipped, except in CI (``CI`` or ``QUADMIX_REQUIRE_BROWSER=1``,
both set by ``.ci/run``, which installs Debian's chromium), where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef

from quadmix_assets import settings as env
from quadmix_assets.storage import layout

START_TIMEOUT_S = 300  # dagster dev takes 20-60 s to load the code location on 2 busy cores
RUN_TIMEOUT_S = 300
UI_TIMEOUT_MS = 120_000
WORKSPACE = env.REPO_ROOT / "workspace.yaml"


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _browser_missing(reason: str):
    if _truthy("CI") or _truthy("QUADMIX_REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (required here: CI / QUADMIX_REQUIRE_BROWSER; .ci/run installs Debian's chromium)")
    pytest.skip(f"{reason}; install it with `apt-get install chromium` (the `dev` extra has Playwright)")


def _chromium_path() -> str:
    for cand in (os.environ.get("QUADMIX_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    _browser_missing("no Chromium binary (/usr/bin/chromium, or $QUADMIX_CHROMIUM)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``: dagster dev and every process it started."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def _graphql(url: str, query: str, timeout: float = 10) -> dict:
    req = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


LOCATIONS_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


@dataclass
class UiServer:
    url: str
    port: int
    home: Path
    storage: Path
    log: Path
    proc: subprocess.Popen

    def log_tail(self, n: int = 80) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-n:])

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))


def _wait_until_loaded(server: UiServer) -> None:
    """Until the webserver answers GraphQL and the quadmix code location has loaded."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {server.proc.returncode} while starting; its log:\n{server.log_tail()}")
        try:
            entries = _graphql(server.url, LOCATIONS_QUERY)["data"]["workspaceOrError"]["locationEntries"]
        except (urllib.error.URLError, OSError, KeyError, TypeError, ValueError) as exc:
            last = repr(exc)
        else:
            last = json.dumps(entries)
            for e in entries:
                err = e.get("locationOrLoadError") or {}
                if err.get("__typename") == "PythonError":
                    pytest.fail(f"code location {e['name']} failed to load: {err.get('message')}\n{server.log_tail()}")
                if e.get("loadStatus") == "LOADED" and err.get("__typename") == "RepositoryLocation":
                    return
        time.sleep(2)
    pytest.fail(f"dagster dev not ready on {server.url} after {START_TIMEOUT_S} s (last: {last}); its log:\n{server.log_tail()}")


def _stop(server: UiServer) -> None:
    """SIGTERM to dagster dev's process group (it shuts its children down), then SIGKILL to whatever is left."""
    sid = server.proc.pid  # start_new_session: the session (and group) id is dagster dev's pid
    try:
        os.killpg(sid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and (server.proc.poll() is None or _session_pids(sid)):
        time.sleep(0.5)
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (_session_pids(sid) or _port_open(server.port)):
        time.sleep(0.5)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium and Playwright to drive it, checked before anything is started."""
    path = _chromium_path()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _browser_missing("Playwright is not installed (the `dev` extra: `pip install -e .[dev]`)")
    return path


@pytest.fixture(scope="module")
def ui_server(chromium, demo_run, tmp_path_factory):
    """`dagster dev` serving a copy of the demo run (so the shared run is left as it was)."""
    settings, instance, _, _ = demo_run
    assert "://" not in settings.storage_root, "the browser test copies a local storage root"
    root = tmp_path_factory.mktemp("ui")
    home, storage = root / "dagster_home", root / "storage"
    shutil.copytree(instance.root_directory, home)
    shutil.copytree(settings.storage_root, storage)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("QUADMIX_", "DAGSTER_"))}
    child_env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_DISABLE_TELEMETRY="yes",
        QUADMIX_CORPUS=settings.corpus_glob,
        QUADMIX_STORAGE=str(storage),
        QUADMIX_DATA_DIR=settings.data_dir,
        QUADMIX_PRESET=settings.preset,
        QUADMIX_EXECUTOR="in_process",  # one process per run instead of one per step: 2 cores
    )
    port = _free_port()
    log = root / "dagster-dev.log"
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=child_env, cwd=str(root), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = UiServer(f"http://127.0.0.1:{port}", port, home, storage, log, proc)
    try:
        _wait_until_loaded(server)
        yield server
    finally:
        _stop(server)
        leftover = _session_pids(proc.pid)
        assert not leftover, f"dagster dev left processes running: {leftover}"
        assert not _port_open(port), f"something still listens on 127.0.0.1:{port} after stopping dagster dev"
        print(f"\ndagster dev stopped (log: {log})")


@pytest.fixture(scope="module")
def page(chromium, ui_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1600, "height": 1000})
            pg.set_default_timeout(UI_TIMEOUT_MS)
            pg.set_default_navigation_timeout(UI_TIMEOUT_MS)
            yield pg
        finally:
            browser.close()


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")
    if os.environ.get("QUADMIX_SCREENSHOTS"):
        stable = Path(os.environ["QUADMIX_SCREENSHOTS"])
        stable.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, stable / path.name)
        print(f"screenshot: {stable / path.name}")
    return path


def _dismiss_welcome(page) -> None:
    """Dagster's first-visit "Join the Dagster community" dialog, when it will show: Skip, as a person would.

    Whether it shows is asked, not guessed from a short wait: the server answers `shouldShowNux` and the browser
    remembers a dismissal in localStorage (`communityNux`). When both say it will show, it opens 1 s after the page
    has loaded, however slow the machine, so it is waited for as long as any other element."""
    dismissed = page.evaluate("() => window.localStorage.getItem('communityNux')")
    origin = re.match(r"https?://[^/]+", page.url).group(0)
    answer = page.request.post(f"{origin}/graphql", data={"query": "query ShouldShowNux { shouldShowNux }"})
    assert answer.ok, f"graphql answered {answer.status}: {answer.text()[:500]}"
    if dismissed or not answer.json()["data"]["shouldShowNux"]:
        return
    skip = page.get_by_role("dialog").get_by_role("button", name="Skip")
    skip.wait_for(state="visible")
    skip.click()
    skip.wait_for(state="hidden")


def _open_markdown(page, metadata_row):
    """A markdown metadata entry: Dagster shows a short one inline in its row, a long one behind "[Show Markdown]"
    in a dialog. Returns where its text is."""
    from playwright.sync_api import expect

    expect(metadata_row).to_be_visible()
    link = metadata_row.get_by_text("[Show Markdown]")
    if not link.count():
        return metadata_row
    link.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    return dialog


def _close_markdown(page, shown) -> None:
    from playwright.sync_api import expect

    if page.get_by_role("dialog").count():
        page.keyboard.press("Escape")
        expect(shown).to_be_hidden()


def _wait_for_run(server: UiServer, short_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with server.instance() as instance:
        run = None
        while time.monotonic() < deadline:
            run = next((r for r in instance.get_runs(limit=20) if r.run_id.startswith(short_id)), None)
            if run is not None and run.is_finished:
                break
            time.sleep(2)
        assert run is not None, f"run {short_id} never reached the instance\n{server.log_tail()}"
        if run.status != DagsterRunStatus.SUCCESS:
            errors = [
                str(getattr(e.dagster_event.event_specific_data, "error", None) or e.message)
                for e in instance.all_logs(run.run_id)
                if e.is_dagster_event and e.dagster_event.is_failure
            ]
            pytest.fail(f"run {run.run_id} ended {run.status} (waited {RUN_TIMEOUT_S} s): {errors}\n{server.log_tail()}")
        return run.run_id


def test_mixture_partition_page_and_lineage(ui_server, demo_run, page, tmp_path):
    """One mixture's partition page shows its metadata; its lineage shows what it was made from.
    (Runs before the materialize test: a new mixture_configs makes the automation re-request mixtures.)"""
    from playwright.sync_api import expect

    settings = demo_run[0]
    # a baseline: the mixtures a person opens carry their lineage story (the drawn configs do not)
    config = next(c for c in settings.storage().read_json(layout.mixture_configs())["configs"] if c["origin"] == "baseline")
    key = config["mixture_id"]
    with ui_server.instance() as instance:
        assert key in instance.get_dynamic_partitions("mixtures")
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("mixture_manifest"), asset_partitions=[key]), limit=1
        ).records
    assert records, f"the demo run materialized mixture_manifest[{key}]"
    mat = records[0]
    metadata = mat.asset_materialization.metadata

    page.goto(f"{ui_server.url}/assets/mixture_manifest?view=partitions")
    _dismiss_welcome(page)
    page.get_by_placeholder("Filter by name…").first.fill(config["name"])  # the partition list's search box
    page.get_by_text(key, exact=True).first.click()  # the partition, in the list of partitions
    expect(page.get_by_text("Latest materialization").first).to_be_visible()
    expect(page.locator(f'a[href*="/runs/{mat.run_id}"]').first).to_be_visible()

    def row(name: str):
        return page.locator("tr").filter(has=page.get_by_text(name, exact=True)).first

    expect(row("name")).to_contain_text(config["name"])
    expect(row("documents_selected")).to_contain_text(str(metadata["documents_selected"].value))
    expect(row("tokens_after")).to_contain_text(str(metadata["tokens_after"].value))
    _screenshot(page, tmp_path, "mixture_manifest_partition")

    # the mixture's lineage, a markdown metadata entry: what it was made from, read from the event log
    assert "lineage" in metadata, f"mixture_manifest[{key}] records no lineage: {sorted(metadata)}"
    dialog = _open_markdown(page, row("lineage"))
    for shown in (key, config["name"], re.compile("normaliser", re.IGNORECASE), "shard-00000", "shard-00001"):
        expect(dialog).to_contain_text(shown)
    _screenshot(page, tmp_path, "mixture_manifest_lineage_metadata")
    _close_markdown(page, dialog)

    # the asset lineage graph: mixture_manifest and its upstream mixture_scores
    page.get_by_role("tab", name="Lineage").click()
    expect(page).to_have_url(re.compile(r"view=lineage"))
    expect(page.get_by_text("mixture_scores", exact=True).first).to_be_visible()
    _screenshot(page, tmp_path, "mixture_manifest_lineage")


def test_find_a_baseline_by_name_and_read_its_data_and_story(ui_server, demo_run, page, tmp_path):
    """A person types a baseline's name into the mixtures' partition filter, opens it, reads its data view (a table of
    documents from the top, middle and bottom of each domain's rank), its proxy result on the proxy's page, and the
    export's own lineage on the export's page. (Runs before the materialize test, like the one above.)"""
    from playwright.sync_api import expect

    storage = demo_run[0].storage()
    configs = storage.read_json(layout.mixture_configs())["configs"]
    base = next(c for c in configs if c["origin"] == "baseline" and c["name"] == "heuristic-only")
    key, others = base["mixture_id"], [c["mixture_id"] for c in configs if c["name"] != "heuristic-only"]

    def row(name: str):
        return page.locator("tr").filter(has=page.get_by_text(name, exact=True)).first

    def find(asset: str, typed: str, want: str) -> None:
        """On the asset's partitions page, type into the partition filter and open the one partition it leaves."""
        page.goto(f"{ui_server.url}/assets/{asset}?view=partitions")
        _dismiss_welcome(page)
        box = page.get_by_placeholder("Filter by name…").first  # the partition list's search box
        box.fill(typed)
        expect(page.get_by_text(want, exact=True).first).to_be_visible()
        for other in others[:3]:  # what does not match the name is filtered out
            expect(page.get_by_text(other, exact=True)).to_have_count(0)
        page.get_by_text(want, exact=True).first.click()
        expect(page.get_by_text("Latest materialization").first).to_be_visible()

    # the mixture, found by its name: the key carries it
    find("mixture_manifest", "heuristic", key)
    expect(row("name")).to_contain_text("heuristic-only")
    view = _open_markdown(page, row("data_view"))
    expect(view.locator("table").first).to_be_visible()
    for shown in ("band", "top", "middle", "bottom", "copies"):
        expect(view.locator("table").first).to_contain_text(shown)
    _screenshot(page, tmp_path, "baseline_data_view")
    _close_markdown(page, view)

    # its proxy result: the proxy's page for the same partition lists the run's proxies with their target losses
    record = storage.read_json(layout.proxy_run(key))
    find("proxy_run", "heuristic-only", key)
    scope = _open_markdown(page, row("runs"))
    proxy_row = scope.locator("tr").filter(has=page.get_by_text(key, exact=True)).last  # the innermost row
    expect(proxy_row).to_contain_text("heuristic-only")
    expect(proxy_row).to_contain_text(f"{record['target_loss']:.4g}")
    _screenshot(page, tmp_path, "baseline_proxy_result")
    _close_markdown(page, scope)

    # the export records its own part of the story: which mixture, why, from which manifest, with which tokenizer
    with ui_server.instance() as instance:
        exported = instance.get_dynamic_partitions("exports")
    assert exported, "the demo run exported a mixture"
    page.goto(f"{ui_server.url}/assets/mixture_export?view=partitions")
    page.get_by_text(exported[0], exact=True).first.click()
    expect(page.get_by_text("Latest materialization").first).to_be_visible()
    story = _open_markdown(page, row("lineage"))
    for shown in ("Export", exported[0], "Megatron", "tokenizer"):
        expect(story).to_contain_text(shown)
    _screenshot(page, tmp_path, "export_lineage")
    _close_markdown(page, story)


def test_materialize_an_asset_from_its_page(ui_server, page, tmp_path):
    """Materialize on mixture_configs' page launches a run; once it succeeds the page shows its materialization."""
    from playwright.sync_api import expect

    page.goto(f"{ui_server.url}/assets/mixture_configs")
    _dismiss_welcome(page)
    expect(page.get_by_text("Latest materialization").first).to_be_visible()
    with ui_server.instance() as instance:
        before = instance.get_latest_materialization_event(AssetKey("mixture_configs"))
    assert before is not None, "the demo run materialized mixture_configs"

    page.get_by_role("button", name=re.compile(r"(^|\s)Materialize$")).click()
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    expect(toast.first).to_be_visible()
    short_id = re.search(r"Launched run ([0-9a-f]{8})", toast.first.inner_text()).group(1)
    run_id = _wait_for_run(ui_server, short_id)

    with ui_server.instance() as instance:
        latest = instance.get_latest_materialization_event(AssetKey("mixture_configs"))
    assert latest.run_id == run_id != before.run_id

    page.reload()
    _dismiss_welcome(page)
    # the page now shows the new materialization: its run, and metadata written by it (this server's storage)
    expect(page.locator(f'a[href*="/runs/{run_id}"]').first).to_be_visible()
    path_row = page.locator("tr").filter(has=page.get_by_text("path", exact=True))
    expect(path_row.first).to_contain_text(str(ui_server.storage / layout.mixture_configs()))
    new_row = page.locator("tr").filter(has=page.get_by_text("new_partitions", exact=True))
    expect(new_row.first.locator("td").last).to_have_text("0")  # every config was already a partition
    _screenshot(page, tmp_path, "mixture_configs")
