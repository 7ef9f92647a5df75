"""The digits task family: digits and digits_retrieval on scikit-learn's handwritten digits."""
