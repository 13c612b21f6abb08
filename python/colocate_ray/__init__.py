"""Ray backend shim for colocate (see host.py and driver.py)."""
