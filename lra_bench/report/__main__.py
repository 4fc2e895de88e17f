"""`python -m lra_bench.report`: see `lra_bench.report.cli`."""
from lra_bench.io import run_command
from lra_bench.report.cli import main

raise SystemExit(run_command(main))
