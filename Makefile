# mailsift — the two commands: `make run` and `make test` (Debian 12, as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_LIST := deploy/apt-packages.txt
LIBMILTER := build/libmilter
PYTEST_ARGS ?=

.PHONY: all run stop test apt venv bench clean-run model

all: venv

# Installs the Debian packages listed in deploy/apt-packages.txt, once.
apt:
	@pkgs=$$(grep -v '^\s*#' $(APT_LIST) | tr -s ' \n' ' '); \
	missing=$$(for p in $$pkgs; do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  echo "postfix postfix/mailname string localhost" | debconf-set-selections; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# pymilter is linked statically against a libmilter built from Debian's sendmail source
# without its worker pool (deploy/build-libmilter.sh says why); --no-cache-dir so that no
# wheel built earlier against the shared libmilter is reused.
$(VENV)/.stamp: requirements.lock setup.cfg pyproject.toml deploy/build-libmilter.sh $(wildcard deploy/libmilter-patches/*.patch)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	deploy/build-libmilter.sh $(LIBMILTER)
	LDFLAGS="-L$(CURDIR)/$(LIBMILTER)/lib" $(PY) -m pip install -q --no-cache-dir --no-binary pymilter \
	  --force-reinstall --no-deps $$(grep '^pymilter==' requirements.lock)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# mailsift-classify: `mailsift classify` through the classify socket, in C (spamc's part;
# docs/classifier.md), beside the venv's `mailsift`, which it hands what it does not handle.
$(VENV)/bin/mailsift-classify: client/mailsift-classify.c | $(VENV)/.stamp
	gcc -O2 -Wall -Wextra -o $@ $<

venv: apt $(VENV)/.stamp $(VENV)/bin/mailsift-classify

# The default model: trained from ../shared/corpora when models/ has none.
model: venv
	$(PY) -m mailsift.classifier.default_model --dbpath models

test: venv
	$(PY) -m pytest -ra -n 2 $(PYTEST_ARGS)

# Brings the whole pipeline up on loopback (private Postfix, clamd, milter, policy, store);
# `make stop` stops it by PID.
run: venv model
	$(PY) -m mailsift.run_local
	$(PY) -m mailsift.localstack up

stop:
	$(PY) -m mailsift.localstack down

# Benchmarks: standalone scripts that print their figures against a peer run in the same script.
# Their extra peers (rspamd, spamass-milter, ...) are listed in bench/apt-packages.txt.
bench: venv
	@$(MAKE) --no-print-directory apt APT_LIST=bench/apt-packages.txt
	@for b in bench/*.py; do echo "=== $$b"; $(PY) $$b || echo "FAILED: $$b"; done

clean-run:
	rm -rf run/
