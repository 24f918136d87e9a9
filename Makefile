# facelearn — two commands do everything (README "Quick start"):
#   make book   set up .venv, execute every notebook (quick profile), build the HTML into _build/html
#   make test   the same set-up, then unit tests, every notebook under nbval, and a strict book build
#               checked in a headless browser with the network off
# Re-running reuses .venv, the vendored JavaScript and the notebook cache: nothing is redone if nothing changed.

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
INSTALLED := $(VENV)/.installed
VENDOR   := book/_static/vendor
VENDORED := $(VENDOR)/.vendored
HTML     := _build/html
# Versions of the JavaScript served locally (from the npm registry; never committed).
MATHJAX      := mathjax@3.2.2
REQUIREJS    := requirejs@2.3.7
HTML_MANAGER := @jupyter-widgets/html-manager@1.0.15

export FACELEARN_PROFILE ?= quick
# Data the notebooks generate (SynthFace exports, checkpoints of the reader's runs) stays inside the clone.
export FACELEARN_HOME ?= $(CURDIR)/_build/facelearn_home
# Kernels started by nbval and the book build must run the venv's Python.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test unit notebooks book-strict browser-check setup vendor chromium checkpoints clean student figures

book: setup vendor
	$(BIN)/jupyter-book build . --keep-going
	@echo
	@echo "The book is built. Open: file://$(CURDIR)/$(HTML)/index.html"

test: setup vendor chromium unit notebooks book-strict browser-check
	@echo "make test: all checks passed"

setup: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# ci/constraints.txt pins exact versions for CI and developers; pyproject.toml keeps lower bounds only.
$(INSTALLED): pyproject.toml ci/constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c ci/constraints.txt -e '.[book,test,fast]'
	touch $@

vendor: $(VENDORED)

$(VENDORED): $(INSTALLED) Makefile
	rm -rf .vendor $(VENDOR)
	$(BIN)/npm install --prefix .vendor --no-save --no-audit --no-fund --loglevel=error \
	    $(MATHJAX) $(REQUIREJS) $(HTML_MANAGER)
	mkdir -p $(VENDOR)/html-manager
	cp -r .vendor/node_modules/mathjax/es5 $(VENDOR)/mathjax
	cp .vendor/node_modules/requirejs/require.js $(VENDOR)/require.min.js
	cp -r .vendor/node_modules/@jupyter-widgets/html-manager/dist/. $(VENDOR)/html-manager/
	touch $@

# The browser check needs Debian's chromium (or any Chromium at $$CHROMIUM).
chromium:
	@command -v $${CHROMIUM:-chromium} >/dev/null 2>&1 || { \
	    echo "installing Debian's chromium for the browser test"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

# Student notebooks: solutions removed, answers stubbed with ..., self-checks kept (`facelearn grade` scores one).
# The HTML build publishes the same files under _build/html/student/.
student: setup
	$(BIN)/python -m facelearn.teaching.student notebooks student

# The figure pack for slides: every captioned figure of the built book as PNG (SVG for the explorers) with its
# caption, into _build/figures (the HTML build publishes it under _build/html/figures/). For SVG of every figure:
# python -m facelearn.teaching.figures --execute notebooks _build/figures  (runs the chapters again).
figures: book
	$(BIN)/python -m facelearn.teaching.figures _build/jupyter_execute/notebooks _build/figures

unit: setup
	$(BIN)/python -m pytest -q -m "not book" tests

notebooks: setup
	cd notebooks && ../$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
	    --nbval-cell-timeout=300 --durations=0 *.ipynb

book-strict: setup vendor
	$(BIN)/jupyter-book build . -W -n --keep-going

# Opens the built pages in headless Chromium with every non-local request blocked (tests/test_book_browser.py).
browser-check: setup vendor chromium
	$(BIN)/python -m pytest -q -m book tests/test_book_browser.py

# Regenerate every shipped checkpoint with the library's own quick recipes (slow on a CPU: hours; minutes on
# a GPU). Tests re-evaluate each shipped file against the figure its chapter quotes.
checkpoints: setup
	for loss in softmax triplet sphereface normface cosface arcface; do \
	    $(BIN)/facelearn train recognition --preset quick --loss $$loss --out facelearn/recognition/checkpoints/quick-$$loss.pt; done
	$(BIN)/facelearn train retinaface --preset quick --fresh --export facelearn/detection/checkpoints/retinaface_mnet025_quick.pt
	$(BIN)/facelearn train retinaface --preset quick-no-landmarks --fresh \
	    --export facelearn/detection/checkpoints/retinaface_mnet025_quick_no_landmarks.pt
	$(BIN)/facelearn train pfld --preset quick --loss weighted --out facelearn/landmarks/checkpoints/pfld-quick.pt
	$(BIN)/facelearn train pfld --preset quick --loss weighted --attributes loss --level-pitch zero \
	    --out facelearn/landmarks/checkpoints/pfld-quick-as-written.pt
	$(BIN)/facelearn train pfld --preset quick --loss plain --out facelearn/landmarks/checkpoints/pfld-quick-plain.pt
	$(BIN)/facelearn train mesh-decoder --preset quick --out facelearn/detection/checkpoints/mesh_decoder_quick.pt

clean:
	rm -rf _build .vendor $(VENDOR)
