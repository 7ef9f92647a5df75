"""The sentiment task family: imdb and rt_reviews on PV-DBOW document vectors."""
