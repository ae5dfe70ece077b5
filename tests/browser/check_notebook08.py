"""Notebook 08's widgets in a real browser (``make test-browser``; not part of ``make test``).

Steps, each timed and failing with its own message:

1. prerequisites: Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``),
   PyPI ``selenium`` (the project's ``browser`` extra), JupyterLab, ipywidgets, papermill. The driver is given
   by path, so Selenium Manager is never run and nothing is downloaded.
2. a copy of ``notebooks/08_ablations.ipynb`` in a temporary folder with the CI-sized parameters of
   ``tests/test_notebooks.py`` injected by papermill (no execution: JupyterLab runs it), and a ``python3`` kernel
   spec for this interpreter with no ``MPLBACKEND``, so the kernel uses matplotlib's inline backend as a user's
   does (the widget's plot is a PNG inside an ipywidgets ``Output``).
3. JupyterLab, headless, on a free loopback port with a random token and fresh settings / workspace folders.
4. headless Chromium opens the notebook and runs all cells from the "Run" menu; the run stops at the first cell
   error, which is reported with its traceback.
5. the widgets of ``AblationExplorer.widget()`` render (dropdowns, row list, slider, button, plot image).
6. each control is moved as a user would and the plot must redraw (its PNG changes): the metric dropdown, the
   table dropdown, one row of the row list; then the "more steps" slider goes to its minimum (10) and
   "Continue training" trains the selected variant, after which the plot must redraw (``--no-train`` skips it).
   Then the phenomenon widget (``ablation_knobs.KnobExplorer``): its strength slider goes to its maximum and
   "Rebuild & retrain" builds a small corpus, trains two variants and must redraw the gap plot (also skipped by
   ``--no-train``).
7. JupyterLab is shut down through its REST API (kernels first) and must exit.

Screenshots (whole page and the widget cell) go to ``--out`` (default ``runs/browser``); what was seen is printed.
Run: ``.venv/bin/python tests/browser/check_notebook08.py [--out DIR] [--corpus DIR] [--keep]``.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "08_ablations.ipynb"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = ("install them with `make test-browser` (as root it runs `apt-get install chromium chromium-driver` "
                "and `pip install -e '.[browser]'`)")


class CheckFailed(Exception):
    pass


class Check:
    """The steps, their timings, the screenshots and the running JupyterLab / browser (for cleanup)."""

    def __init__(self, out: Path, work: Path):
        self.out, self.work = out, work
        self.driver = None
        self.server: subprocess.Popen | None = None
        self.port, self.token = 0, secrets.token_hex(16)
        self.n_step, self.seen = 0, []
        self.t0 = time.time()

    @contextmanager
    def step(self, name: str):
        self.n_step += 1
        t = time.time()
        print(f"[{self.n_step}] {name} ...", flush=True)
        try:
            yield
        except CheckFailed as e:
            raise CheckFailed(f"step {self.n_step} ({name}) failed: {e}") from None
        except Exception as e:  # an unexpected error of selenium / jupyter: say which step
            raise CheckFailed(f"step {self.n_step} ({name}) failed with {type(e).__name__}: {e}\n"
                              f"{traceback.format_exc()}") from None
        print(f"[{self.n_step}] {name}: ok ({time.time() - t:.0f} s)", flush=True)

    def say(self, line: str):
        print("    " + line, flush=True)
        self.seen.append(line)

    def shot(self, name: str, element=None) -> Path:
        """A screenshot of the page (and of ``element`` as ``<name>-cell.png``)."""
        path = self.out / f"{name}.png"
        self.driver.save_screenshot(str(path))
        if element is not None:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
            time.sleep(0.5)
            element.screenshot(str(self.out / f"{name}-cell.png"))
        self.say(f"screenshot {path}")
        return path

    # --- JupyterLab ------------------------------------------------------------------------------------------
    def api(self, method: str, path: str, timeout: float = 10):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 25) -> str:
        log = self.work / "jupyterlab.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else "(no log)"

    def stop_server(self) -> int | None:
        """Shut the kernels and the server down through the REST API; terminate it only if that fails."""
        if self.server is None or self.server.poll() is not None:
            return None if self.server is None else self.server.returncode
        try:
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
            self.api("POST", "/api/shutdown")
        except Exception as e:
            print(f"    REST shutdown failed ({e}); terminating the server process", flush=True)
            self.server.terminate()
        try:
            return self.server.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
            raise CheckFailed("JupyterLab did not exit within 120 s of /api/shutdown; killed it")

    # --- the notebook in the browser -------------------------------------------------------------------------
    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def cells_state(self) -> dict:
        """Per code cell of the open notebook: execution count, running or not, error (from the cell models)."""
        return self.js("""
            const panel = window.jupyterapp.shell.currentWidget;
            const cells = panel.content.widgets.map((cell, i) => {
              if (cell.model.type !== 'code') return null;
              const outputs = cell.model.outputs.toJSON();
              const err = outputs.find(o => o.output_type === 'error');
              const prompt = cell.node.querySelector('.jp-InputArea-prompt');
              return {index: i, count: cell.model.executionCount,
                      running: cell.model.executionState === 'running' || (prompt && prompt.textContent.includes('*')),
                      error: err ? {ename: err.ename, evalue: err.evalue, traceback: err.traceback} : null,
                      source: cell.model.sharedModel.getSource().slice(0, 80)};
            }).filter(c => c !== null);
            const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
            return {cells: cells, kernel: kernel ? kernel.status : 'none'};""")

    def cell_node(self, index: int):
        return self.js("""
            const panel = window.jupyterapp.shell.currentWidget;
            const cell = panel.content.widgets[arguments[0]];
            panel.content.activeCellIndex = arguments[0];
            cell.node.scrollIntoView({block: 'start'});
            return cell.node;""", index)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, fn, timeout_s: float, every_s: float = 0.5):
    """``fn()`` until truthy (its value is returned); CheckFailed naming ``what`` after ``timeout_s``."""
    end = time.time() + timeout_s
    last_err = None
    while time.time() < end:
        try:
            value = fn()
            if value:
                return value
        except CheckFailed:
            raise
        except Exception as e:  # stale elements while JupyterLab re-renders
            last_err = e
        time.sleep(every_s)
    raise CheckFailed(f"timed out after {timeout_s:.0f} s waiting for {what}"
                      + (f" (last error: {type(last_err).__name__}: {last_err})" if last_err else ""))


def image_key(src: str) -> str:
    """A short hash of an <img> src (a data: URI of the PNG)."""
    return hashlib.sha1(src.encode()).hexdigest()[:10]


def png_size(src: str) -> tuple[int, int] | None:
    if not src.startswith("data:image/png;base64,"):
        return None
    head = base64.b64decode(src.split(",", 1)[1][:64] + "==")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def prepare(check: Check, corpus: str | None) -> dict:
    """The parameterized notebook copy and the kernel spec (step 2)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_notebooks import CI_PARAMETERS  # the CI-sized parameters, one place

    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    params = dict(CI_PARAMETERS["08_ablations"])
    params["CORPUS_DIR"] = corpus or str(check.work / "corpus")
    params["OUT_DIR"] = str(check.work / "ablation-runs")
    nb = load_notebook_node(str(NOTEBOOK))  # papermill's reader (it gives every cell a tags list)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (sadtalker-lab browser check)",
                                 "language": "python"}
    nb = parameterize_notebook(nb, params, kernel_name="python3", language="python")
    (check.work / "nb").mkdir()
    nbformat.write(nb, check.work / "nb" / NOTEBOOK.name)
    spec = check.work / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (sadtalker-lab browser check)", "language": "python"}))
    settings = check.work / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    return params


