"""Data preparation commands (`llava-cit data ...`): from the original files to what the tasks read."""
