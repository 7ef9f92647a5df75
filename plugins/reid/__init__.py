"""The re-identification task family: mars, with its video encoder."""
