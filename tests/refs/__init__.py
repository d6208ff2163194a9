"""Live references the tests and `make bench` call in-process (llama.cpp through ctypes)."""
