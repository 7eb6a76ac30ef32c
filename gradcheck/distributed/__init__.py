"""Gradients across processes: :func:`gradcheck.check_distributed` runs a training step on
``world_size`` torch.distributed ranks (DDP or FSDP2) and judges the gradients every rank ends
with against a single-process float64 reference on the whole batch.

job.py (what every rank runs, the batch's shards, the default step and losses), rank.py (one
rank's process), launch.py (starting, watching and stopping the ranks), reference.py (the
single-process gradients in float64 and in the step's dtype), check.py (check_distributed).
"""
