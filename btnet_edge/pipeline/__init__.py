"""The face pipeline: image checks, detection, alignment, recognition, gallery; one module each."""
