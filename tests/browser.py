"""Support for tests/test_browser.py: a private JupyterLab server, headless Chromium, and reading the notebook's DOM.

Nothing here reads the user's Jupyter set-up: the server gets its own config, data, runtime, settings, workspace and
IPython folders, and a random token. It is stopped by its own process id.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# root in a container: Chromium's own sandbox cannot start there; the rest keeps it from reaching the network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VENV_BIN = Path(sys.executable).parent
# JupyterLab settings that keep the page stable: every cell stays in the DOM (the default windowing drops or hides
# cells far from the viewport, so their outputs could not be read), and no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}
# Variables of the user's environment that would change what the kernel does.
DROPPED_ENV = ("MPLBACKEND", "NBGRADER_EXECUTION", "BACKPROP_NINJA_NAMES", "BACKPROP_NINJA_STEPS",
               "BACKPROP_NINJA_SOLUTIONS", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH")
STDERR = "[data-mime-type='application/vnd.jupyter.stderr']"


def chromium_path() -> str:
    """Debian's chromium; a clear failure (never a skip) where it is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's chromium (apt-get install -y chromium); "
                    "playwright's own browser download is not used.", pytrace=False)
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment for the server (and its kernels) and for nbgrader: the venv first on PATH (nbgrader calls
    `alembic`), and private Jupyter folders."""
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               MPLCONFIGDIR=str(home / "matplotlib"), PYTHONUNBUFFERED="1", **extra)
    return env


class Lab:
    """JupyterLab from this venv, serving `root`, with its own Jupyter folders under `home`."""

    def __init__(self, root: Path, home: Path, extra_env: dict[str, str]):
        self.root, self.home = root, home
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        for name, value in LAB_SETTINGS.items():
            target = home / "settings" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(value))
        self.env = private_env(home, extra_env)
        self.log_path = home / "lab.log"
        self.log = open(self.log_path, "wb")
        # cwd is the student's folder, as when a student starts Jupyter there (nbgrader reads its config from cwd)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}"],
            cwd=root, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout=90)

    def _api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._api("/api/status")
                return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"JupyterLab did not start within {timeout} s; its log: {self.log_path}\n"
                            + self.log_path.read_text(errors="replace")[-3000:], pytrace=False)
            time.sleep(0.3)

    def notebook_url(self, name: str) -> str:
        # ?reset: no saved workspace, so only this notebook opens
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def stop(self) -> None:
        """Shut the kernels down through the API (they are the server's children), then end the server by its PID."""
        if self.proc.poll() is None:
            try:
                for kernel in self._api("/api/kernels") or []:
                    self._api(f"/api/kernels/{kernel['id']}", method="DELETE")
            except OSError:
                pass  # the server's own shutdown below ends its kernels too
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


class Screenshots:
    """Full-page screenshots taken when a step fails; the failure message names their folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.count = 0

    def take(self, page, name: str) -> Path | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count += 1
        path = self.folder / f"{self.count:02d}_{name}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
        except Exception:  # a broken screenshot must not hide the real failure
            return None
        return path

    def fail(self, page, step: str, message: str, focus=None):
        """Screenshot (with `focus`, a locator, scrolled into view) and fail with a message naming the folder."""
        if focus is not None:
            try:
                focus.scroll_into_view_if_needed(timeout=5_000)
            except Exception:
                pass
        shot = self.take(page, step)
        where = f"Screenshot: {shot}" if shot else f"(the screenshot failed; folder {self.folder})"
        pytest.fail(f"[{step}] {message}\n{where}", pytrace=False)


class Notebook:
    """One notebook open in JupyterLab: its cells by index (every cell is in the DOM: windowingMode none)."""

    def __init__(self, page, shots: Screenshots, name: str):
        self.page, self.shots, self.name = page, shots, name

    def cells(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def cell(self, index: int):
        return self.cells().nth(index)

    def outputs(self, index: int):
        return self.cell(index).locator(".jp-OutputArea-output")

    def output_text(self, index: int) -> str:
        return "\n".join(self.outputs(index).all_inner_texts())

    def error_text(self, index: int) -> str:
        return "\n".join(self.cell(index).locator(f".jp-OutputArea-output{STDERR}").all_inner_texts()).strip()

    def fail(self, step: str, message: str, index: int | None = None):
        self.shots.fail(self.page, f"{self.name}_{step}", message,
                        focus=None if index is None else self.cell(index))

    # -- the kernel and Run All -----------------------------------------------------------------------------------

    def kernel_status(self) -> str:
        indicator = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
        return (indicator.first.get_attribute("data-status", timeout=5_000) or "") if indicator.count() else ""

    def queued(self) -> int:
        """Cells waiting for or in execution (their prompt shows [*])."""
        prompts = self.cells().locator(".jp-InputArea-prompt")
        return sum(1 for text in prompts.all_inner_texts() if "*" in text)

    def open(self, url: str, expected_cells: int, timeout_s: float = 120) -> None:
        self.page.goto(url)
        deadline = time.monotonic() + timeout_s
        while self.cells().count() < expected_cells or self.kernel_status() != "idle":
            if time.monotonic() > deadline:
                self.fail("open", f"the notebook did not open with {expected_cells} cells and an idle kernel within "
                                  f"{timeout_s} s (cells in the DOM: {self.cells().count()}, kernel: "
                                  f"{self.kernel_status()!r})")
            time.sleep(0.5)
        if self.cells().count() != expected_cells:
            self.fail("open", f"{self.cells().count()} cells in the DOM, but the notebook has {expected_cells}")

    def run_all(self, tries: int = 3, start_s: float = 8) -> None:
        """Run All from the Run menu. Under load the first request can be lost (seen in CI: every cell still [ ]
        and the kernel idle), so it is asked again, up to `tries` times, when no cell has started within
        `start_s` seconds."""
        before = self.executed()
        for _ in range(tries):
            self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            self.page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            deadline = time.monotonic() + start_s
            while time.monotonic() < deadline:
                if self.queued() or self.kernel_status() == "busy" or self.executed() > before:
                    return
                time.sleep(0.25)

    def run_cell(self, index: int) -> None:
        """Run one cell as a student does: click into it, then Ctrl+Enter (run, stay on the cell)."""
        cell = self.cell(index)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputArea-editor").first.click()
        self.page.keyboard.press("Control+Enter")

    def executed(self) -> int:
        """Cells in view whose prompt shows an execution count."""
        prompts = self.cells().locator(".jp-InputArea-prompt")
        return sum(1 for text in prompts.all_inner_texts() if any(ch.isdigit() for ch in text))

    def first_error(self) -> str:
        """The first error-looking stderr output in the notebook, for a failure message."""
        for index in range(self.cells().count()):
            text = self.error_text(index)
            if text and ("Error" in text or "Exception" in text or "CheckFailed" in text):
                return f"cell {index}: {text[:800]}"
        return "no error output"

    def wait_for(self, index: int, selector: str, what: str, timeout_s: float) -> None:
        """Wait until cell `index` shows `selector` in its outputs. Fails fast, naming the first error, when the run
        has stopped (no cell queued and the kernel idle for three seconds in a row) without it."""
        target = self.cell(index).locator(f".jp-OutputArea-output {selector}, .jp-OutputArea-output{selector}")
        deadline, stopped_since = time.monotonic() + timeout_s, None
        while not target.count():
            now = time.monotonic()
            if self.queued() == 0 and self.kernel_status() == "idle":
                stopped_since = stopped_since or now
                if now - stopped_since > 3:
                    self.fail("wait", f"the run stopped before cell {index} showed {what}; first error: "
                                      f"{self.first_error()}", index)
            else:
                stopped_since = None
            if now > deadline:
                self.fail("wait", f"cell {index} did not show {what} within {timeout_s} s (kernel "
                                  f"{self.kernel_status()!r}, {self.queued()} cells queued); first error: "
                                  f"{self.first_error()}", index)
            time.sleep(0.5)

    def wait_until_finished(self, timeout_s: float) -> None:
        """Wait until no cell is queued and the kernel is idle."""
        deadline = time.monotonic() + timeout_s
        while self.queued() or self.kernel_status() != "idle":
            if time.monotonic() > deadline:
                self.fail("finish", f"the run did not finish within {timeout_s} s ({self.queued()} cells queued, "
                                    f"kernel {self.kernel_status()!r})")
            time.sleep(0.5)


def nbgrader_validate(notebook: Path, env: dict[str, str], timeout_s: float = 240) -> str:
    """nbgrader's Validate on the command line, in the notebook's folder; its output. (It always exits 0.)"""
    done = subprocess.run([str(VENV_BIN / "nbgrader"), "validate", notebook.name], cwd=notebook.parent, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    return done.stdout + done.stderr


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
