"""The tables of a run and of a report: their statistics (:mod:`.statistics`) and Markdown."""
