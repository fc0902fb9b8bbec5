"""The switch package's one error type (a one-line reason for the user)."""


class SwitchError(ValueError):
    """Bad input to the switch: empty text, tampered files, mismatched labels or dimensions."""
