# Festpay developer tasks.  `make run` and `make test` work from a fresh clone.

PYTHON     ?= python3
VENV       := .venv
VENV_STAMP := $(VENV)/.installed
PG_MAJOR   ?= 15
# Patroni (with its etcd3 client) and etcd for `festpay ha` and `make failover`.
HA_APT_PACKAGES := patroni etcd-server python3-etcd
# pgTAP for the server, and pg_prove; Chromium and its WebDriver for the admin site's browser tests; pgBackRest for
# the backup and point-in-time restore test; the HA packages for tests/test_ha.py.
TEST_APT_PACKAGES := postgresql-$(PG_MAJOR)-pgtap libtap-parser-sourcehandler-pgtap-perl chromium chromium-driver \
                     pgbackrest $(HA_APT_PACKAGES)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help .venv run test chaos failover server-deps test-deps ha-deps bench clean-data

help:
	@echo "make run         start PostgreSQL (embedded), migrate, load demo data; Ctrl-C stops"
	@echo "make test        pytest + pgTAP suites (installs pgTAP/pg_prove, chromium, pgbackrest, patroni, etcd via apt"
	@echo "                 when missing)"
	@echo "make chaos       the state machine with 10,000 random steps, then the chaos run: 20 SIGKILLs of its parts"
	@echo "                 in 5 minutes under load, then checked (FESTPAY_STATE_MACHINE_STEPS, FESTPAY_CHAOS_SECONDS,"
	@echo "                 FESTPAY_CHAOS_KILLS)"
	@echo "make failover    HA: three Patroni nodes lose their leader under terminal load, three ways (installs"
	@echo "                 patroni and etcd via apt when missing); prints downtimes and lost=0"
	@echo "make bench       benchmarks"
	@echo "make clean-data  stop and delete the embedded cluster (all local data)"

# The virtualenv, re-installed whenever the package metadata changes.
.venv: $(VENV_STAMP)

$(VENV_STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Festpay needs Python 3.11 or newer ($(PYTHON) is $$($(PYTHON) --version 2>&1))"; exit 1; }
	@if [ ! -x $(VENV)/bin/python ]; then \
		rm -rf $(VENV); \
		if ! $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
			echo "python venv module missing; installing python3-venv"; \
			rm -rf $(VENV); \
			$(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv; \
			$(PYTHON) -m venv $(VENV); \
		fi; \
	fi
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $@

run: .venv server-deps
	$(VENV)/bin/festpay run

# The PostgreSQL server, from Debian, unless one is there already (or PG_BIN points to one).
server-deps:
	@if [ -z "$$PG_BIN" ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		echo "installing postgresql-$(PG_MAJOR)"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-$(PG_MAJOR); \
	fi

# $(call apt-install-missing,PACKAGES): installs those of the Debian PACKAGES that are not installed yet.
define apt-install-missing
	@missing=""; \
	for p in $(1); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
endef

# pgTAP, pg_prove, chromium, chromium-driver, pgbackrest, patroni and etcd come from Debian packages; installed only
# when missing.
test-deps:
	$(call apt-install-missing,$(TEST_APT_PACKAGES))

ha-deps:
	$(call apt-install-missing,$(HA_APT_PACKAGES))

test: .venv test-deps
	$(VENV)/bin/pytest

# The model-based state machine test with new random sequences, at least FESTPAY_STATE_MACHINE_STEPS steps; then the
# chaos run (python_gateway/chaos): FESTPAY_CHAOS_KILLS SIGKILLs in FESTPAY_CHAOS_SECONDS under load, then checked.
chaos: .venv server-deps
	FESTPAY_STATE_MACHINE_STEPS=$${FESTPAY_STATE_MACHINE_STEPS:-10000} $(VENV)/bin/pytest -q -s -p no:cacheprovider \
		tests/test_state_machine.py::test_ledger_follows_the_model
	$(VENV)/bin/python -m python_gateway.chaos run --duration $${FESTPAY_CHAOS_SECONDS:-300} \
		--kills $${FESTPAY_CHAOS_KILLS:-20}

# The HA failover test (python_gateway/failover.py): kill, switchover, lost machine, under terminal load.
failover: .venv server-deps ha-deps
	$(VENV)/bin/python -m python_gateway.failover

bench: .venv
	$(VENV)/bin/python -m python_gateway.bench

clean-data:
	@if [ -x $(VENV)/bin/festpay ]; then $(VENV)/bin/festpay db destroy --yes; else rm -rf data; fi
