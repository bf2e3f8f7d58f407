# Developer entry points. Everything runs from a project-local virtualenv (.venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TEST_WORKERS ?= 2
PIP := $(VENV)/bin/pip
OCTOPRINT_SPEC ?= OctoPrint>=1.11,<1.12
# Semgrep pins a click that OctoPrint refuses: it lives in a venv of its own.
TOOLS_VENV ?= .venv-tools
SEMGREP_VERSION ?= 1.185.0
SEMGREP := SEMGREP_ENABLE_VERSION_CHECK=0 $(TOOLS_VENV)/bin/semgrep
SEMGREP_RULES := .semgrep/octoprint-plugin.yml

.PHONY: venv test test-packages fixtures unit test-compat check-fresh docs-screenshots demo demo-stop lint semgrep bench soak clean babel-extract babel-new babel-update babel-compile

# The Debian packages a target calls (debian-packages.txt, the one list): the missing ones
# are installed when make runs as root (apt-get update once, one apt-get install);
# otherwise make stops with the apt-get line. Usage: $(call debian_packages,WHAT,GROUPS)
debian_packages = PYTHON="$(PYTHON)" scripts/system-packages.sh --for "$(1)" $(2)

$(VENV)/.installed: pyproject.toml setup.py
	@$(call debian_packages,make venv,venv)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(OCTOPRINT_SPEC)"
	# with the OctoPrint spec again: left free, pip may swap OctoPrint for another release
	# that suits a test extra (datasets' huggingface_hub wants a newer click)
	$(PIP) install -q -e ".[test,develop,analysis]" "$(OCTOPRINT_SPEC)"
	touch $@

venv: $(VENV)/.installed

$(TOOLS_VENV)/.installed:
	@$(call debian_packages,make lint,venv)
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q "semgrep==$(SEMGREP_VERSION)"
	touch $@

# The whole suite: static checks first (seconds), then unit, integration and browser tests.
# A basetemp of this checkout's own: pytest rotates the shared /tmp/pytest-of-<user>
# folders, which would delete the servers of another checkout's run under its feet.
# Two workers (pytest-xdist), each test file on one of them (its module's OctoPrint server is
# shared by its tests): the integration tests spend most of their time waiting for prints.
# The tests that measure OctoPrint's responsiveness (marker `alone`) run afterwards, alone.
test: test-packages lint
	$(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile -m "not alone" --basetemp="$(CURDIR)/.pytest-tmp" $(PYTEST_ARGS)
	$(PY) -m pytest -q -ra -m alone --basetemp="$(CURDIR)/.pytest-tmp/alone" $(PYTEST_ARGS) || [ $$? -eq 5 ]

# gcc and python3-dev (netifaces), ffmpeg (with ffprobe), chromium... before the venv: on a
# fresh machine one apt-get run installs all
test-packages:
	@$(call debian_packages,make test,venv test)

# Slices the fixtures in tests/fixtures again with Debian's prusa-slicer and slic3r (the
# tests read the committed files and call neither)
fixtures: venv
	@$(call debian_packages,make fixtures,fixtures)
	$(PY) tests/fixtures/make_fixtures.py

unit: venv
	$(PY) -m pytest -q tests/unit

# OctoPrint 2.0 (Python 3.13) and 1.10 (Python 3.9), one venv each under .venv-compat/;
# COMPAT_ARGS e.g. "--leg 2.0 -- -x" (see scripts/compat.py)
test-compat: venv
	@$(call debian_packages,make test-compat,test)
	$(PY) scripts/compat.py $(COMPAT_ARGS)

demo: venv
	$(PY) scripts/demo.py

demo-stop: venv
	$(PY) scripts/demo.py --stop

lint: venv semgrep
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The rules are tested on their examples first, so a rule that matches nothing fails here.
semgrep: $(TOOLS_VENV)/.installed
	$(SEMGREP) --test --metrics=off --disable-version-check --config $(SEMGREP_RULES) .semgrep/octoprint-plugin.py
	$(SEMGREP) --test --metrics=off --disable-version-check --config $(SEMGREP_RULES) .semgrep/octoprint-plugin.jinja2
	$(SEMGREP) scan --metrics=off --disable-version-check --error --quiet --config $(SEMGREP_RULES) octoprint_layercapture

bench: venv
	@$(call debian_packages,make bench,bench)
	$(PY) benchmarks/run_all.py

# The README's screenshots (docs/*.png): the browser tests take them, this shrinks three.
docs-screenshots: test-packages venv
	$(PY) -m pytest -q -ra --basetemp="$(CURDIR)/.pytest-tmp" tests/browser
	$(PY) scripts/docs_screenshots.py

# The whole of .ci/run in a clean Debian bookworm (debootstrap + chroot, as root; 15-25 min):
# proves .ci/run installs what the suite needs. Runs this checkout's HEAD, not the work tree.
check-fresh:
	scripts/check-fresh.sh

# A long print with every layer captured (minutes): files complete, OctoPrint's RSS flat.
soak: venv
	LAYERCAPTURE_SOAK=1 $(PY) -m pytest -q -ra -p no:cacheprovider \
		--basetemp="$$(mktemp -d /tmp/lc-soak-XXXXXX)" tests/integration/test_soak.py

# Translations live in the package (OctoPrint reads <plugin>/translations/<lang>/LC_MESSAGES).
TRANSLATIONS := octoprint_layercapture/translations
PYBABEL := $(VENV)/bin/pybabel

babel-extract: venv
	$(PYBABEL) extract -F babel.cfg --sort-by-file --project=OctoPrint-LayerCapture \
		--copyright-holder="OctoPrint-LayerCapture contributors" \
		-o $(TRANSLATIONS)/messages.pot .

babel-new: babel-extract  # make babel-new LOCALE=de
	$(PYBABEL) init -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) -l $(LOCALE)

babel-update: babel-extract
	$(PYBABEL) update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS)

babel-compile: venv
	$(PYBABEL) compile -d $(TRANSLATIONS)

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .venv-compat build dist *.egg-info demo-basedir test-artifacts .pytest-tmp
