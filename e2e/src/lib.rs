//! Full-system tests live in `tests/`.
