"""Paper tables and figures from run records: `python -m lra_bench.report <records> --out <dir>`.

records   find, read and tidy run records; config fingerprints; provenance
tables    Table 1: accuracy per task, both LRA averages, published rows
efficiency  Table 2: steps/s and peak memory vs softmax; the parameter-budget check
render    Markdown, LaTeX (booktabs) and CSV of a Table
published LRA's published numbers (published.json) with their sources
figures   the frames the plots draw (plots.py draws them)
cli       the command line
"""
