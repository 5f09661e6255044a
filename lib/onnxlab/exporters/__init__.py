"""Scripts that run in other frameworks' own environments (not imported by onnxlab)."""
