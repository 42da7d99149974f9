# Two commands on a fresh machine: `make demo` and `make test`; `make demo-photo [PHOTO=me.jpg]`
# edits a real photo (default: scikit-image's astronaut).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PHOTOS_STAMP := $(VENV)/.installed-photos
ASTRONAUT := runs/astronaut.png
PHOTO ?= $(ASTRONAUT)
PHOTO_RUN := runs/photo_$(basename $(notdir $(PHOTO)))

.PHONY: demo demo-photo serve test venv clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(PHOTOS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[photos]'
	touch $@

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.transform --workdir=runs/demo
	@echo "open runs/demo/index.html (grid: runs/demo/grid.png)"

$(ASTRONAUT): $(PHOTOS_STAMP)
	mkdir -p $(dir $@)
	$(PY) -c "from PIL import Image; from skimage import data; Image.fromarray(data.astronaut()).save('$@')"

# Finds the face, aligns it to the bank's frame, edits it for six attributes, pastes the change
# back into the full-size photo; animations of the δ sweep.
demo-photo: $(PHOTOS_STAMP) $(if $(filter $(ASTRONAUT),$(PHOTO)),$(ASTRONAUT))
	$(PY) -m experiments.transform --workdir=$(PHOTO_RUN) --inputs=$(PHOTO) --config.animate=gif
	@echo "open $(PHOTO_RUN)/index.html (side-by-sides: $(PHOTO_RUN)/photos/)"

# The editor page: open the printed address (PORT=8027; docs/serve.md).
$(VENV)/.installed-serve: $(STAMP)
	$(PY) -m pip install -q -e '.[serve]'
	touch $@

serve: $(VENV)/.installed-serve
	$(PY) -m experiments.serve --port=$(or $(PORT),8027)

test: $(TEST_STAMP)
	$(PY) -m pytest tests

clean-venv:
	rm -rf $(VENV)
