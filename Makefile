# a2gnn: the two set-up-and-go commands are `make repro` (main job) and `make test` (tests).
# Both create/refresh the virtual environment first, so they work on a fresh machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export PYTHONHASHSEED := 0

# the tables of `python -m a2gnn.pipeline.ablations --list`, one make target each
TABLES := table4a table4b table4c table4d table4e fig7 gnn_seeds table5 rw_tuning baseline_tuning maskrcnn_seeds cam_stride4

.PHONY: repro test test-fast data setup bench compare numerics-check clean-outputs ablations $(TABLES)

setup: $(STAMP)

$(STAMP): requirements/base.txt requirements/test.txt pyproject.toml scripts/install_detectron2.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip<26.3"
	$(BIN)/python -m pip install --quiet -r requirements/base.txt -r requirements/test.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python scripts/install_detectron2.py
	@touch $(STAMP)

# The embedded default dataset is generated deterministically (byte-identical to what data.dvc records).
data: $(STAMP)
	$(BIN)/python -m a2gnn.data.embedded --params params.yaml --out data

repro: data
	$(BIN)/dvc repro
	$(BIN)/dvc metrics show

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=20

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The default run beside the experiments (all of HEAD's, or EXPS="name ..."): differing params + headline, 120 cols
compare: $(STAMP)
	$(BIN)/python -m a2gnn.pipeline.compare $(EXPS)

bench: $(STAMP)
	$(BIN)/python benchmarks/pseudo_labels_speed.py

# Does this CPU compute the committed bytes? The cam stage under the pin and under A2GNN_NUMERICS=strict, against
# scripts/numerics_reference.json (docs/pipeline.md, "The same bytes on another x86-64 CPU"); about 4 min on 2 cores
numerics-check: data
	$(BIN)/python scripts/numerics_check.py

# Paper Table 4 / Fig. 7 / Table 5 rows (and the competitors' tuning sweeps) as named DVC experiments (queued,
# run, collected); prints the table beside the paper's numbers and writes metrics/ablations/<table>.md|json
# (`dvc repro` then reruns only the report stage). `make ablations` runs them all, one after the other.
$(TABLES): $(STAMP)
	$(BIN)/python -m a2gnn.pipeline.ablations $@ --run

ablations: $(STAMP)
	$(BIN)/python -m a2gnn.pipeline.ablations all --run

clean-outputs:
	rm -rf outputs
