"""The HTML correctness report: run documents (JSON), rendering, and the cross-run matrix.

- :mod:`~gradcheck.report.document`: the JSON run document every report is rendered from, and
  the per-test summaries the pytest plugin builds (no torch, no jinja2).
- :mod:`~gradcheck.report.environment`: Python, torch, devices, Hypothesis and git facts.
- :mod:`~gradcheck.report.merge`: several run documents into one matrix (rows: checks,
  columns: runs).
- :mod:`~gradcheck.report.svg`: the inline SVG charts.
- :mod:`~gradcheck.report.benchmarks`: the numbers about benchmarks (rates, each judge's time
  over its group's reference, backward over forward) and their grouping.
- :mod:`~gradcheck.report.render`: jinja2 (autoescaping on) to one self-contained HTML file;
  the only jinja2 importer.
- :mod:`~gradcheck.report.files`: atomic writes and reading saved documents back.
"""
