"""Real servers on loopback for tests and benchmarks (no mocks): an HTTP server that
honours ``Range`` and records requests, and moto's S3 server, each a separate process."""
