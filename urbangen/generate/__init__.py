"""Generate layouts from a parameter file: request, fields, stitched sampling, vector outputs, report."""
