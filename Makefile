# The two set-up-and-go commands: `make demo` and `make test`.
# Each creates .venv when missing and installs edgekd with the tested pins.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgekd-installed
RUN    := runs/demo

.PHONY: demo test test-fast docs install ssh-server clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgekd distill --unlabelled rest --out $(RUN) --force
	$(BIN)/edgekd export $(RUN) --int8 --force
	$(BIN)/edgekd bench $(RUN)/bundle --markdown $(RUN)/bench.md

# the documentation site (mkdocs.yml, docs/): served at http://127.0.0.1:8000; `make test` builds it with
# --strict, so a broken link, a missing page or a failed snippet fails the tests
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
docs: $(STAMP)
	$(MKDOCS) serve

# tests/test_remote.py benches over a real OpenSSH server on 127.0.0.1: as root, install Debian's
# openssh-server (and rsync) when missing; otherwise those tests skip, saying why
ssh-server:
	@if { [ ! -x /usr/sbin/sshd ] || ! command -v rsync >/dev/null; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing openssh-server rsync for the SSH tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends openssh-server rsync >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends openssh-server rsync >/dev/null; }; \
	fi

test: $(STAMP) ssh-server
	$(BIN)/ruff check edgekd tests benchmarks tools
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(MKDOCS) build --strict --site-dir $(VENV)/site
	$(BIN)/python -m pytest tests -q -ra

# the fast lane for everyday work (the README says how long it takes): the same checks, and every
# test but those marked slow, the ones that train, export, bench in subprocesses, start sshd or build
# device environments (tests/conftest.py decides)
test-fast: $(STAMP)
	$(BIN)/ruff check edgekd tests benchmarks tools
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(MKDOCS) build --strict --site-dir $(VENV)/site
	$(BIN)/python -m pytest tests -q -m "not slow" -n 2

clean:
	rm -rf $(VENV) runs .pytest_cache
