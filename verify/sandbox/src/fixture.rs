//! The `redis:7-alpine` stand-in.
