"""Every state change in opsdash lives here, as ``<entity>_<verb>(*, ...)`` functions."""
