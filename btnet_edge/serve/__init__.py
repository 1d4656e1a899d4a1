"""Serving: an HTTP face API on Ray Serve, its Python client, and a Triton model-repository export.

A layer above the pipeline, like the CLI: it imports the Recognizer, never the
reverse. Ray is loaded lazily (``require("ray", extra="serve")``), so importing this
package, the client and the Triton export need neither Ray nor Triton.
"""
