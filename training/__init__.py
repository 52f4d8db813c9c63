"""Offline training and evaluation of RSRefSeg 2 / RSRefSeg checkpoints. Imports backend.model; nothing imports this."""
