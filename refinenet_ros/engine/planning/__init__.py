"""Choosing how to run: a request becomes a plan (device, precision, backend, file, frames in flight), measured where it pays, then a loaded network."""
