# MatriCloud developer commands. The Makefile only bootstraps the virtualenv and the front-end
# packages; everything else is `python -m matricloud` (see matricloud/__main__.py).
#
#   make run                 the portal on http://127.0.0.1:8000 with embedded services
#   make test [ARGS=...]     the pytest suite (ARGS go to pytest, e.g. ARGS="-k login")
#   make lint                ruff check and ruff format --check
#   make messages            update and compile the de and it translations
#   make clean-data          delete the local data folder (asks first)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR := $(or $(MATRICLOUD_DATA_DIR),.matricloud)
PY_STAMP := $(VENV)/.matricloud-installed
NPM_STAMP := node_modules/.matricloud-installed
ARGS ?=

.PHONY: run test services lint messages clean-data bootstrap

run: bootstrap
	$(PY) -m matricloud run $(ARGS)

test: bootstrap
	$(PY) -m matricloud test $(ARGS)

services: bootstrap
	$(PY) -m matricloud services

bootstrap: $(PY_STAMP) $(NPM_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when pyproject.toml changes.
$(PY_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# Reinstalled only when package-lock.json changes (npm ci empties node_modules first).
$(NPM_STAMP): package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

lint: $(PY_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

messages: $(PY_STAMP)
	mkdir -p locale
	$(PY) manage.py makemessages -l de -l it --ignore='.venv/*' --ignore='node_modules/*' \
		--ignore='$(DATA_DIR)/*' --ignore='staticfiles/*' --ignore='tests/*' --ignore='bench/*' \
		--no-obsolete
	$(PY) manage.py compilemessages --ignore='.venv/*' --ignore='node_modules/*'

clean-data:
	@if [ ! -e "$(DATA_DIR)" ]; then echo "$(DATA_DIR) does not exist"; exit 0; fi; \
	if [ -e "$(DATA_DIR)/pgdata/postmaster.pid" ]; then \
		echo "PostgreSQL is still running on $(DATA_DIR)/pgdata: stop 'make run' first"; exit 1; fi; \
	printf 'Delete %s (database, Redis data, mails, uploads)? [y/N] ' "$(DATA_DIR)"; \
	read answer || answer=; \
	case "$$answer" in \
		[yY]|[yY][eE][sS]) rm -rf "$(DATA_DIR)" && echo "deleted $(DATA_DIR)";; \
		*) echo "kept $(DATA_DIR)";; \
	esac
