# The two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The browser tests (tests/browser) drive Debian's chromium headless through Playwright; Playwright
# never downloads a browser of its own.
SWITCHBOARD_CHROMIUM ?= /usr/bin/chromium
export SWITCHBOARD_CHROMIUM

.PHONY: run test check clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/switchboard serve --seed-if-empty

test: $(STAMP) chromium
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q

# Installs Debian's chromium when it is missing and this can (root, apt-get; CI runs as root);
# otherwise says how, and the browser tests fail saying the same.
chromium:
	@test -x "$(SWITCHBOARD_CHROMIUM)" || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests (apt-get)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && \
	    apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium >/dev/null; \
	  else \
	    echo "note: $(SWITCHBOARD_CHROMIUM) is missing and only root can install it here:" \
	         "sudo apt-get install chromium (the browser tests fail without it)"; \
	  fi; }

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis .artifacts
