"""The toolkit for task authors: data sources, the label pipeline, shared networks, augmentation."""
