# The two commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INSTALL ?= $(BIN)/python -m pip install --quiet --disable-pip-version-check
NEW_ENOUGH := import sys; sys.exit(sys.version_info < (3, 11))

# The browser tests (tests/browser) drive Debian's chromium headless through Playwright; Playwright
# never downloads a browser of its own.
SWITCHBOARD_CHROMIUM ?= /usr/bin/chromium
export SWITCHBOARD_CHROMIUM

.PHONY: run test check clean chromium

# A .venv whose interpreter is gone or too old (made by another Python) is rebuilt, not used.
VENV_OK := $(shell $(BIN)/python -c '$(NEW_ENOUGH)' >/dev/null 2>&1 && echo ok)
ifneq ($(VENV_OK),ok)
  ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),run)),)
    ifneq ($(shell $(PYTHON) -c '$(NEW_ENOUGH)' >/dev/null 2>&1 && echo ok),ok)
      $(error Switchboard needs Python 3.11 or newer, and $(PYTHON) is $(or $(shell command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 | head -n 1),not installed); run: make PYTHON=python3.11 $(MAKECMDGOALS))
    endif
  endif
  .PHONY: $(STAMP)
endif

$(STAMP): pyproject.toml
	@if [ -e $(VENV) ] && [ "$(VENV_OK)" != ok ]; then \
		echo "make: .venv's Python is missing or older than 3.11; rebuilding .venv with $(PYTHON)"; \
		rm -rf $(VENV); \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(INSTALL) --upgrade pip
	$(INSTALL) -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/switchboard serve --seed-if-empty

test: $(STAMP) chromium
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n 2

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
