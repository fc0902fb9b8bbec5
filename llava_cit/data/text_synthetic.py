"""Placeholder vocabulary hook for the text track's generated tasks (filled by the text-track issue)."""


def vocabulary() -> list[str]:
    return []
