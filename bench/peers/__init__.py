"""The peers: each way of recompressing that the app is measured against, as a tiny script.

Each script is run as its own child process (``python bench/peers/X.py SRC DST``)
so that its start-up, imports and peak memory are counted exactly as the
app's CLI's are. They import nothing from the project.
"""