def run(args) -> Check:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="sadtalker-browser-"))
    check = Check(out, work)
    print(f"notebook 08 in headless Chromium; screenshots in {out}; work folder {work}", flush=True)
    try:
        _run(check, args)
    except CheckFailed:
        if check.driver is not None:
            try:
                check.driver.save_screenshot(str(out / "failed.png"))
                print(f"    screenshot of the failure: {out / 'failed.png'}", flush=True)
            except Exception:
                pass
        raise
    finally:
        if check.driver is not None:
            try:
                check.driver.quit()
            except Exception as e:
                print(f"    closing Chromium failed: {e}", flush=True)
        if check.server is not None and check.server.poll() is None:
            print("    stopping JupyterLab after a failure ...", flush=True)
            try:
                check.stop_server()
            except Exception as e:
                print(f"    {e}", flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return check


def _run(check: Check, args):
    with check.step("prerequisites (chromium, chromedriver, selenium, jupyterlab, ipywidgets, papermill)"):
        missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
        for module in ("selenium", "jupyterlab", "ipywidgets", "papermill", "nbformat"):
            try:
                __import__(module)
            except ImportError:
                missing.append(f"python module {module}")
        if missing:
            raise CheckFailed(f"missing: {', '.join(missing)}; {INSTALL_HINT}")
        import ipywidgets
        import selenium

        version = subprocess.run([CHROMEDRIVER, "--version"], capture_output=True, text=True).stdout.strip()
        try:
            import ipympl  # noqa: F401
            mpl = "ipympl installed (notebook 08 does not use it)"
        except ImportError:
            mpl = "no ipympl: the widget plots with matplotlib's inline backend into a widgets.Output"
        check.say(f"{version}; selenium {selenium.__version__}; ipywidgets {ipywidgets.__version__}; {mpl}")

    with check.step("notebook copy with the CI-sized parameters (papermill injection) and a kernel spec"):
        params = prepare(check, args.corpus)
        check.say(f"parameters: {params}")

    with check.step("start JupyterLab (headless, loopback, token)"):
        check.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
        env.update(JUPYTER_PATH=os.pathsep.join([str(check.work / "jupyter")] + ([env["JUPYTER_PATH"]]
                                                                                  if env.get("JUPYTER_PATH") else [])),
                   JUPYTERLAB_SETTINGS_DIR=str(check.work / "lab-settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(check.work / "lab-workspaces"),
                   JUPYTER_RUNTIME_DIR=str(check.work / "runtime"), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={check.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={check.token}", f"--ServerApp.root_dir={check.work / 'nb'}",
               "--LabApp.expose_app_in_browser=True"] + (["--ServerApp.allow_root=True"] if os.geteuid() == 0 else [])
        log = open(check.work / "jupyterlab.log", "w")
        check.server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=check.work / "nb")

        def up():
            if check.server.poll() is not None:
                raise CheckFailed(f"JupyterLab exited with {check.server.returncode}:\n{check.log_tail()}")
            try:
                return check.api("GET", "/api/status")
            except OSError:
                return None
        try:
            wait_for("JupyterLab's /api/status", up, 120)
        except CheckFailed as e:
            raise CheckFailed(f"{e}\n{check.log_tail()}") from None
        check.say(f"JupyterLab on http://127.0.0.1:{check.port}/lab (pid {check.server.pid})")

    with check.step("open notebook 08 in headless Chromium"):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1100", "--no-first-run", "--disable-extensions"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
        # the driver by path: Selenium Manager (which may download browsers / drivers) is skipped
        check.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        check.driver.get(f"http://127.0.0.1:{check.port}/lab/tree/{NOTEBOOK.name}?token={check.token}")
        wait_for("the JupyterLab app (window.jupyterapp)",
                 lambda: check.js("return !!(window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                  "&& window.jupyterapp.shell.currentWidget.content "
                                  "&& window.jupyterapp.shell.currentWidget.content.widgets.length)"), 120)
        wait_for("the kernel to start (status idle)", lambda: check.cells_state()["kernel"] == "idle", 120)
        state = check.cells_state()
        check.say(f"opened {NOTEBOOK.name}: {len(state['cells'])} code cells, kernel {state['kernel']}")
        check.shot("01-opened")

    with check.step("Run > Run All Cells"):
        from selenium.webdriver.common.by import By

        menu = wait_for("the 'Run' menu", lambda: [e for e in check.driver.find_elements(
            By.CSS_SELECTOR, ".lm-MenuBar-item") if e.text.strip() == "Run"], 30)
        menu[0].click()
        item = wait_for("'Run All Cells' in the Run menu", lambda: [e for e in check.driver.find_elements(
            By.CSS_SELECTOR, ".lm-Menu-item") if e.text.strip().startswith("Run All Cells")], 10)
        item[0].click()
        t, reported = time.time(), set()

        def finished():
            state = check.cells_state()
            for c in state["cells"]:
                if c["count"] and not c["running"] and c["index"] not in reported:
                    reported.add(c["index"])
                    print(f"    cell {c['index']} [{c['count']}] done at {time.time() - t:.0f} s: "
                          f"{c['source'].splitlines()[0] if c['source'] else ''}", flush=True)
            errors = [c for c in state["cells"] if c["error"]]
            busy = any(c["running"] for c in state["cells"]) or state["kernel"] == "busy"
            if errors and not busy:
                e = errors[0]
                trace = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", "\n".join(e["error"]["traceback"]))
                raise CheckFailed(f"cell {e['index']} raised {e['error']['ename']}: {e['error']['evalue']}\n{trace}")
            return not busy and all(c["count"] for c in state["cells"])
        wait_for(f"all cells to run (limit {args.run_timeout_s} s)", finished, args.run_timeout_s, every_s=3)
        check.say(f"all {len(reported)} code cells ran in {time.time() - t:.0f} s without an error")

    with check.step("the explorer's widgets render"):
        index = next(c["index"] for c in check.cells_state()["cells"]
                     if "AblationExplorer(" in c["source"] or "explorer.widget()" in c["source"])
        w = Widgets(check, index)
        wait_for("the widgets (2 dropdowns, a row list, a slider, a button) in the explorer cell", w.ready, 60)
        src = wait_for("the plot image inside the widgets' Output", w.image, 60)
        for label in ("table", "metric"):
            if not w.dropdown(label).all_selected_options:
                raise CheckFailed(f"the {label!r} dropdown shows no selected value (options: "
                                  f"{[o.text for o in w.dropdown(label).options]})")
        check.say(f"widgets: table={w.dropdown('table').first_selected_option.text!r}, "
                  f"metric={w.dropdown('metric').first_selected_option.text!r}, "
                  f"{len(w.rows().options)} rows, slider {w.slider_value()}, button {w.button().text!r}; "
                  f"plot {png_size(src)} px, sha1 {image_key(src)}")
        problems = w.problems()
        if problems:
            raise CheckFailed(f"the widget cell shows: {problems}")
        check.shot("02-widgets", w.cell())

    with check.step("metric dropdown -> the plot redraws"):
        before = w.image()
        select = w.dropdown("metric")
        old = select.first_selected_option.text
        choice = next(i for i, o in enumerate(select.options) if o.text != old)
        select.select_by_index(choice)
        w.wait_redraw(before, f"metric {old!r} -> {select.options[choice].text!r}")
        check.shot("03-metric", w.cell())

    with check.step("table dropdown -> rows and plot change"):
        before, rows_before = w.image(), [o.text for o in w.rows().options]
        select = w.dropdown("table")
        old = select.first_selected_option.text
        choice = next(i for i, o in enumerate(select.options) if o.text != old)
        select.select_by_index(choice)
        w.wait_redraw(before, f"table {old!r} -> {select.options[choice].text!r}")
        rows_after = wait_for("the row list to change", lambda: [o.text for o in w.rows().options]
                              if [o.text for o in w.rows().options] != rows_before else None, 30)
        check.say(f"rows now: {rows_after}")
        check.shot("04-table", w.cell())

    with check.step("pick one row -> the plot redraws"):
        before = w.image()
        from selenium.webdriver import ActionChains

        option = w.rows().options[0]
        name = option.text
        # a mouse click without modifiers selects only this row (WebElement.click() on an option of a multiple
        # select toggles it instead)
        ActionChains(check.driver).move_to_element(option).click().perform()
        wait_for("the row list to hold one selected row", lambda: len(w.rows().all_selected_options) == 1, 10)
        w.wait_redraw(before, f"rows -> [{name!r}]")
        selected = [o.text for o in w.rows().all_selected_options]
        check.say(f"selected rows: {selected}")
        if len(selected) != 1:
            raise CheckFailed(f"clicking one row left {len(selected)} rows selected: {selected}")
        check.shot("05-one-row", w.cell())

    if args.no_train:
        return _stop(check)
    with check.step("slider to its minimum, 'Continue training' -> trains and redraws"):
        from selenium.webdriver.common.keys import Keys

        before, old = w.image(), w.slider_value()
        handle = w.cell().find_element(By.CSS_SELECTOR, ".widget-hslider .noUi-handle, .widget-hslider [role=slider]")
        handle.click()
        handle.send_keys(Keys.HOME)
        if w.slider_value() == old:  # no keyboard support: drag it to the left end
            from selenium.webdriver import ActionChains

            ActionChains(check.driver).drag_and_drop_by_offset(handle, -400, 0).perform()
        value = wait_for("the slider to move", lambda: w.slider_value() if w.slider_value() != old else None, 10)
        check.say(f"slider 'more steps': {old} -> {value}")
        w.button().click()
        t = time.time()
        w.wait_redraw(before, f"'Continue training' ({value} more steps)", timeout_s=args.train_timeout_s)
        check.say(f"training and redraw took {time.time() - t:.0f} s")
        problems = w.problems()
        if problems:
            raise CheckFailed(f"after training the widget cell shows: {problems}")
        check.shot("06-trained", w.cell())
    _knob(check, args)
    _stop(check)


def _knob(check: Check, args):
    """Notebook 08's phenomenon widget (``ablation_knobs.KnobExplorer``): strength to its maximum, "Rebuild &
    retrain" builds a small corpus, trains the two variants of the ablation and must redraw the gap plot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with check.step("phenomenon knob: strength to its maximum, 'Rebuild & retrain' -> a gap point is plotted"):
        index = next(c["index"] for c in check.cells_state()["cells"] if "KnobExplorer(" in c["source"])
        k = Widgets(check, index)
        wait_for("the knob widgets (a dropdown, a slider, a button)",
                 lambda: bool(k._find(".widget-dropdown select")) and bool(k._find(".widget-hslider"))
                 and bool(k._find(".widget-button")), 60)
        before = wait_for("the knob plot image", k.image, 60)
        knob, old = k.dropdown("phenomenon").first_selected_option.text, k.slider_value()
        handle = k.cell().find_element(By.CSS_SELECTOR, ".widget-hslider .noUi-handle, .widget-hslider [role=slider]")
        handle.click()
        handle.send_keys(Keys.END)
        value = wait_for("the strength slider to move", lambda: k.slider_value() if k.slider_value() != old else None,
                         10)
        check.say(f"knob {knob!r}: strength {old} -> {value}")
        k.button().click()
        t = time.time()
        k.wait_redraw(before, f"'Rebuild & retrain' ({knob} = {value})", timeout_s=2 * args.train_timeout_s)
        check.say(f"corpus, training and redraw took {time.time() - t:.0f} s")
        problems = k.problems()
        if problems:
            raise CheckFailed(f"after 'Rebuild & retrain' the knob cell shows: {problems}")
        check.shot("07-knob", k.cell())


def _stop(check: Check):
    with check.step("stop JupyterLab"):
        logs = [e["message"] for e in check.driver.get_log("browser")]
        if logs:
            check.say(f"browser console errors ({len(logs)}): " + " | ".join(m[:160] for m in logs[:5]))
        check.driver.quit()
        check.driver = None
        rc = check.stop_server()
        check.say(f"JupyterLab exited with {rc}")
        if rc not in (0, None):
            raise CheckFailed(f"JupyterLab exited with {rc}:\n{check.log_tail()}")


class Widgets:
    """The controls of ``AblationExplorer.widget()`` inside one notebook cell."""

    def __init__(self, check: Check, index: int):
        self.check, self.index = check, index

    def cell(self):
        return self.check.cell_node(self.index)

    def _find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.cell().find_elements(By.CSS_SELECTOR, css)

    def dropdown(self, label: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.select import Select

        for box in self._find(".widget-dropdown"):
            if box.find_element(By.CSS_SELECTOR, "label").text.strip() == label:
                return Select(box.find_element(By.CSS_SELECTOR, "select"))
        raise CheckFailed(f"no dropdown labelled {label!r} in the widget cell")

    def rows(self):
        from selenium.webdriver.support.select import Select

        return Select(self._find(".widget-select-multiple select")[0])

    def slider_value(self) -> str:
        return self._find(".widget-hslider .widget-readout")[0].text.strip()

    def button(self):
        return self._find("button.widget-button, .widget-button")[0]

    def ready(self) -> bool:
        return (len(self._find(".widget-dropdown select")) >= 2 and bool(self._find(".widget-select-multiple select"))
                and bool(self._find(".widget-hslider")) and bool(self._find(".widget-button")))

    def image(self) -> str | None:
        """The src of the (single) plot image inside the widgets' Output, or None."""
        imgs = self._find(".widget-output img, .jupyter-widgets-output-area img")
        return imgs[-1].get_attribute("src") if imgs else None

    def problems(self) -> list[str]:
        """Error text shown in the cell: tracebacks, "Error displaying widget", a plain-text widget repr."""
        text = self.cell().text
        marks = ("Traceback", "Error displaying widget", "Error:", "VBox(children=", "Loading widget",
                 "non-interactive")
        return [line for line in text.splitlines() if any(m in line for m in marks)]

    def wait_redraw(self, before: str, what: str, timeout_s: float = 120) -> str:
        after = wait_for(f"the plot to redraw after {what}",
                         lambda: (src if (src := self.image()) and src != before else None), timeout_s)
        time.sleep(1.0)  # clear_output(wait=True): let a second redraw of the same change land
        after = self.image() or after
        n = len(self._find(".widget-output img, .jupyter-widgets-output-area img"))
        self.check.say(f"{what}: plot redrew ({png_size(before)} sha1 {image_key(before)} -> {png_size(after)} "
                       f"sha1 {image_key(after)}; {n} image(s) in the Output)")
        if n != 1:
            raise CheckFailed(f"after {what} the Output holds {n} images (expected the redrawn plot only)")
        return after


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "browser"), help="screenshot folder")
    parser.add_argument("--corpus", default=None, help="an existing default corpus (CORPUS_DIR) to reuse")
    parser.add_argument("--run-timeout-s", type=float, default=900, help="limit for running all cells")
    parser.add_argument("--train-timeout-s", type=float, default=300, help="limit for 'Continue training'")
    parser.add_argument("--no-train", action="store_true", help="skip the 'Continue training' step")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder (notebook, log)")
    args = parser.parse_args(argv)
    t0 = time.time()
    try:
        check = run(args)
    except CheckFailed as e:
        print(f"\nFAILED: {e}", file=sys.stderr, flush=True)
        print(f"(screenshots so far in {args.out}; total {time.time() - t0:.0f} s)", file=sys.stderr)
        return 1
    print(f"\nPASSED in {time.time() - t0:.0f} s; what was seen:")
    for line in check.seen:
        print("  - " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
