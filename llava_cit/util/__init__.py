"""Small shared tools: atomic writes, JSONL, run locks and logs, UTF-8 reads, errors, progress display."""
