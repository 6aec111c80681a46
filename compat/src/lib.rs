//! Compatibility tests live in `tests/`.
