"""Training: `lra_bench.train.run.run` (one run end to end), the loop, schedules,
checkpoints, records. Nothing is imported here, so torch-free parts (e.g.
`lra_bench.train.record`, read by the report) load without torch."""
