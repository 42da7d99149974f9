# Two commands on a fresh machine: `make demo` and `make test`;
# `make demo-photo [PHOTO=me.jpg] [ATTRS=smiling,older+eyeglasses] [DELTAS=1,2,3.5]` edits a real
# photo (default: scikit-image's astronaut, all six attributes, δ = 1, 2, 3.5).
# User-given values reach the command only as quoted environment variables, never as shell
# text: a file name with spaces, `;` or backticks runs nothing (tests/test_makefile.py).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PHOTOS_STAMP := $(VENV)/.installed-photos
ASTRONAUT := runs/astronaut.png
PHOTO ?= runs/astronaut.png
ATTRS ?=
DELTAS ?= 1,2,3.5
export DFI_PHOTO = $(value PHOTO)
export DFI_ATTRS = $(value ATTRS)
export DFI_DELTAS = $(value DELTAS)
unexport PHOTO ATTRS DELTAS

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
demo-photo: $(PHOTOS_STAMP) $(if $(filter $(ASTRONAUT),$(value PHOTO)),$(ASTRONAUT))
	@name="$${DFI_PHOTO##*/}"; run="runs/photo_$${name%.*}"; \
	set -- "--workdir=$$run" "--inputs=$$DFI_PHOTO" "--attributes=$$DFI_ATTRS" \
	  "--config.deltas=$$DFI_DELTAS" --config.animate=gif; \
	echo "$(PY) -m experiments.transform $$*"; \
	"$(PY)" -m experiments.transform "$$@" && \
	echo "open $$run/index.html (side-by-sides: $$run/photos/)"

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
