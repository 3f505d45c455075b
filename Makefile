# iotpipe: the front door. `make run` and `make test` set up everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
# What a local run needs of SAM: the translator alone (aws-sam-cli==1.170.0 pins aws-sam-translator 1.115.0),
# in its own venv because it pins a pydantic other than this project's (iotpipe/local/iam/stack.py).
SAM_TRANSLATOR_VENV := .venv-sam-translator
SAM_TRANSLATOR := $(SAM_TRANSLATOR_VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.installed-dev
SPARK4_VENV := .venv-spark4
SPARK4_INSTALLED := $(SPARK4_VENV)/.installed
# Iceberg's Spark runtimes and SQLite's JDBC driver, pinned with their checksums in iotpipe/local/jars.py.
JARS := build/jars/.fetched
FAULTS_JAR := build/iotpipe-faults.jar
LAKE ?= lake
SIZE ?= 64MiB
SHARDS ?= 2
# The Spark runtime the local run rehearses (template parameter SparkRuntime): emr-on-ec2 or emr-serverless.
RUNTIME ?= emr-on-ec2
SEED ?= 1
# The shared layer's dependencies as Lambda runs them (x86_64, CPython 3.13), whatever the host:
# pip picks binary wheels for that platform, so no local python3.13 is needed.
LAMBDA_PIP_PLATFORM := --platform manylinux2014_x86_64 --implementation cp --python-version 3.13 --only-binary=:all:
# The Spark job's third-party modules for EMR 7 (CPython 3.9, x86_64): spark/requirements-emr.txt
# pins every one, so pip downloads exactly those (no resolution, which would read the host's
# Python version into the packages' markers) into the wheelhouse the cluster installs from.
SPARK_WHEELS := build/spark-wheels
SPARK_DEPS_DIR := build/spark-deps
SPARK_DEPS_ARCHIVE := build/iotpipe_spark_deps.tar.gz
EMR_PIP_PLATFORM := --platform manylinux2014_x86_64 --implementation cp --python-version 3.9 --only-binary=:all:

.PHONY: install run test test-spark4 test-fast lint format bench bench-5g deploy sam-build spark-wheels spark-deps-archive sam-validate checkov static-checks clean chromium

# What a local run needs: the project (with Spark and the local engine), Iceberg's jars, and the
# SAM translator that reads the template's IAM for the run's rehearsal. The tests' tools (pytest,
# SAM CLI, checkov, chromium, Spark 4, the faults jar) come with `make test`.
install: $(INSTALLED) $(JARS) $(SAM_TRANSLATOR)

# pip's own notices (a newer pip, setuptools' deprecation banners of the editable build) are not the user's business.
PIP_QUIET := PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_QUIET) $(BIN)/pip install --quiet -e ".[spark,local]"
	touch $@

$(DEV_INSTALLED): $(INSTALLED)
	$(PIP_QUIET) $(BIN)/pip install --quiet -e ".[spark,local,dev]"
	touch $@

$(SAM_TRANSLATOR):
	$(PYTHON) -m venv $(SAM_TRANSLATOR_VENV)
	$(PIP_QUIET) $(SAM_TRANSLATOR_VENV)/bin/pip install --quiet aws-sam-translator==1.115.0 pyyaml==6.0.4
	touch $@

