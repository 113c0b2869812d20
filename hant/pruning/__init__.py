"""Latency-aware structured pruning on one core: coupled channel groups from Torch-Pruning's
dependency graph (``groups``, cut by ``apply``), one importance interface (``importance``), one
lookup-table latency model in the pipeline's terms (``space``), the schedules that pick widths with
hant's integer program under a latency budget (``halp``, ``splamp``, ``run``), a block pruned
alone for the op zoo (``block``), and the streams the zoo's ``stream_cut`` candidates narrow
(``streams``, with the teacher's channels sorted by importance by ``reorder``). ``hant prune``
runs them as stages of the pipeline (``hant.pipeline.prune_stages``)."""
