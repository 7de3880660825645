"""The driver: one loop that runs a search method over a trial backend (``hwnas.driver``)."""
