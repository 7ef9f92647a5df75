"""The Clothing1M task: real label noise on web images of clothing."""
