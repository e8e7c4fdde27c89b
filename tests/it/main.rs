//! Integration tests: one binary, real parts (see tests/it/README in the main README).
