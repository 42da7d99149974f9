"""The local DFI editor page (`make serve`, `python -m experiments.serve`): editing.py is its only
door into the Python API, jobs.py its one-solve-at-a-time queue, service.py what the page can ask,
server.py the HTTP side, page/ the page itself."""
