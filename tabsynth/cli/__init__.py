"""The ``tabsynth`` command line."""
