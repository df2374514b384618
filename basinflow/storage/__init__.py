"""Storage: fsspec access, raw layouts, lazy HDF5 reads, referrers, basins, writers."""
