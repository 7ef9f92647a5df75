"""benchsuite's built-in plugins, registered through the ``benchsuite`` entry-point group
exactly like a third-party plugin: one module per method (``methods/``) or task (``tasks/``)."""
