"""The live dashboard: a web page served by the addon (see ``server``), reading ``api``."""