# The job must also hold on Spark 4 (EMR's emr-spark-8 releases): the tests of the job's own code
# paths (parse and rules under both ANSI modes, the fuzz corpus, the streaming job with its commits
# and de-duplication), on another Spark. The rest of tests/spark runs on 3.5 only.
SPARK4_TESTS := tests/spark/test_transforms.py tests/spark/test_fuzz.py tests/spark/test_streaming_job.py
$(SPARK4_INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(SPARK4_VENV)
	$(SPARK4_VENV)/bin/pip install --quiet --upgrade pip
	$(SPARK4_VENV)/bin/pip install --quiet -e ".[spark4,local,dev]"
	touch $@

$(JARS): iotpipe/local/jars.py $(INSTALLED)
	$(BIN)/python -m iotpipe.local.jars
	touch $@

# Test-only: an Iceberg FileIO that halts the driver inside a commit (the fault matrix).
$(FAULTS_JAR): spark/faults/iotpipe/faults/CrashingFileIO.java $(JARS)
	mkdir -p build/classes
	javac -nowarn --release 11 -cp "$$($(BIN)/python -c 'from iotpipe.local.jars import local_jars; print(":".join(local_jars("3")))'):$$($(BIN)/python -c 'import pyspark,os;print(os.path.dirname(pyspark.__file__))')/jars/*" \
	  -d build/classes $<
	jar cf $@ -C build/classes .

# Test-only: a class-data archive (the JDK's AppCDS) of the classes a local run of the job loads,
# made by one small run: each of the tests' spark-submits then starts about 5 s sooner
# (tests/conftest.py uses the archive of its Spark when there is one). After a jar or the JDK
# changed, the JVM refuses the archive with a warning and starts without it: delete build/jvm-classes.
CLASS_ARCHIVE := build/jvm-classes/spark-3.jsa
CLASS_ARCHIVE4 := build/jvm-classes/spark-4.jsa
define make_class_archive
	rm -rf $@.lake $@.tmp && mkdir -p $(@D)
	$(1)/bin/iotpipe generate --out $@.lake/bronze --size 1MiB --shards 1 --days 1 --seed 1 > /dev/null
	IOTPIPE_SPARK_JAVA_OPTIONS="-XX:TieredStopAtLevel=1 -XX:ArchiveClassesAtExit=$(abspath $@).tmp" \
	  $(1)/bin/iotpipe transform --bronze $@.lake/bronze --gold $@.lake/gold --quarantine $@.lake/quarantine \
	  --checkpoint $@.lake/checkpoint --max-files-per-trigger 1 > $@.log 2>&1 || { cat $@.log; exit 1; }
	test -s $@.tmp || { cat $@.log; echo "the JVM wrote no class archive"; exit 1; }
	mv $@.tmp $@ && rm -rf $@.lake $@.log
endef
$(CLASS_ARCHIVE): $(DEV_INSTALLED) $(JARS)
	$(call make_class_archive,$(VENV))
$(CLASS_ARCHIVE4): $(SPARK4_INSTALLED) $(JARS)
	$(call make_class_archive,$(SPARK4_VENV))

$(SAM): 
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==1.170.0

# checkov pins its own dependency tree (like SAM): its own venv.
$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30

# The report page's test renders it in headless Chromium (Debian's package): installed when missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

run: install
	$(BIN)/iotpipe run --lake $(LAKE) --size $(SIZE) --shards $(SHARDS) --runtime $(RUNTIME)
	@echo "iotpipe is $(BIN)/iotpipe: \`source $(BIN)/activate\` puts it on the PATH (then: iotpipe query --lake $(LAKE) 'select count(*) from gold')"

test: install $(DEV_INSTALLED) $(SAM) $(FAULTS_JAR) $(CHECKOV) $(CLASS_ARCHIVE) chromium test-spark4
	IOTPIPE_SAM="$(abspath $(SAM))" IOTPIPE_CHECKOV="$(abspath $(CHECKOV))" $(BIN)/pytest -n 2

test-spark4: $(SPARK4_INSTALLED) $(JARS) $(FAULTS_JAR) $(CLASS_ARCHIVE4)
	$(SPARK4_VENV)/bin/pytest -n 2 $(SPARK4_TESTS)

test-fast: install $(DEV_INSTALLED) $(SAM) $(CHECKOV) chromium
	IOTPIPE_SAM="$(abspath $(SAM))" IOTPIPE_CHECKOV="$(abspath $(CHECKOV))" $(BIN)/pytest -n 2 -m "not spark"

lint: $(DEV_INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench.run --sizes 1GiB

bench-5g: install
	$(BIN)/python -m bench.run --sizes 1GiB,5GiB

# The fixed cost of a run: our job and the streaming floor over 1 to 16 objects, T = a + b * objects.
.PHONY: bench-fixed-cost
bench-fixed-cost: install
	$(BIN)/python -m bench.run --fixed-cost

# Each Iceberg commit of our job over 1 GiB, from Iceberg's own CommitReport.
.PHONY: bench-commit-cost
bench-commit-cost: install
	$(BIN)/python -m bench.run --commit-cost --sizes 1GiB

sam-validate: $(SAM)
	$(SAM) validate --lint

checkov: $(CHECKOV)
	$(CHECKOV) --file template.yaml --framework cloudformation --compact --quiet --skip-download

sam-build: $(SAM)
	$(SAM) build

# `sam build` calls these (Metadata BuildMethod: makefile): the shared package as a Lambda layer.
build-SharedLayer:
	mkdir -p "$(ARTIFACTS_DIR)/python"
	cp -r iotpipe "$(ARTIFACTS_DIR)/python/"
	find "$(ARTIFACTS_DIR)/python/iotpipe" -name __pycache__ -prune -exec rm -rf {} +
	$(PYTHON) -m pip install --quiet --no-compile --target "$(ARTIFACTS_DIR)/python" $(LAMBDA_PIP_PLATFORM) -r functions/requirements.txt

spark-wheels:
	rm -rf "$(SPARK_WHEELS)" && mkdir -p "$(SPARK_WHEELS)"
	$(PYTHON) -m pip download --quiet --no-deps --dest "$(SPARK_WHEELS)" $(EMR_PIP_PLATFORM) -r spark/requirements-emr.txt
	cp spark/requirements-emr.txt "$(SPARK_WHEELS)/requirements.txt"

# EMR Serverless runs no bootstrap action: the same pinned modules, installed for EMR 7's Python 3.9
# from the wheelhouse and archived; a job run unpacks the archive as ./deps on its PYTHONPATH
# (spark.archives, iotpipe.run.plan.serverless_submit_parameters).
spark-deps-archive: spark-wheels
	rm -rf "$(SPARK_DEPS_DIR)" && mkdir -p "$(SPARK_DEPS_DIR)"
	$(PYTHON) -m pip install --quiet --no-index --no-deps --no-compile --find-links "$(SPARK_WHEELS)" \
	  --target "$(SPARK_DEPS_DIR)" $(EMR_PIP_PLATFORM) -r "$(SPARK_WHEELS)/requirements.txt"
	tar -czf "$(SPARK_DEPS_ARCHIVE)" -C "$(SPARK_DEPS_DIR)" .

deploy: install sam-build spark-deps-archive
	scripts/deploy.sh

clean:
	rm -rf build .aws-sam $(LAKE) .pytest_cache
