"""Real-browser fixtures, in the style of Streamlit's e2e_playwright: start the app, wait for it."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "tests" / "e2e" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The browser tests' demo cohort: the generator's formats and all ten tissues, but 5 donors of 2048x1536 slides
# (~40 slides) instead of the default 20 donors of 3072x2048 (~160): generating and tiling it take seconds.
E2E_DEMO_OPTIONS = ["--donors", "5", "--size", "2048x1536"]


def _run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temp folder of this whole pytest run: shared by its xdist workers (each has its own basetemp below it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def e2e_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo cohort generated once per run by the CLI; with xdist the first worker makes it while the others
    wait on a lock (the CLI itself refuses a second demo job in the workspace). Read-only: each worker's workspace
    links its files."""
    root = _run_root(tmp_path_factory) / "e2e-demo-workspace"
    root.mkdir(parents=True, exist_ok=True)
    with open(root.parent / "e2e-demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(
            [sys.executable, "-m", "core", "--workspace", str(root), "demo", *E2E_DEMO_OPTIONS],
            cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL,
        )
    return root / "demo"


def workspace_with_demo(e2e_demo: Path, root: Path) -> Path:
    """A fresh workspace at `root` whose demo folder hard-links the shared cohort's files (nothing writes them)."""
    shutil.copytree(e2e_demo, root / "demo", copy_function=os.link)
    return root


@pytest.fixture(scope="session")
def e2e_workspace(e2e_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workspace per worker for the browser tests, holding the demo cohort (its jobs and runs stay its own)."""
    return workspace_with_demo(e2e_demo, tmp_path_factory.mktemp("e2e") / "workspace")


def _start_app(ws_root: Path) -> tuple[subprocess.Popen, int]:
    """`streamlit run app.py` on a free port, once it accepts connections. Under xdist another worker may take the
    port between our probe and streamlit's bind: then streamlit exits and we try another port."""
    env = {**os.environ, "HISTOGENE_WORKSPACE": str(ws_root)}
    env.pop("HISTOGENE_DATA", None)
    for _ in range(3):
        port = _free_port()
        log = (ws_root / f"streamlit-{port}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        time.sleep(0.2)  # a server that lost the port has exited by now, even if another one answered there
        if proc.poll() is None:
            return proc, port
    raise RuntimeError(f"streamlit exited early; see {log.name}")


@contextmanager
def running_app(ws_root: Path) -> Iterator[str]:
    """`streamlit run app.py` on 127.0.0.1 with the given workspace; its URL, stopped on exit."""
    proc, port = _start_app(ws_root)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def app_url(e2e_workspace: Path) -> Iterator[str]:
    with running_app(e2e_workspace) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not installed at {CHROMIUM} (make test installs Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def wait_for_app(page, timeout: float = 120_000) -> None:
    """Wait until Streamlit has finished running the script (data-test-script-state)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)


def assert_no_exception(page) -> None:
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


def screenshot(page, name: str) -> Path:
    """The whole page: Streamlit scrolls inside its main container, so grow the viewport to fit it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector(\"[data-testid='stMain']\")?.scrollHeight || 0")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height), 8000))})
    page.wait_for_timeout(800)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return path
