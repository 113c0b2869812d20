"""Latency-aware structured pruning of whole networks: coupled channel groups (residual streams
included), saliency criteria (HALP's BatchNorm Taylor, SP-LAMP's filter LAMP) and the schedules
that pick widths with hant's integer program under a latency budget."""
