"""Continual-learning summaries of an accuracy matrix (row i = after stage i, column j = task j)."""

from __future__ import annotations

Matrix = list[list[float | None]]


def final_scores(matrix: Matrix) -> list[float | None]:
    return list(matrix[-1]) if matrix else []


def average(matrix: Matrix) -> float | None:
    """Mean over tasks of the final row (every task is learned by the last stage)."""
    row = [v for v in final_scores(matrix) if v is not None]
    return sum(row) / len(row) if row else None


def backward_transfer(matrix: Matrix) -> float | None:
    """Lopez-Paz & Ranzato (2017): mean over j < T of a[T][j] - a[j][j]; None with one task."""
    last = len(matrix) - 1
    if last < 1:
        return None
    deltas = [matrix[last][j] - matrix[j][j] for j in range(last)
              if matrix[last][j] is not None and matrix[j][j] is not None]
    return sum(deltas) / len(deltas) if deltas else None


def relative_gain(matrix: Matrix, upper_bound: list[float | None]) -> Matrix:
    """RG[i][j] = a[i][j] / UB_j (None where undefined)."""
    return [[(value / upper_bound[j]) if (value is not None and upper_bound[j]) else None
             for j, value in enumerate(row)] for row in matrix]


def mean_finetuned(matrix: Matrix) -> float | None:
    """MFT: mean over tasks of the score right after learning it, a[j][j]."""
    values = [matrix[j][j] for j in range(len(matrix)) if j < len(matrix[j]) and matrix[j][j] is not None]
    return sum(values) / len(values) if values else None


def mean_final(matrix: Matrix) -> float | None:
    """MFN: mean over tasks of the final score, a[T][j] (the same as `average`)."""
    return average(matrix)


def mean_average_accuracy(matrix: Matrix) -> float | None:
    """MAA: mean over stages i of the mean over the tasks seen so far, a[i][0..i]."""
    means = []
    for i, row in enumerate(matrix):
        seen = [v for v in row[: i + 1] if v is not None]
        if seen:
            means.append(sum(seen) / len(seen))
    return sum(means) / len(means) if means else None
