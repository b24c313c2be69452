"""Measuring: ``semsearch bench``, one report (table, JSON, plots) for a BEIR dataset (:mod:`.report`)."""
