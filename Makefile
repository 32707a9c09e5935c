# `sam build` runs `make build-LogSaveFunction` with ARTIFACTS_DIR set (template.yaml: BuildMethod: makefile).
# The Lambda package holds app/, handler.py and requirements-lambda.txt, built for the runtime and
# architecture template.yaml names: no uvicorn, no embedded PostgreSQL binaries.
LAMBDA_PYTHON ?= 3.13
LAMBDA_PLATFORM ?= manylinux2014_aarch64

build-LogSaveFunction:
	python -m pip install --quiet --no-compile --only-binary=:all: --implementation cp \
		--platform $(LAMBDA_PLATFORM) --python-version $(LAMBDA_PYTHON) \
		--target "$(ARTIFACTS_DIR)" -r requirements-lambda.txt
	cp -r app handler.py "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)/app" -name __pycache__ -prune -exec rm -rf {} +

.PHONY: build-LogSaveFunction
