# The two set-up-and-go commands: `make demo` and `make test`.
# Each creates .venv when missing and installs edgekd with the tested pins.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgekd-installed
RUN    := runs/demo

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgekd distill --out $(RUN) --force
	$(BIN)/edgekd export $(RUN) --int8 --force
	$(BIN)/edgekd bench $(RUN)/bundle --markdown $(RUN)/bench.md

test: $(STAMP)
	$(BIN)/ruff check edgekd tests benchmarks
	$(BIN)/python -m pytest tests -q -ra

clean:
	rm -rf $(VENV) runs .pytest_cache
