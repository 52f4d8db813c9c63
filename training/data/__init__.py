"""Referring-segmentation data: record readers for the public benchmarks and plain JSONL, masks, the dataset."""
